"""``write_report``: one self-contained HTML page about a run directory, its PNGs beside it.

Everything is computed and drawn in memory first and written only at the end (each file
atomically), so a run directory that cannot be reported on gets no report folder at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from digits.atomic import output_kind, write_bytes, write_text
from digits.errors import OutputError, RunError
from digits.predict.calibration import (
    Calibration,
    expected_calibration_error,
    load_calibration,
    reliability_bins,
)
from digits.report import html, numbers
from digits.report.evaluate import (
    Evaluation,
    confident_mistakes,
    confusion_matrix,
    evaluate,
    precision_recall,
)
from digits.report.heldout import HeldOut, find_held_out
from digits.report.plots import (
    confusion_figure,
    gallery_figure,
    learning_curves_figure,
    per_class_figure,
    png_bytes,
    reliability_figure,
)
from digits.report.record import RunRecord, read_run
from digits.report.robustness import robustness_section
from digits.train.run import no_held_out_note
from digits.version import __version__

REPORT_FOLDER = "report"
REPORT_FILE = "report.html"
KIND_NAMES = {"run": "one model", "tutorial": "the tutorial", "ensemble": "an ensemble"}
SET_NAMES = {"test": "the scored test set", "validation": "the validation rows",
             "out-of-bag": "the out-of-bag rows"}

Picture = Callable[[str, object, str], str]  # (file name, figure, alt text) -> <img> HTML


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                 device: torch.device | str = "cpu", mistakes: int = 40, samples: int = 40,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the report of ``run_dir`` and return the path of its HTML file.

    ``out`` is the HTML file (default ``RUN_DIR/report/report.html``; an existing folder gets
    report.html inside); the PNGs go beside it. At most ``mistakes`` misclassified digits
    and ``samples`` sample digits are shown. ``progress`` hears (images done, in all) while the
    held-out rows are predicted.

    >>> write_report("runs/20250101-120000-mlp")  # doctest: +SKIP
    PosixPath('runs/20250101-120000-mlp/report/report.html')
    """
    record = read_run(run_dir)
    target = _target(record.path, out)
    held_out = find_held_out(record)
    evaluation = evaluate(held_out, record.tta, device, progress) if isinstance(held_out, HeldOut) else held_out
    pngs: dict[str, bytes] = {}

    def picture(name: str, figure: object, alt: str) -> str:
        pngs[name] = png_bytes(figure)
        return html.image(pngs[name], alt)

    sections = [_summary(record, evaluation), _score(record, evaluation), _configuration(record),
                _curves(record, picture)]
    if record.members:
        sections.append(_members(record, evaluation))
    sections += _evaluation_sections(evaluation, picture, mistakes, samples, load_calibration(record.path))
    sections += filter(None, [robustness_section(record.path)])  # when benchmarks/robustness.py ran on it
    written = dt.datetime.now().isoformat(sep=" ", timespec="seconds")
    text = html.page(f"Report: {record.name}", f"{KIND_NAMES[record.kind]}, {record.model}; "
                     f"{record.path}; written {written} by digits {__version__}", sections)
    return _write_files(target, text, pngs)


def _write_files(target: Path, text: str, pngs: dict[str, bytes]) -> Path:
    """The page, and the PNGs beside it when it is a file (a FIFO, a device or stdout gets
    the self-contained page alone). If any write fails, the PNGs written are removed."""
    beside = pngs if output_kind(target) == "file" else {}
    new_folder = not target.parent.exists()
    written: list[Path] = []
    try:
        for name, png in beside.items():
            written.append(write_bytes(target.parent / name, png))
        return write_text(target, text)
    except (OSError, OutputError) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if new_folder and target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        if isinstance(exc, OutputError):
            raise
        raise RunError(f"{target}: cannot write the report there ({exc.strerror or exc})") from None


def _target(run_dir: Path, out: str | os.PathLike[str] | None) -> Path:
    if out is None:
        return run_dir / REPORT_FOLDER / REPORT_FILE
    out = Path(out)
    return out / REPORT_FILE if out.is_dir() else out


def _summary(record: RunRecord, evaluation: Evaluation | str) -> str:
    rows = [("model", record.model), ("parameters", numbers.count(record.parameters)),
            ("epochs", record.epochs), ("training time", numbers.seconds(record.train_seconds))]
    if record.best_val_accuracy is not None:
        rows += [("best validation accuracy", numbers.fraction(record.best_val_accuracy)),
                 ("final validation accuracy", numbers.fraction(record.final_val_accuracy))]
        if record.members:
            rows[-2:] = [(f"{name} (mean of {len(record.members)} members)", value) for name, value in rows[-2:]]
    if isinstance(evaluation, Evaluation) and evaluation.held_out.kind != "test":  # a test score: below, once
        rows.append((f"accuracy on {SET_NAMES[evaluation.held_out.kind]}", numbers.fraction(evaluation.accuracy)))
    if not record.score:
        rows.append(("score", "not scored" if isinstance(evaluation, Evaluation) else _no_held_out(record)))
    return html.section("summary", "Summary", html.table(None, rows))


