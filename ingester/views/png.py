"""The footprint map as a PNG (matplotlib, offline, fit for a cron mail): the AOI outline, one
polygon per footprint coloured by acquisition date or by status, burst ids, a legend and a scale bar.

Longitude/latitude axes with the aspect of the map's middle latitude (a degree of longitude is
cos(latitude) of a degree of latitude there), so shapes look right and the scale bar, measured on
the ellipsoid at that latitude, is true in the middle of the map. 1200 px wide; the height follows
the area drawn. Footprints are drawn with their colour at `FILL_ALPHA` over an opaque outline, the
newest (or, by status, the most troubled) on top.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from ingester.fileio import atomic_write_bytes
from ingester.geodesy import coverage
from ingester.views.colors import AOI_COLOR, STATUS_COLORS, VIRIDIS, date_colors, uses_scale
from ingester.views.model import STATUS_ORDER, Footprint, View, footprints, polygons

WIDTH_PX = 1200
DPI = 100
FILL_ALPHA = 0.35          # up to 50 footprints; fainter beyond, so that stacks stay readable
MAX_LABELS = 80            # distinct burst ids labelled on the map
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 270, 70, 60  # margins in pixels (the legend sits on the right)


@dataclasses.dataclass(frozen=True)
class MapImage:
    """What was drawn, and where: `pixel(lon, lat)` gives the (column, row) of a place in the PNG."""

    path: str
    width: int
    height: int
    footprints: int
    labels: int
    transform: tuple[float, float, float, float]  # column = a·lon + b, row = c·lat + d
    axes: tuple[int, int, int, int]               # the map's frame: left, top, right, bottom (pixels)
    scale_km: float                               # the scale bar's length

    def pixel(self, lon: float, lat: float) -> tuple[float, float]:
        a, b, c, d = self.transform
        return a * lon + b, c * lat + d


def fill_alpha(count: int) -> float:
    return FILL_ALPHA if count <= 50 else max(0.06, FILL_ALPHA * math.sqrt(50 / count))


def blend(color: str, alpha: float, background: str = "#ffffff") -> tuple[float, float, float]:
    """The colour a fill of `color` at `alpha` shows over `background` (0…1 RGB)."""
    from ingester.views.colors import rgb

    c, g = rgb(color), rgb(background)
    return tuple((alpha * c[k] + (1 - alpha) * g[k]) / 255 for k in range(3))  # type: ignore[return-value]


def footprint_colors(items: list[Footprint], color_by: str) -> tuple[list[str], list[tuple[str, str, int]]]:
    """A colour per footprint, and the legend entries (label, colour, count) in legend order."""
    if color_by == "status":
        colors = [STATUS_COLORS.get(f.status or "NEW", STATUS_COLORS["NEW"]) for f in items]
        counts = Counter(f.status or "NEW" for f in items)
        return colors, [(s, STATUS_COLORS[s], counts[s]) for s in STATUS_ORDER if counts[s]]
    days = [f.date.date() for f in items]
    palette = date_colors(days)
    per_day = Counter(days)
    return [palette[d] for d in days], [(d.isoformat(), palette[d], per_day[d]) for d in sorted(per_day)]


def draw_order(items: list[Footprint], color_by: str) -> list[int]:
    if color_by == "status":
        rank = {s: i for i, s in enumerate(STATUS_ORDER)}
        return sorted(range(len(items)), key=lambda i: (rank.get(items[i].status or "NEW", 0), items[i].date))
    return sorted(range(len(items)), key=lambda i: items[i].date)


def extent(view: View, items: list[Footprint]) -> tuple[float, float, float, float]:
    geoms = [f.geometry for f in items] + ([view.aoi] if view.aoi is not None else [])
    if not geoms:
        from ingester.errors import InputError

        raise InputError(f"{view.origin}: nothing to draw (no scene with a footprint, and no AOI: give --payload)")
    minx, miny, maxx, maxy = shapely.total_bounds(np.array(geoms, dtype=object))
    dx, dy = max(maxx - minx, 1e-3), max(maxy - miny, 1e-3)
    return minx - 0.04 * dx, miny - 0.04 * dy, maxx + 0.04 * dx, maxy + 0.04 * dy


def burst_labels(view: View, items: list[Footprint]) -> dict[str, tuple[str, Any]]:
    """Burst id → (label, place): one label per burst id, "×n" when n acquisitions of it are stacked."""
    if not view.is_tiles_file:
        return {}
    counts = Counter(f.label for f in items if f.tile is not None and f.label)
    out: dict[str, tuple[str, Any]] = {}
    for f in items:
        if f.tile is not None and f.label and f.label not in out:
            n = counts[f.label]
            out[f.label] = (f"{f.label} ×{n}" if n > 1 else f.label, f.geometry.representative_point())
    return out


def fit_box(x0: float, y0: float, x1: float, y1: float, kx: float, ratio: float) -> tuple[float, float, float, float]:
    """Grow the extent along one axis so that it fills an axes box of `ratio` (width / height) with a
    degree of longitude drawn `kx` times as long as a degree of latitude."""
    width, height = (x1 - x0) * kx, y1 - y0
    if width / height < ratio:
        grow = (ratio * height / kx - (x1 - x0)) / 2
        return x0 - grow, y0, x1 + grow, y1
    grow = (width / ratio - height) / 2
    return x0, y0 - grow, x1, y1 + grow


def metres_per_degree_of_longitude(lat: float) -> float:
    """Geodesic length of one degree of longitude along the parallel `lat` (WGS84)."""
    from ingester.geodesy import geod

    return float(geod().inv(0.0, lat, 1.0, lat)[2])


def nice_length(km: float) -> float:
    """1, 2 or 5 × 10^k, at most `km`."""
    if km <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(km))
    return max(m * power for m in (1, 2, 5) if m * power <= km)


def union_coverage(view: View, items: list[Footprint]) -> float | None:
    if view.aoi is None or not items:
        return None
    union = shapely.union_all(np.array([f.geometry for f in items], dtype=object))
    return coverage([union], view.aoi)[0]


def title_of(view: View, items: list[Footprint], color_by: str) -> str:
    n_bursts = sum(1 for f in items if f.tile is not None and f.tile.geometry is not None and view.is_tiles_file)
    dates = sorted(s.date for s in view.scenes)
    head = f"{view.name}: {len(view.scenes)} scene{'s' if len(view.scenes) != 1 else ''}"
    if n_bursts:
        head += f", {n_bursts} bursts"
    if dates:
        head += f", {dates[0]:%Y-%m-%d} → {dates[-1]:%Y-%m-%d}"
    what = "coloured by status" if color_by == "status" else "coloured by acquisition date"
    share = union_coverage(view, items)
    if share is not None:
        what += f"; the footprints cover {100 * share:.1f} % of the AOI"
    elif view.aoi is None:
        what += "; no AOI (give --payload to draw it)"
    return f"{head}\n{what}"


def render_map_png(view: View, output: str | Path, color_by: str = "date") -> MapImage:
    """Draw the map and write it atomically to `output`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import FuncFormatter
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    items = footprints(view)
    x0, y0, x1, y1 = extent(view, items)
    lat0 = (y0 + y1) / 2
    kx = max(math.cos(math.radians(lat0)), 0.05)
    axes_w = WIDTH_PX - _LEFT - _RIGHT
    axes_h = int(min(1000, max(420, axes_w * (y1 - y0) / ((x1 - x0) * kx))))
    height = axes_h + _TOP + _BOTTOM
    fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((_LEFT / WIDTH_PX, _BOTTOM / height, axes_w / WIDTH_PX, axes_h / height))
    ax.set_facecolor("white")
    x0, y0, x1, y1 = fit_box(x0, y0, x1, y1, kx, axes_w / axes_h)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    degrees = FuncFormatter(lambda v, _pos: f"{v:g}°")
    ax.xaxis.set_major_formatter(degrees)
    ax.yaxis.set_major_formatter(degrees)
    ax.set_xlabel("longitude", fontsize=9)
    ax.set_ylabel("latitude", fontsize=9)
    ax.tick_params(labelsize=8)

    colors, legend = footprint_colors(items, color_by)
    alpha = fill_alpha(len(items))
    verts: list[Any] = []
    faces, edges = [], []
    for i in draw_order(items, color_by):
        for poly in polygons(items[i].geometry):
            verts.append(np.asarray(poly.exterior.coords)[:, :2])
            faces.append(to_rgba(colors[i], alpha))
            edges.append(colors[i])
    width = 1.2 if len(items) <= 50 else 0.8 if len(items) <= 500 else 0.5
    ax.add_collection(PolyCollection(verts, facecolors=faces, edgecolors=edges, linewidths=width, zorder=2))

    labels = 0
    names = burst_labels(view, items)
    if 0 < len(names) <= MAX_LABELS:
        halo = [withStroke(linewidth=2.5, foreground="white")]
        for text, point in names.values():
            ax.text(point.x, point.y, text, fontsize=7, ha="center", va="center", zorder=7, path_effects=halo)
            labels += 1

    handles: list[Any] = []
    if view.aoi is not None:
        for poly in polygons(view.aoi):
            xs, ys = poly.exterior.xy
            ax.plot(xs, ys, color=AOI_COLOR, linewidth=2.2, zorder=6, solid_joinstyle="round")
        ax0, ay0, ax1, ay1 = view.aoi.bounds
        if (ax1 - ax0) / (x1 - x0) * axes_w < 12 and (ay1 - ay0) / (y1 - y0) * axes_h < 12:
            c = view.aoi.centroid
            ax.plot([c.x], [c.y], marker="*", markersize=14, color=AOI_COLOR, zorder=6)
            handles.append(Line2D([], [], color=AOI_COLOR, marker="*", linewidth=0, markersize=10,
                                  label=f"AOI {view.name} (small: starred)"))
        else:
            handles.append(Line2D([], [], color=AOI_COLOR, linewidth=2.2, label=f"AOI {view.name}"))

    days = [f.date.date() for f in items]
    legend_x = (_LEFT + axes_w + 20) / WIDTH_PX
    if color_by == "date" and uses_scale(days):
        cmap = LinearSegmentedColormap.from_list("ingester_viridis", list(VIRIDIS))
        first, last = min(days).toordinal(), max(days).toordinal()
        cax = fig.add_axes((legend_x, (_BOTTOM + axes_h * 0.25) / height, 18 / WIDTH_PX, axes_h * 0.7 / height))
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(Normalize(first, last), cmap), cax=cax)
        from datetime import date

        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: date.fromordinal(int(round(v))).isoformat()))
        bar.ax.tick_params(labelsize=8)
        bar.set_label(f"acquisition date ({len(set(days))} days)", fontsize=9)
        fig.legend(handles=handles, loc="upper left", frameon=False, fontsize=9,  # under the colour bar
                   bbox_to_anchor=(legend_x - 0.01, (_BOTTOM + axes_h * 0.25 - 6) / height))
    else:
        for label, color, count in legend:
            handles.append(Patch(facecolor=to_rgba(color, alpha), edgecolor=color, linewidth=1.2,
                                 label=f"{label} ({count})"))
        title = "status" if color_by == "status" else "acquisition date"
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(legend_x - 0.01, 1 - _TOP / height),
                   frameon=False, fontsize=9, title=title, title_fontsize=9, alignment="left")

    km_per_degree = metres_per_degree_of_longitude(lat0) / 1000
    km = nice_length((x1 - x0) * km_per_degree / 5)  # about a fifth of the width
    bar_deg = km / km_per_degree
    label = f"{km:g} km"
    # right of the map, at its foot (never over a footprint), with the map's own horizontal scale
    scale = AnchoredSizeBar(ax.transData, bar_deg, label, loc="lower left", pad=0.4, borderpad=0, sep=4,
                            frameon=False, size_vertical=0, color="black", fontproperties=FontProperties(size=9),
                            bbox_to_anchor=(1.025, 0.0), bbox_transform=ax.transAxes)
    scale.set_clip_on(False)
    ax.add_artist(scale)
    fig.text(_LEFT / WIDTH_PX, 1 - 12 / height, title_of(view, items, color_by), fontsize=10, va="top")
    notes = []
    if len(names) > MAX_LABELS:
        notes.append(f"burst ids not labelled ({len(names)} distinct, more than {MAX_LABELS})")
    if not items:
        notes.append("no footprint to draw")
    if notes:
        fig.text(_LEFT / WIDTH_PX, 8 / height, "; ".join(notes), fontsize=8, color="#555555")

    # the axes sit at a fixed place with fixed limits: the data → pixel transform is known without
    # drawing (savefig draws once, at the figure's own dpi)
    (px0, py0), (px1, py1) = ax.transData.transform([(0.0, 0.0), (1.0, 1.0)])
    transform = (px1 - px0, px0, -(py1 - py0), height - py0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": "ingester"})
    atomic_write_bytes(output, buffer.getvalue())
    frame = (_LEFT, _TOP, _LEFT + axes_w, _TOP + axes_h)
    return MapImage(str(output), WIDTH_PX, height, len(items), labels, transform, frame, km)
