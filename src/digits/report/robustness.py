"""The run report's robustness section: what ``benchmarks/robustness.py`` measured on this run
(held-out digits, MNIST-C's corruptions, other writers, redrawn strokes), when it left its
``robustness.json`` in the run directory. The benchmark owns the file; this only shows it.
"""

from __future__ import annotations

from pathlib import Path

from digits.errors import RunError
from digits.jsonfile import ListOf, read_json
from digits.report import html, numbers

ROBUSTNESS_FILE = "robustness.json"
SUMMARY = {"clean": float, "corruptions_mean": float, "corruptions_worst": float,
           "corruptions_worst_name": str}
SCHEMA = {"date": str, "machine": str, "held_out": str, "command": str, "summary": SUMMARY, "accuracy": dict,
          "sets": ListOf({"name": str, "rows": int}), "peers": ListOf({"name": str, "summary": dict})}
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
    accuracy = record["accuracy"]
    details = [(s["name"], numbers.count(s["rows"]), numbers.fraction(_number(accuracy.get(s["name"]))))
               for s in record["sets"]]
    return html.section(
        "robustness", "Robustness",
        html.paragraph(f"Measured by `{record['command']}` on {record['date']}, {record['machine']}. "
                       f"Held out: {record['held_out']}."),
        html.table(("accuracy on", "this run", *(p["name"] for p in peers)), rows,
                   numeric=range(1, 2 + len(peers))),
        html.table(("test set", "rows", "accuracy"), details, numeric=(1, 2)))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
