"""Calibration benchmark of one trained run: is its confidence honest, and does it say when
it does not know?

For RUN (a run directory whose config.json names its training file, with test.csv and
solution.csv beside it, as `digits data prepare` writes them) it measures, on test rows only:

- ECE (15 bins) of the calibrated probabilities on the clean test digits, and under shifts:
  benchmarks/corruptions.py's corruptions when that file is present, else a few generic
  shifts defined here (Gaussian noise, blur, rotation, low contrast, translation), named so;
- the share of clean test digits flagged (unsure or not a digit): at most 1% is the target;
- the share of wrong answers flagged, clean and under the shifts;
- the share of non-digits (benchmarks/nondigits.py) answered "not a digit" or "unsure"; and,
  apart, how many letters drawn as digits are (O, I, S, Z) are read as the digit they look like.

Every verdict comes from the run's own calibration.json and rejector.safetensors (fitted on its
training and validation rows); the shifts and the non-digits here only test them.

    python benchmarks/calibration.py runs/fast --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from digits.data.kaggle import load_kaggle_csv
from digits.data.submission import read_submission
from digits.jsonfile import read_json, write_json
from digits.predict.calibration import expected_calibration_error
from digits.predict.predictor import Predictor, average_members
from digits.predict.verdict import decide

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # machine.py, nondigits.py and corruptions.py beside this script
RESULTS = HERE / "RESULTS.md"


def generic_shifts(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """A few shifts of the test digits, used only when benchmarks/corruptions.py is missing."""
    rng = np.random.default_rng(seed)
    x = images.astype(np.float32)

    def each(fn):  # PIL per image: rotation and blur as an image library does them
        return np.stack([np.asarray(fn(Image.fromarray(img)), np.uint8) for img in images])

    return {
        "gaussian noise (generic)": np.clip(x + rng.normal(0, 50, x.shape), 0, 255).astype(np.uint8),
        "blur (generic)": each(lambda im: im.filter(ImageFilter.GaussianBlur(1.2))),
        "rotate 30 (generic)": each(lambda im: im.rotate(float(rng.choice([-30, 30])))),
        "low contrast (generic)": (x * 0.3 + 40).astype(np.uint8),
        "translate 4 (generic)": np.roll(images, shift=(4, -3), axis=(1, 2)),
    }


def shifted_sets(images: np.ndarray) -> dict[str, np.ndarray]:
    """benchmarks/corruptions.py's corruptions when present, else :func:`generic_shifts`."""
    path = HERE / "corruptions.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location("benchmarks_corruptions", path)
        module = sys.modules["benchmarks_corruptions"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "corrupt_all"):
            return dict(module.corrupt_all(images))
    return generic_shifts(images)


def measure(predictor, calibration, images: np.ndarray, labels: np.ndarray | None) -> dict:
    proba, distance = predictor.predict_with_distance(images)
    decisions = decide(proba, images, calibration, distance=distance, rejector=predictor.rejector)
    flagged = np.array([d.verdict != "answered" for d in decisions])
    out = {"rows": int(len(images)), "flagged": round(float(flagged.mean()), 5),
           "not_a_digit": round(float(np.mean([d.verdict == "not a digit" for d in decisions])), 5)}
    if labels is not None:
        wrong = proba.argmax(1) != labels
        out.update(accuracy=round(float(1 - wrong.mean()), 5),
                   ece=round(expected_calibration_error(proba, labels), 5),
                   wrong=int(wrong.sum()),
                   wrong_flagged=round(float(flagged[wrong].mean()), 4) if wrong.any() else None)
    return out


