"""Reports: plots of data and training, a run's HTML report, runs compared side by side.

``write_report`` and ``write_comparison`` are imported on first use: training imports
``digits.report.plots``, and the report's own modules import training code in turn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_comparison", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from digits.report.write import write_report

        return write_report
    if name == "write_comparison":
        from digits.report.compare import write_comparison

        return write_comparison
    raise AttributeError(f"module 'digits.report' has no attribute {name!r}")
