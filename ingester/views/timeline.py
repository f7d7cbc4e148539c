"""Acquisitions per date and per track (S1 relative orbit, S2 MGRS tile, Landsat path/row), so that
gaps in a stack show before they break previous/reference chains.

One row per track, one marker per acquisition: coloured by status for an AOI in the store, hollow
when the product is offline, a diamond when it is the reference (start) of a chain. Grey lines join
an acquisition to its previous one; a dashed line and a cross mark a previous acquisition that is not
in the file. Red bands are gaps: intervals longer than 1.5 × the track's usual revisit (the median
interval when the track has 3 acquisitions or more, else the mission's: S1 12 d, S2 5 d, Landsat 16 d).
"""

from __future__ import annotations

import dataclasses
import io
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ingester.fileio import atomic_write_bytes
from ingester.naming import constellation_of
from ingester.views.colors import FILE_COLOR, GAP_COLOR, STATUS_COLORS
from ingester.views.model import STATUS_ORDER, SceneView, View

WIDTH_PX = 1200
DPI = 100
GAP_FACTOR = 1.5
NOMINAL_REVISIT_DAYS = {"sentinel1": 12.0, "sentinel2": 5.0, "landsat89": 16.0}
_LEFT, _RIGHT, _TOP, _BOTTOM, _ROW = 150, 250, 70, 60, 44


@dataclasses.dataclass(frozen=True)
class Gap:
    stack: str
    start: datetime
    end: datetime
    missing: int          # acquisitions expected in between

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


@dataclasses.dataclass(frozen=True)
class TimelineImage:
    path: str
    width: int
    height: int
    rows: tuple[str, ...]
    gaps: tuple[Gap, ...]
    transform: tuple[float, float, float, float]  # column = a·day + b (matplotlib date number), row = c·y + d

    def pixel(self, when: datetime, stack: str) -> tuple[float, float]:
        from matplotlib.dates import date2num

        a, b, c, d = self.transform
        return a * float(date2num(when)) + b, c * self.rows.index(stack) + d


def stacks(view: View) -> dict[str, list[SceneView]]:
    """Acquisitions per track, oldest first; tracks in the order of their first acquisition."""
    rows: dict[str, list[SceneView]] = defaultdict(list)
    for scene in sorted(view.scenes, key=lambda s: s.date):
        rows[scene.stack].append(scene)
    return dict(sorted(rows.items(), key=lambda kv: (kv[1][0].date, kv[0])))


def gaps(rows: dict[str, list[SceneView]]) -> list[Gap]:
    out = []
    for stack, scenes in rows.items():
        days = sorted({s.date.date() for s in scenes})
        times = {s.date.date(): s.date for s in scenes}
        intervals = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
        if len(intervals) >= 2:
            usual = float(statistics.median(intervals))
        else:
            usual = NOMINAL_REVISIT_DAYS.get(constellation_of(scenes[0].source_id) or "", 0.0)
        if usual <= 0:
            continue
        for a, b, days_between in zip(days, days[1:], intervals, strict=False):
            if days_between > GAP_FACTOR * usual:
                out.append(Gap(stack, times[a], times[b], max(1, round(days_between / usual) - 1)))
    return out