def main(argv: list[str] | None = None) -> int:
    from machine import describe
    from nondigits import digit_shaped, nondigits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/ and RESULTS.md")
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    source = Path(read_json(run / "config.json")["data"]["source"])
    test = load_kaggle_csv(source.parent / "test.csv", kind="test").images
    labels = read_submission(source.parent / "solution.csv")
    predictor = Predictor.open(run)
    calibration = predictor.calibration
    uncalibrated = average_members(predictor.member_proba(test, calibrated=False))
    rejector = predictor.rejector
    result = {"run": str(run), "machine": describe(), "calibration": calibration.to_dict(),
              "rejector": None if rejector is None else {"threshold": rejector.threshold, **rejector.measured,
                                                         "relative": rejector.background_mean is not None},
              "clean": measure(predictor, calibration, test, labels),
              "clean_ece_uncalibrated": round(expected_calibration_error(uncalibrated, labels), 5),
              "shifts": {name: measure(predictor, calibration, images, labels)
                         for name, images in shifted_sets(test).items()},
              "nondigits": {}}
    for kind, (images, found) in nondigits().items():
        proba, distance = predictor.predict_with_distance(images)
        decisions = decide(proba, images, calibration, found, distance, predictor.rejector)
        result["nondigits"][kind] = {
            "rows": len(images), "caught": round(float(np.mean([d.verdict != "answered" for d in decisions])), 4),
            "not_a_digit": round(float(np.mean([d.verdict == "not a digit" for d in decisions])), 4)}
    caught = [v["caught"] * v["rows"] for v in result["nondigits"].values()]
    result["nondigits_caught"] = round(sum(caught) / sum(v["rows"] for v in result["nondigits"].values()), 4)
    shaped, looks_like = digit_shaped()
    proba, distance = predictor.predict_with_distance(shaped)
    verdicts = [d.verdict for d in decide(proba, shaped, calibration, None, distance, predictor.rejector)]
    result["digit_shaped_letters"] = {"rows": len(shaped),
                                      "read_as_their_digit": round(float(np.mean(proba.argmax(1) == looks_like)), 4),
                                      "flagged": round(float(np.mean([v != "answered" for v in verdicts])), 4)}
    text = summarise(result)
    print(text)
    if args.record:
        stamp = dt.date.today().isoformat()
        write_json(HERE / "results" / f"calibration-{run.name}-{stamp}.json", result)
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n## Calibration, unsure and not a digit: {run.name} ({stamp})\n\n{text}\n")
    return 0


def summarise(result: dict) -> str:
    clean, shifts = result["clean"], result["shifts"]
    lines = [f"Machine: {result['machine']}. Run {result['run']}, "
             f"temperature {result['calibration']['temperature']:.3f}"
             f"{' (after the even share is taken out)' if result['calibration'].get('unmix') else ''} and thresholds fitted on its "
             f"{result['calibration']['measured'].get('rows', '?')} validation rows; "
             + (f"not-a-digit rejector ({'relative ' if result['rejector'].get('relative') else ''}Mahalanobis "
                f"distance on the penultimate features) fitted on its "
                f"{result['rejector']['train_rows']:,} training rows, threshold "
                f"{result['rejector']['threshold']:.1f} on its validation rows "
                f"({result['rejector']['rejected_rate'] * 100:.2f}% of them rejected)."
                if result.get("rejector") else "no rejector (only blank pictures are not digits)."), "",
             "| test set | rows | accuracy | ECE | flagged | wrong answers flagged |",
             "| --- | ---: | ---: | ---: | ---: | ---: |",
             f"| clean (uncalibrated ECE {result['clean_ece_uncalibrated'] * 100:.2f}%) | {clean['rows']:,} | "
             f"{clean['accuracy'] * 100:.2f}% | {clean['ece'] * 100:.2f}% | {clean['flagged'] * 100:.2f}% | "
             f"{_share(clean['wrong_flagged'])} of {clean['wrong']} |"]
    for name, m in shifts.items():
        lines.append(f"| {name} | {m['rows']:,} | {m['accuracy'] * 100:.2f}% | {m['ece'] * 100:.2f}% | "
                     f"{m['flagged'] * 100:.2f}% | {_share(m['wrong_flagged'])} of {m['wrong']} |")
    if shifts:
        mean_ece = np.mean([m["ece"] for m in shifts.values()])
        wrong = sum(m["wrong"] for m in shifts.values())
        flagged = sum((m["wrong_flagged"] or 0) * m["wrong"] for m in shifts.values())
        lines.append(f"| all shifts | | | mean {mean_ece * 100:.2f}% | | {flagged / max(wrong, 1) * 100:.1f}% "
                     f"of {wrong} |")
    lines += ["", "| non-digits | pictures | not a digit or unsure | not a digit |", "| --- | ---: | ---: | ---: |"]
    for kind, m in result["nondigits"].items():
        lines.append(f"| {kind} | {m['rows']} | {m['caught'] * 100:.1f}% | {m['not_a_digit'] * 100:.1f}% |")
    lines.append(f"| all | {sum(m['rows'] for m in result['nondigits'].values())} | "
                 f"{result['nondigits_caught'] * 100:.1f}% | |")
    if "digit_shaped_letters" in result:
        m = result["digit_shaped_letters"]
        lines += ["", f"Letters drawn as digits are drawn (O o I l S s Z z in the same fonts, {m['rows']} pictures, "
                      f"not counted above): {m['read_as_their_digit'] * 100:.1f}% read as the digit they look like "
                      f"(O as 0, I and l as 1, S as 5, Z as 2), {m['flagged'] * 100:.1f}% flagged."]
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
