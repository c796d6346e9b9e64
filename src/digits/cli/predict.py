"""``digits predict`` (a run directory's submission for a test file) and ``digits score``
(a submission against an answer key, as Kaggle scores it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from digits.cli.args import HelpFormatter, add_data_flags, add_device_flag, add_output_flags, data_path
from digits.hardware import PRECISIONS
from digits.output import finish


def add_commands(sub: Any) -> None:
    """Register ``digits predict`` and ``digits score`` on the main parser's sub-parsers."""
    predict = sub.add_parser("predict", formatter_class=HelpFormatter, help="predict a test file into submission.csv")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    add_data_flags(predict, "test")
    predict.add_argument("--out", metavar="CSV", help="submission file (default: RUN_DIR/submission.csv)")
    predict.add_argument("--probabilities", metavar="CSV",
                         help="also write each image's calibrated probabilities, label and verdict "
                              "(answered, unsure, not a digit): ImageId,p0..p9,label,verdict")
    add_device_flag(predict)
    predict.add_argument("--tta", action="store_true", default=None,
                         help="test-time augmentation: average over 1-pixel shifts")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="auto: the precision each model trained in, where the device computes it "
                              "natively, else fp32")
    add_output_flags(predict)

    score = sub.add_parser("score", formatter_class=HelpFormatter, help="score a submission as Kaggle does; in a "
                           "run directory, the score is also recorded in its score.json")
    score.add_argument("submission", metavar="SUBMISSION")
    score.add_argument("--solution", required=True, metavar="SOLUTION", help="answer key (solution.csv)")
    add_output_flags(score)


def predict(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits predict RUN_DIR``: write a Kaggle submission for a test file."""
    import digits
    from digits.console import WorkBar
    from digits.results import predict_result

    predictor = digits.open_predictor(args.run_dir, args.device, args.precision)
    source = data_path(args, "test")
    test = digits.load_kaggle_csv(source, kind="test")
    started = time.perf_counter()
    with WorkBar("predicting", len(test) * len(predictor.models), "digits") as bar:
        # With --probabilities, the verdicts too: the distance from the training digits comes
        # from the same pass (None when the run has no rejector).
        proba, distance = (predictor.predict_with_distance(test.images, tta=args.tta, progress=bar.update)
                           if args.probabilities else
                           (predictor.predict_proba(test.images, tta=args.tta, progress=bar.update), None))
    labels = proba.argmax(axis=1).astype("int64")
    seconds = time.perf_counter() - started
    out = Path(args.out) if args.out else Path(args.run_dir) / "submission.csv"
    files = {"submission": out}
    if args.probabilities:  # first: a target it cannot write leaves no submission behind either
        from digits.predict.probabilities import write_probabilities
        from digits.predict.verdict import decide

        files["probabilities"] = write_probabilities(args.probabilities, proba,
                                                     decide(proba, test.images, predictor.calibration,
                                                            distance=distance, rejector=predictor.rejector))
    digits.write_submission(out, labels)
    what = predictor.names[0] if len(predictor.names) == 1 else f"ensemble of {len(predictor.names)}"
    tta = predictor.tta if args.tta is None else args.tta
    result = predict_result(args.run_dir, predictor.names, tta, source, out, labels, seconds,
                            predictor.precisions)
    if args.probabilities:
        result["probabilities"] = str(Path(args.probabilities).resolve())
    return finish(args, "predict", result, files,
                  f"{what}: predicted {len(labels)} digits in {seconds:.2f} s")


def score(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits score SUBMISSION --solution SOLUTION``: accuracy, as Kaggle computes it; recorded
    in the run directory the submission lies in, for its report."""
    from digits.data.submission import count_correct
    from digits.predict.scores import check_not_trained_on, record_score
    from digits.results import score_result

    counts = count_correct(args.submission, args.solution)  # both files valid before anything else
    warning = check_not_trained_on(args.submission, args.solution)
    if warning:
        sys.stderr.write(f"digits: {warning}\n")
    result = score_result(args.submission, args.solution, *counts)
    recorded = record_score(args.submission, args.solution, result["accuracy"])
    return finish(args, "score", result, {"recorded": recorded} if recorded else {},
                  f"score: {result['accuracy']:.5f}")


COMMANDS = {"predict": predict, "score": score}
