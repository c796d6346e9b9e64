"""Several runs side by side: one table (for the terminal and the page) and their
validation curves on shared axes, written as one self-contained HTML page.

Nothing is predicted here: every number comes from what the runs recorded, so comparing
many runs takes a second. An ensemble counts all its members' parameters and shows their
mean curves and accuracies.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from digits.atomic import write_bytes, write_text
from digits.errors import RunError
from digits.report import html, numbers
from digits.report.plots import compare_curves_figure, png_bytes
from digits.report.record import RunRecord, read_run
from digits.train.history import History
from digits.version import __version__

COMPARE_FILE = "compare.html"
CURVES_FILE = "val-curves.png"
COLUMNS = ("run", "model", "parameters", "epochs", "best val acc", "final val acc", "score", "training time")
NUMERIC = (2, 3, 4, 5, 6, 7)
RunLike = RunRecord | str | os.PathLike[str]


def read_runs(run_dirs: Sequence[RunLike]) -> list[RunRecord]:
    """Every run read (a RunError names the first that is not a finished run directory)."""
    if not run_dirs:
        raise RunError("nothing to compare: give one or more run directories")
    return [r if isinstance(r, RunRecord) else read_run(r) for r in run_dirs]


def comparison_rows(records: Sequence[RunRecord]) -> list[tuple[str, ...]]:
    """One row of ``COLUMNS`` per run, as text."""
    labels = _labels(records)
    return [(label, _model(r), numbers.count(r.parameters), str(r.epochs),
             _mean_mark(r, numbers.fraction(r.best_val_accuracy)),
             _mean_mark(r, numbers.fraction(r.final_val_accuracy)),
             numbers.fraction(r.score["score"], 5) if r.score else numbers.MISSING,
             numbers.seconds(r.train_seconds)) for label, r in zip(labels, records)]


def comparison_table(records: Sequence[RunRecord]) -> Table:
    """The comparison as a rich table for the terminal."""
    table = Table(*COLUMNS, box=None, pad_edge=False)
    for i in NUMERIC:
        table.columns[i].justify = "right"
    for row in comparison_rows(records):
        table.add_row(*row)
    return table


def write_comparison(runs: Sequence[RunLike], out: str | os.PathLike[str] = "compare") -> Path:
    """Write ``out/compare.html`` (and the curves PNG beside it); return the page's path."""
    records = read_runs(runs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder; --out takes a folder")
    curves = [(label + (" (members' mean)" if r.members else ""), _validation_history(r))
              for label, r in zip(_labels(records), records)]
    missing = without_validation(records)
    curves = [(label, history) for label, history in curves if history is not None]
    png = png_bytes(compare_curves_figure(curves)) if curves else None
    sections = [html.section("table", "Runs", html.table(COLUMNS, comparison_rows(records), numeric=NUMERIC),
                             html.paragraph("Validation accuracies of an ensemble are its members' mean; "
                                            "a tutorial's are those of its validation run, and its epochs "
                                            "the count it chose. Score: the recorded score of a submission "
                                            "(`digits score`).", "note"))]
    if png is None:
        sections.append(html.section("curves", "Validation curves",
                                     html.paragraph("None of these runs had validation rows.", "note")))
    else:
        parts = [html.image(png, "validation accuracy and loss of every run")]
        if missing:
            parts.append(html.paragraph(f"Not drawn, having no validation rows: {', '.join(missing)}.", "note"))
        sections.append(html.section("curves", "Validation curves", *parts))
    written = dt.datetime.now().isoformat(sep=" ", timespec="seconds")
    text = html.page(f"Comparison of {len(records)} runs", f"written {written} by digits {__version__}; "
                     + ", ".join(str(r.path) for r in records), sections)
    try:
        if png is not None:
            write_bytes(out / CURVES_FILE, png)
        return write_text(out / COMPARE_FILE, text)
    except OSError as exc:
        raise RunError(f"{out}: cannot write the comparison there ({exc.strerror or exc})") from None


def without_validation(records: Sequence[RunRecord]) -> list[str]:
    """The labels of the runs that have no validation curve to draw (they kept no validation rows)."""
    return [label for label, record in zip(_labels(records), records) if _validation_history(record) is None]


def _labels(records: Sequence[RunRecord]) -> list[str]:
    names = [r.name for r in records]
    return names if len(set(names)) == len(names) else [str(r.path) for r in records]


def _model(record: RunRecord) -> str:
    if record.kind == "ensemble":
        return f"{len(record.members)} × {record.model}"
    return f"{record.model} (tutorial)" if record.kind == "tutorial" else record.model


def _mean_mark(record: RunRecord, text: str) -> str:
    return f"{text} (mean)" if record.members and text != numbers.MISSING else text


def _validation_history(record: RunRecord) -> History | None:
    """The run's validation curve; an ensemble's is its members' mean, over the epochs all ran."""
    histories = [c.history for c in record.curves if c.has_validation]
    if not histories:
        return None
    if len(histories) == 1:
        return histories[0]
    epochs = min(len(h) for h in histories)
    mean = History()
    for i in range(epochs):
        mean.append({"epoch": i + 1, **{k: _mean([h.rows[i][k] for h in histories])
                                        for k in ("val_loss", "val_accuracy")}})
    return mean


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
