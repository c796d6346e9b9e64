"""The run report's robustness section: what ``benchmarks/robustness.py`` measured on this run
(held-out digits, MNIST-C's corruptions, other writers, redrawn strokes), when it left its
``robustness.json`` in the run directory. The benchmark owns the file; this only shows it.
"""

from __future__ import annotations

from pathlib import Path

from digits.errors import RunError
from digits.jsonfile import ListOf, Optional, read_json
from digits.report import html, numbers

ROBUSTNESS_FILE = "robustness.json"
SUMMARY = {"clean": float, "corruptions_mean": float, "corruptions_worst": float,
           "corruptions_worst_name": str}
SCHEMA = {"date": str, "machine": str, "held_out": str, "command": str, "summary": SUMMARY, "accuracy": dict,
          "ece": Optional(dict),  # per set; files written before the benchmark measured it have none
          "sets": ListOf({"name": str, "rows": int, "kind": Optional(str)}),
          "peers": ListOf({"name": str, "summary": dict})}
HEADLINES = (("clean", "clean held-out digits"), ("corruptions_mean", "MNIST-C, mean of its corruptions"),
             ("corruptions_worst", "MNIST-C, the worst corruption"))


def robustness_section(run_dir: str | Path) -> str | None:
    """The section's HTML, or None when the benchmark never ran on ``run_dir``. A damaged file
    is said so in the section rather than stopping the whole report."""
    path = Path(run_dir) / ROBUSTNESS_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path, SCHEMA)
    except RunError as exc:
        return html.section("robustness", "Robustness", html.paragraph(f"Not shown: {exc}.", "note"))
    peers = record["peers"]
    summary = record["summary"]
    names = [key for key in summary if key not in dict(HEADLINES) and key != "corruptions_worst_name"]
    rows = [(label + (f" ({summary['corruptions_worst_name']})" if key == "corruptions_worst" else ""),
             *(numbers.fraction(_number(s.get(key))) for s in [summary] + [p["summary"] for p in peers]))
            for key, label in HEADLINES + tuple((n, n) for n in names)]
    accuracy, ece = record["accuracy"], record.get("ece")
    details = [(s["name"], numbers.count(s["rows"]), numbers.fraction(_number(accuracy.get(s["name"]))),
                *([_percent(_number(ece.get(s["name"])))] if ece is not None else []))
               for s in record["sets"]]
    return html.section(
        "robustness", "Robustness",
        html.paragraph(f"Measured by `{record['command']}` on {record['date']}, {record['machine']}. "
                       f"Held out: {record['held_out']}."),
        html.table(("accuracy on", "this run", *(p["name"] for p in peers)), rows,
                   numeric=range(1, 2 + len(peers))),
        *([html.paragraph(_ece_line(ece, record["sets"]))] if ece is not None else []),
        html.table(("test set", "rows", "accuracy", *(["ECE"] if ece is not None else [])), details,
                   numeric=(1, 2, 3) if ece is not None else (1, 2)))


def ece_under_corruption(ece: dict, sets: list[dict]) -> tuple[float | None, float | None]:
    """(ECE on the clean held-out digits, mean ECE over MNIST-C's corruptions) from a
    robustness.json's per-set ECE; None where it has no figure."""
    corrupted = [_number(ece.get(s["name"])) for s in sets if s.get("kind") == "corruption"]
    corrupted = [v for v in corrupted if v is not None]
    return _number(ece.get("clean")), (sum(corrupted) / len(corrupted) if corrupted else None)


def _ece_line(ece: dict, sets: list[dict]) -> str:
    clean, corrupted = ece_under_corruption(ece, sets)
    return (f"Expected calibration error (15 bins) of the calibrated probabilities: "
            f"{_percent(clean)} on the clean held-out digits, "
            f"{_percent(corrupted)} on MNIST-C's corruptions (mean of their ECE).")


def _percent(value: float | None) -> str:
    return numbers.MISSING if value is None or value != value else f"{value * 100:.2f}%"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
