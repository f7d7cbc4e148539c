"""The footprint map as one self-contained HTML page (Leaflet through folium).

The same layers as the PNG: the AOI outline, the footprints coloured by date or by status (one
layer per status, or per acquisition day — per month beyond `MAX_DATE_LAYERS` days — each one
switchable in the layer control), burst ids (a layer of labels), a legend and a scale. A click on a
footprint opens its popup: source id, date, cloud cover, status, message, and its burst, line and
coverage when known.

Self-contained: Leaflet's script and style sheet (from the XStatic-Leaflet package, the version
folium is built for) are inlined instead of folium's CDN links, so the page draws without network.
Only the OpenStreetMap background tiles need it; offline the footprints show on a blank background.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ingester.fileio import atomic_write_text
from ingester.geometry import to_geojson
from ingester.views.colors import AOI_COLOR, date_colors
from ingester.views.model import STATUS_ORDER, Footprint, View, footprints, human_size
from ingester.views.png import burst_labels, draw_order, extent, fill_alpha, footprint_colors, union_coverage

MAX_DATE_LAYERS = 40
MAX_LABELS = 300
POPUP_FIELDS = (("source_id", "source id"), ("date", "date"), ("cloud", "cloud"), ("status", "status"),
                ("message", "message"), ("burst", "burst"), ("line", "line"), ("coverage", "AOI covered"),
                ("online", "online"), ("size", "size"))


@functools.cache
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's script, and its style sheet with the control icons as data: URIs."""
    import xstatic.pkg.leaflet as leaflet

    base = Path(leaflet.BASE_DIR)
    script = (base / "leaflet.js").read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        data = base64.b64encode((base / match.group(1)).read_bytes()).decode("ascii")
        return f"url(data:image/png;base64,{data})"

    style = re.sub(r"url\((images/[\w.-]+\.png)\)", inline, (base / "leaflet.css").read_text(encoding="utf-8"))
    return script.replace("</script", "<\\/script"), style


def popup_values(f: Footprint) -> dict[str, str]:
    s = f.scene
    values = {
        "source_id": s.source_id,
        "date": f"{s.date:%Y-%m-%d %H:%M:%S} UTC",
        "cloud": "" if s.cloud is None else f"{s.cloud:.1f} %",
        "status": f.status or "not ingested",
        "message": f.message,
        "burst": f.label or "",
        "line": "" if s.line is None else str(s.line),
        "coverage": "" if s.coverage is None else f"{100 * s.coverage:.1f} %",
        "online": "" if s.online is None else ("yes" if s.online else "no (long-term archive)"),
        "size": human_size(s.size),
    }
    return {k: html.escape(v) if v else "–" for k, v in values.items()}


def _groups(items: list[Footprint], color_by: str) -> list[tuple[str, list[int]]]:
    """Layer name → footprint indexes, in legend order."""
    groups: dict[str, list[int]] = defaultdict(list)
    if color_by == "status":
        for i, f in enumerate(items):
            groups[f.status or "NEW"].append(i)
        return [(s, groups[s]) for s in STATUS_ORDER if groups.get(s)]
    days = sorted({f.date.date() for f in items})
    monthly = len(days) > MAX_DATE_LAYERS
    for i, f in enumerate(items):
        groups[f"{f.date:%Y-%m}" if monthly else f.date.date().isoformat()].append(i)
    return sorted(groups.items())