def _no_held_out(record: RunRecord) -> str:
    final = record.metrics.get("final", {}) if not record.members else {}
    return no_held_out_note(record.config, final)


def _score(record: RunRecord, evaluation: Evaluation | str) -> str:
    if not record.score:
        why = "" if isinstance(evaluation, Evaluation) else f"This run has {_no_held_out(record)}. "
        return html.section("score", "Score", html.paragraph(
            f"{why}No scored submission is recorded. `digits predict` writes submission.csv into the run "
            "directory; `digits score` against an answer key (solution.csv) records its score here.", "note"))
    score = record.score
    parts = [html.paragraph(f"{score['score']:.5f}", "score"),
             html.paragraph(f"{score.get('submission', 'submission.csv')} scored as Kaggle scores it "
                            f"(categorization accuracy) against {score.get('solution', '?')}, "
                            f"{score.get('scored_at', '')}.")]
    if isinstance(evaluation, Evaluation) and evaluation.held_out.kind == "test" and \
            abs(evaluation.accuracy - score["score"]) > 1e-9:
        parts.append(html.paragraph(f"The model predicts these rows with accuracy {evaluation.accuracy:.5f} "
                                    "here; the submission was made differently (test-time augmentation, "
                                    "or an earlier model).", "note"))
    return html.section("score", "Score", *parts)


def _configuration(record: RunRecord) -> str:
    settings = [(key, _plain(value)) for key, value in record.config.items()]
    facts = [("parameters", numbers.count(record.parameters))]
    if record.members:
        facts += [("members", len(record.members)), ("bagging", record.bagging),
                  ("test-time augmentation", record.tta)]
    if record.members:  # the members' data facts count their own rows
        facts += [("data: source", record.data.get("source", "?")),
                  ("rows each member trained on / held out",
                   f"{record.data.get('train_rows', 0):,} / {record.data.get('val_rows', 0):,}")]
    else:
        facts += [(f"data: {key}", _plain(value)) for key, value in record.data.items()]
    facts += [(key, _plain(value)) for key, value in record.environment.items()]
    return html.section("configuration", "Configuration",
                        html.paragraph("Training settings as the run recorded them, and facts about it:"),
                        html.columns(html.table(("setting", "value"), settings),
                                     html.table(("fact", "value"), facts)))


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _curves(record: RunRecord, picture: Picture) -> str:
    curves = record.curves
    if all(len(c.history) <= 1 for c in curves):  # one point is no curve: say what it was instead
        return html.section("curves", "Learning curves", html.paragraph(_one_epoch(curves), "note"))
    mark = curves[0].marked_as
    figure = learning_curves_figure([(c.label, c.history, c.marked_epoch) for c in curves], mark,
                                    record.model)
    parts = [picture("curves.png", figure, "loss and accuracy against epochs, train and validation")]
    if record.kind == "tutorial":
        chosen_by = record.metrics.get("chosen_by", "lowest validation loss")
        parts.append(html.paragraph(f"The tutorial's validation run. It chose {curves[0].marked_epoch} "
                                    f"epochs ({chosen_by}), then retrained on every row for that many.",
                                    "note"))
    elif len(curves) == 1 and curves[0].marked_epoch is not None:
        parts.append(html.paragraph(f"Marked: epoch {curves[0].marked_epoch}, {mark}.", "note"))
    elif len(curves) == 1:
        parts.append(html.paragraph("No validation rows: training curves only.", "note"))
    return html.section("curves", "Learning curves", *parts)


def _one_epoch(curves: tuple) -> str:
    if not any(len(c.history) for c in curves):
        return "No epochs were trained: no curves to draw."
    rows = [c.history.rows[-1] for c in curves if len(c.history)]
    mean = {key: float(np.nanmean([r[key] for r in rows])) if any(not np.isnan(r[key]) for r in rows) else None
            for key in ("loss", "accuracy", "val_accuracy")}
    text = (f"One epoch: no curves to draw. At its end, training loss {mean['loss']:.4f}, training accuracy "
            f"{mean['accuracy']:.4f}")
    if mean["val_accuracy"] is not None:
        text += f", validation accuracy {mean['val_accuracy']:.4f}"
    return text + (f" (mean of {len(rows)} members)." if len(rows) > 1 else ".")


def _members(record: RunRecord, evaluation: Evaluation | str) -> str:
    kind = evaluation.held_out.kind if isinstance(evaluation, Evaluation) else None
    measured = evaluation.member_accuracy if kind else ()
    column = "accuracy on its own held-out rows" if kind == "out-of-bag" else (
        f"accuracy on {SET_NAMES[kind]}" if kind else "accuracy (no held-out rows)")
    rows = [(member.name, member.config.get("seed", ""), numbers.count(member.parameters), member.epochs,
             numbers.fraction(member.best_val_accuracy),
             numbers.fraction(measured[i] if i < len(measured) else None))
            for i, member in enumerate(record.members)]
    rows.append(("ensemble", "", numbers.count(record.parameters), "",
                 numbers.fraction(record.best_val_accuracy) + " (mean)",
                 numbers.fraction(evaluation.accuracy if kind else None)))
    return html.section("members", "Members and ensemble",
                        html.table(("member", "seed", "parameters", "epochs", "best validation accuracy",
                                    column), rows, numeric=(1, 2, 3, 4, 5), total_last=True),
                        html.paragraph("The ensemble averages its members' probabilities"
                                       + (" with test-time augmentation." if record.tta else "."), "note"))


