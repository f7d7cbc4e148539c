"""The colours every view uses, so that a PNG, its HTML twin and a timeline agree.

By status: DONE green, NEW grey, PENDING blue, RETRY orange, FAILED red. By date: up to ten
acquisition days get the ten distinct colours of matplotlib's "tab10" cycle, oldest first; more
days are placed on the "viridis" scale from the first day (dark purple) to the last (yellow).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

STATUS_COLORS = {"DONE": "#2ca02c", "NEW": "#7f7f7f", "PENDING": "#1f77b4", "RETRY": "#ff7f0e", "FAILED": "#d62728"}
FILE_COLOR = "#1f77b4"  # timeline markers of a file (no status)
AOI_COLOR = "#000000"
GAP_COLOR = "#d62728"

TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")
# viridis at 0, 1/8, …, 1 (interpolated linearly in between)
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _hex(values: Sequence[float]) -> str:
    return "#" + "".join(f"{round(v):02x}" for v in values)


def viridis(x: float) -> str:
    """The viridis colour at x in [0, 1]."""
    x = min(1.0, max(0.0, x)) * (len(VIRIDIS) - 1)
    i = min(int(x), len(VIRIDIS) - 2)
    a, b, t = rgb(VIRIDIS[i]), rgb(VIRIDIS[i + 1]), x - i
    return _hex([a[k] + (b[k] - a[k]) * t for k in range(3)])


def date_colors(days: Sequence[date]) -> dict[date, str]:
    """A colour per acquisition day (see the module docstring)."""
    distinct = sorted(set(days))
    if len(distinct) <= len(TAB10):
        return {d: TAB10[i] for i, d in enumerate(distinct)}
    first, last = distinct[0].toordinal(), distinct[-1].toordinal()
    return {d: viridis((d.toordinal() - first) / (last - first)) for d in distinct}


def uses_scale(days: Sequence[date]) -> bool:
    """Whether `date_colors` places these days on a continuous scale (a colour bar, not a legend)."""
    return len(set(days)) > len(TAB10)