def render_map_html(view: View, output: str | Path, color_by: str = "date") -> int:
    """Write the interactive map atomically to `output`; returns the number of footprints."""
    import folium
    from branca.element import Element

    items = footprints(view)
    x0, y0, x1, y1 = extent(view, items)
    fmap = folium.Map(location=[(y0 + y1) / 2, (x0 + x1) / 2], zoom_start=8, control_scale=True, tiles=None)
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap background (online only)").add_to(fmap)
    fmap.default_js = []   # Leaflet is inlined below; the rest of folium's defaults are not used
    fmap.default_css = []
    script, style = leaflet_assets()
    root: Any = fmap.get_root()  # a branca Figure: header, html, script
    root.header.add_child(Element(f"<style>{style}</style>"), name="leaflet_css")
    root.header.add_child(Element(f"<script>{script}</script>"), name="leaflet_js")

    colors, legend = footprint_colors(items, color_by)
    order = {i: rank for rank, i in enumerate(draw_order(items, color_by))}
    alpha = fill_alpha(len(items))
    fields = [k for k, _ in POPUP_FIELDS]
    aliases = [a for _, a in POPUP_FIELDS]
    for name, members in _groups(items, color_by):
        features = []
        for i in sorted(members, key=order.__getitem__):
            features.append({"type": "Feature", "geometry": to_geojson(items[i].geometry),
                             "properties": {**popup_values(items[i]), "color": colors[i]}})
        group = folium.FeatureGroup(name=f"{name} ({len(members)})")
        folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            style_function=lambda f: {"color": f["properties"]["color"], "weight": 1.5,
                                      "fillColor": f["properties"]["color"], "fillOpacity": alpha},
            popup=folium.GeoJsonPopup(fields=fields, aliases=aliases, localize=False),
            tooltip=folium.GeoJsonTooltip(fields=["source_id", "burst"], aliases=["", ""], labels=False),
        ).add_to(group)
        group.add_to(fmap)

    if view.aoi is not None:  # above the footprints; not clickable, so that their popups open through it
        folium.GeoJson(to_geojson(view.aoi), name=f"AOI {html.escape(view.name)}", interactive=False,
                       style_function=lambda _f: {"color": AOI_COLOR, "weight": 3, "fill": False}).add_to(fmap)

    labels = burst_labels(view, items)
    if 0 < len(labels) <= MAX_LABELS:
        group = folium.FeatureGroup(name="burst ids")
        for text, point in labels.values():
            icon = folium.DivIcon(html=f'<div class="ingester-label">{html.escape(text)}</div>',
                                  icon_size=(140, 16), icon_anchor=(70, 8))
            folium.Marker([point.y, point.x], icon=icon, interactive=False).add_to(group)
        group.add_to(fmap)

    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.fit_bounds([[y0, x0], [y1, x1]])
    root.header.add_child(Element(_STYLE), name="ingester_css")
    root.html.add_child(Element(_legend(view, items, legend, color_by)), name="ingester_legend")
    atomic_write_text(output, root.render())
    return len(items)


_STYLE = """<style>
.ingester-label {font: 11px sans-serif; text-align: center; color: #000; white-space: nowrap;
  text-shadow: 0 0 3px #fff, 0 0 3px #fff;}
.ingester-legend {position: absolute; bottom: 28px; right: 10px; z-index: 1000; background: rgba(255,255,255,.9);
  padding: 6px 8px; font: 12px sans-serif; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.3);
  max-height: 45%; overflow-y: auto;}
.ingester-legend i {display: inline-block; width: 14px; height: 10px; margin-right: 6px; border: 2px solid;}
.ingester-legend b {display: block; margin-bottom: 3px;}
</style>"""


def _legend(view: View, items: list[Footprint], legend: list[tuple[str, str, int]], color_by: str) -> str:
    rows = [f"<b>{html.escape(view.name)}: {'status' if color_by == 'status' else 'acquisition date'}</b>"]
    if color_by == "date" and len(legend) > 10:
        days = [f.date.date() for f in items]
        colors = date_colors(days)
        first, last = min(days), max(days)
        stops = ", ".join(colors[d] for d in sorted(colors))
        rows.append(f'<div style="height:10px;background:linear-gradient(to right, {stops})"></div>'
                    f"<div>{first} … {last} ({len(colors)} days)</div>")
    else:
        for label, color, count in legend:
            rows.append(f'<div><i style="border-color:{color};background:{color}55"></i>'
                        f"{html.escape(label)} ({count})</div>")
    if view.aoi is not None:
        share = union_coverage(view, items)
        covered = "" if share is None else f" ({100 * share:.1f} % covered)"
        rows.append(f'<div><i style="border-color:{AOI_COLOR};background:none"></i>AOI{covered}</div>')
    return f'<div class="ingester-legend">{"".join(rows)}</div>'

