"""Numbers as reports and comparisons print them; a missing value is a dash."""

from __future__ import annotations

import math

MISSING = "–"


def fraction(value: float | None, digits: int = 4) -> str:
    """An accuracy, precision or score: ``0.9712``."""
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def seconds(value: float | None) -> str:
    """A duration: ``8.4 s``, ``3 min 12 s``."""
    if value is None or math.isnan(value):
        return MISSING
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def count(value: int | None) -> str:
    """A count with thousands separators: ``101,770``."""
    return MISSING if value is None else f"{value:,}"