def _evaluation_sections(evaluation: Evaluation | str, picture: Picture, mistakes: int,
                         samples: int, calibration: Calibration) -> list[str]:
    titles = (("confusion", "Confusion matrix"), ("per-class", "Per-class precision and recall"),
              ("calibration", "Calibration"), ("mistakes", "Misclassified digits"), ("samples", "Sample digits"))
    if isinstance(evaluation, str):
        return [html.section(anchor, heading, html.paragraph(f"Not available: {evaluation}.", "note"))
                for anchor, heading in titles]
    matrix = confusion_matrix(evaluation.labels, evaluation.predicted)
    where = SET_NAMES[evaluation.held_out.kind]
    return [
        html.section("confusion", f"Confusion matrix on {where}",
                     html.paragraph(f"Evaluated on {evaluation.held_out.description}. "
                                    f"Accuracy {evaluation.accuracy:.4f}."),
                     picture("confusion.png", confusion_figure(matrix, f"{where}: true vs predicted"),
                             f"confusion matrix on {where}")),
        _per_class(matrix, picture, where),
        _calibration(evaluation, picture, calibration),
        _mistakes(evaluation, picture, mistakes),
        _samples(evaluation, picture, samples),
    ]


def _calibration(evaluation: Evaluation, picture: Picture, calibration: Calibration) -> str:
    """The reliability diagram and ECE of the calibrated probabilities on the held-out rows."""
    where = SET_NAMES[evaluation.held_out.kind]
    ece = expected_calibration_error(evaluation.proba, evaluation.labels)
    described = calibration.describe()
    note = described[:1].upper() + described[1:] + "."  # not str.capitalize: it would lower "ECE"
    if calibration.fitted and evaluation.held_out.kind != "test":
        note += (" The temperature was fitted on these very rows, so this ECE is the fit's own; "
                 "a scored test set (`digits score`) gives an unseen one.")
    if evaluation.member_accuracy:  # an ensemble
        note += (" Members are calibrated each on its own validation rows, and their average by the ensemble's "
                 "own temperature, as `digits predict` answers.")
    figure = reliability_figure(reliability_bins(evaluation.proba, evaluation.labels), ece, where)
    return html.section("calibration", "Calibration",
                        html.paragraph(f"Expected calibration error (15 bins) on {where}: {ece * 100:.2f}%."),
                        html.paragraph(note, "note"),
                        picture("reliability.png", figure, f"reliability diagram on {where}"))


def _per_class(matrix: np.ndarray, picture: Picture, where: str) -> str:
    precision, recall = precision_recall(matrix)
    rows = [(digit, numbers.fraction(precision[digit]), numbers.fraction(recall[digit]),
             numbers.count(int(matrix[digit].sum()))) for digit in range(len(matrix))]
    return html.section("per-class", "Per-class precision and recall",
                        html.paragraph(f"On {where}. Precision: of the digits read as d, the share that are "
                                       "d. Recall: of the d's, the share read as d.", "note"),
                        html.table(("digit", "precision", "recall", "rows"), rows, numeric=(0, 1, 2, 3)),
                        picture("per-class.png", per_class_figure(precision, recall),
                                "per-class precision and recall"))


def _mistakes(evaluation: Evaluation, picture: Picture, limit: int) -> str:
    wrong = int(np.sum(evaluation.predicted != evaluation.labels))
    rows = confident_mistakes(evaluation, limit)
    heading = "Misclassified digits"
    if not len(rows):
        return html.section("mistakes", heading, html.paragraph("No digit was misclassified.", "note"))
    captions = [f"{evaluation.labels[i]} read as {evaluation.predicted[i]}\n{evaluation.confidence[i]:.3f}"
                for i in rows]
    figure = gallery_figure(evaluation.held_out.data.images[rows], captions, columns=10)
    return html.section("mistakes", heading,
                        html.paragraph(f"{wrong:,} of {len(evaluation.labels):,} rows misclassified; the "
                                       f"{len(rows)} read with the most confidence first. Each: true label "
                                       "read as predicted label, then the predicted label's probability."),
                        picture("mistakes.png", figure, "misclassified digits"))


def _samples(evaluation: Evaluation, picture: Picture, limit: int) -> str:
    count = min(limit, len(evaluation.labels))
    right = evaluation.predicted[:count] == evaluation.labels[:count]
    captions = [str(label) if ok else f"{label} (read {read})"
                for label, read, ok in zip(evaluation.labels[:count], evaluation.predicted[:count], right)]
    colors = ["black" if ok else "#c0392b" for ok in right]
    figure = gallery_figure(evaluation.held_out.data.images[:count], captions, colors, columns=10)
    return html.section("samples", "Sample digits",
                        html.paragraph(f"The first {count} of these rows with their labels; a red label is "
                                       "one the model misread.", "note"),
                        picture("samples.png", figure, "sample digits with their labels"))