def render_timeline_png(view: View, output: str | Path) -> TimelineImage:
    """Draw the timeline and write it atomically to `output`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if not view.scenes:
        from ingester.errors import InputError

        raise InputError(f"{view.origin}: no scene: nothing to put on a timeline")
    rows = stacks(view)
    names = list(rows)
    found_gaps = gaps(rows)
    axes_h = max(120, _ROW * len(names) + 20)
    height = min(2400, axes_h + _TOP + _BOTTOM)
    axes_h = height - _TOP - _BOTTOM
    axes_w = WIDTH_PX - _LEFT - _RIGHT
    fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((_LEFT / WIDTH_PX, _BOTTOM / height, axes_w / WIDTH_PX, axes_h / height))
    first = min(s.date for s in view.scenes)
    last = max(s.date for s in view.scenes)
    margin = max((last - first) * 0.04, timedelta(days=2))
    ax.set_xlim(date2num(first - margin), date2num(last + margin))
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_yticks(range(len(names)), [f"{n} ({len(rows[n])})" for n in names], fontsize=9)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#e5e5e5", zorder=0)
    for y in range(len(names)):
        ax.axhline(y, color="#eeeeee", linewidth=0.8, zorder=0)

    for gap in found_gaps:
        y = names.index(gap.stack)
        x0, x1 = date2num(gap.start), date2num(gap.end)
        ax.add_patch(Rectangle((x0, y - 0.32), x1 - x0, 0.64, facecolor=GAP_COLOR, alpha=0.18, edgecolor="none",
                               zorder=1))
        ax.text((x0 + x1) / 2, y, f"~{gap.missing} missing ({gap.days:.0f} d)", fontsize=7,
                color=GAP_COLOR, ha="center", va="center", zorder=4, clip_on=True)

    where = {s.source_id: (date2num(s.date), names.index(s.stack)) for s in view.scenes}
    references = {t.reference.scene_id for s in view.scenes for t in s.tiles if t.reference is not None}
    absent_previous = False
    for scene in view.scenes:
        x, y = where[scene.source_id]
        previous = {t.previous.scene_id: t.previous for t in scene.tiles if t.previous is not None}
        for scene_id, link in previous.items():
            if scene_id in where:
                px, py = where[scene_id]
                if py == y:
                    ax.plot([px, x], [y, y], color="#888888", linewidth=1.3, zorder=2)
            else:
                absent_previous = True
                px = date2num(link.date)
                ax.plot([px, x], [y, y], color="#888888", linewidth=1.1, linestyle=(0, (3, 2)), zorder=2)
                ax.plot([px], [y], marker="x", color="#888888", markersize=7, zorder=3)

    statuses: Counter[str] = Counter()
    offline = False
    for scene in view.scenes:
        x, y = where[scene.source_id]
        color = STATUS_COLORS.get(scene.status or "", FILE_COLOR) if view.from_store else FILE_COLOR
        statuses[scene.status or ""] += 1
        hollow = scene.online is False
        offline |= hollow
        ax.plot([x], [y], marker="D" if scene.source_id in references else "o", markersize=9,
                markerfacecolor="white" if hollow else color, markeredgecolor=color, markeredgewidth=1.8,
                linewidth=0, zorder=5)

    handles: list[Any] = []
    if view.from_store:
        handles += [Line2D([], [], marker="o", linewidth=0, markersize=8, color=STATUS_COLORS[s],
                           label=f"{s} ({statuses[s]})") for s in STATUS_ORDER if statuses[s]]
    else:
        handles.append(Line2D([], [], marker="o", linewidth=0, markersize=8, color=FILE_COLOR,
                              label=f"in the file ({len(view.scenes)})"))
    if offline:
        handles.append(Line2D([], [], marker="o", linewidth=0, markersize=8, markerfacecolor="white",
                              markeredgecolor=FILE_COLOR, label="offline (long-term archive)"))
    if references:
        handles.append(Line2D([], [], marker="D", linewidth=0, markersize=7, markerfacecolor="white",
                              markeredgecolor="black", label="reference of a chain"))
    if any(t.previous for s in view.scenes for t in s.tiles):
        handles.append(Line2D([], [], color="#888888", linewidth=1.3, label="previous → next"))
    if absent_previous:
        handles.append(Line2D([], [], color="#888888", linewidth=1.1, linestyle=(0, (3, 2)), marker="x",
                              label="previous not in the file"))
    if found_gaps:
        handles.append(Patch(facecolor=GAP_COLOR, alpha=0.18, label=f"gap (> {GAP_FACTOR:g} × revisit)"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=((_LEFT + axes_w + 10) / WIDTH_PX,
                                                                  1 - _TOP / height), frameon=False, fontsize=9)
    title = (f"{view.name}: {len(view.scenes)} acquisitions on {len(names)} track{'s' if len(names) != 1 else ''}, "
             f"{first:%Y-%m-%d} → {last:%Y-%m-%d}\n"
             + (f"{len(found_gaps)} gap{'s' if len(found_gaps) != 1 else ''} in the stacks" if found_gaps
                else "no gap longer than 1.5 × the revisit")
             + ("; coloured by status" if view.from_store else ""))
    fig.text(_LEFT / WIDTH_PX, 1 - 12 / height, title, fontsize=10, va="top")

    # the axes sit at a fixed place with fixed limits: the data → pixel transform is known without
    # drawing (savefig draws once, at the figure's own dpi)
    (px0, py0), (px1, py1) = ax.transData.transform([(0.0, 0.0), (1.0, 1.0)])
    transform = (px1 - px0, px0, -(py1 - py0), height - py0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": "ingester"})
    atomic_write_bytes(output, buffer.getvalue())
    return TimelineImage(str(output), WIDTH_PX, height, tuple(names), tuple(found_gaps), transform)
