"""Measures on the WGS84 ellipsoid (pyproj): geodesic areas, the share of the AOI a footprint covers, and
buffers in metres.

Geometries are EPSG:4326 longitude/latitude as everywhere in the tool; predicates and intersections are
computed in that plane (as the catalogues' footprints and the AOI are), and only distances and areas are
measured on the ellipsoid. pyproj is imported when a measure is first needed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from ingester.distance import Buffer
from ingester.geometry import areal_part

COVERAGE_TAG = "aoiCoverage"  # the scene tag every catalogue writes: share of the AOI the footprint covers
COVERAGE_DECIMALS = 4

# --- areas and coverage -----------------------------------------------------------------------------


@functools.cache
def geod() -> Any:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def geodesic_area(geom: BaseGeometry) -> float:
    """Area in m² on the WGS84 ellipsoid, edges taken as geodesics (pyproj's `Geod`); holes subtracted."""
    ellipsoid = geod()
    total = 0.0
    for poly in areal_part(geom).geoms:
        rings = [poly.exterior, *poly.interiors]
        areas = [abs(ellipsoid.polygon_area_perimeter(*np.asarray(r.coords).T[:2])[0]) for r in rings]
        total += areas[0] - sum(areas[1:])
    return total


def coverage(footprints: Sequence[BaseGeometry | None], aoi: BaseGeometry) -> list[float | None]:
    """The share (0…1) of the AOI's geodesic area that each footprint covers (None: no footprint).

    The one measure of coverage of the tool: the `aoiCoverage` tag of the catalogues, the payload's
    `min_coverage`, and the coverage column of `ingester show`. The predicates and intersections run
    vectorised in GEOS; only the areas of partial overlaps are measured one by one."""
    total = geodesic_area(aoi)
    out: list[float | None] = [None] * len(footprints)
    if total <= 0:
        return out
    index = np.array([i for i, g in enumerate(footprints) if g is not None], dtype=int)
    if not len(index):
        return out
    geoms = np.empty(len(index), dtype=object)
    geoms[:] = [footprints[i] for i in index]
    shapely.prepare(aoi)
    hits = shapely.intersects(geoms, aoi)
    whole = np.zeros(len(index), dtype=bool)
    whole[hits] = shapely.covers(geoms[hits], aoi)
    for i in index[~hits]:
        out[i] = 0.0
    for i in index[whole]:
        out[i] = 1.0
    partial = hits & ~whole
    try:
        parts = shapely.intersection(geoms[partial], aoi)
    except shapely.errors.GEOSException:  # an invalid footprint (self-crossing ring)
        parts = shapely.intersection(shapely.make_valid(geoms[partial]), aoi)
    for i, part in zip(index[partial], parts, strict=True):
        out[i] = min(1.0, geodesic_area(part) / total)
    return out


def coverage_tag(share: float) -> str:
    """The `aoiCoverage` tag's text: the share with 4 decimals (`0.4821`, `1.0000`)."""
    return f"{share:.{COVERAGE_DECIMALS}f}"


def tag_coverage(scenes: Sequence[Any], aoi: BaseGeometry,
                 footprints: Sequence[BaseGeometry | None] | None = None) -> list[float | None]:
    """Set the `aoiCoverage` tag of each scene (anything with `tags` and `wkt`) and return the shares.

    For a catalogue: call it on the scenes it keeps after its exact-AOI check, with their parsed
    footprints when it has them (else each scene's `wkt` is parsed); a scene whose footprint cannot be
    read gets no tag (share None)."""
    if footprints is None:
        from ingester.geometry import from_wkt_many

        footprints = from_wkt_many([s.wkt for s in scenes])
    shares = coverage(footprints, aoi)
    for scene, share in zip(scenes, shares, strict=True):
        if share is not None:
            scene.tags[COVERAGE_TAG] = coverage_tag(share)
    return shares


# --- buffers in metres --------------------------------------------------------------------------------

_CELL = 20.0  # degrees: AOI parts wider or taller than this are buffered cell by cell
_SEGMENT = 0.1  # degrees: edges are followed in steps of at most this before being projected


def buffer_area(area: MultiPolygon, buffer: Buffer) -> MultiPolygon:
    """The area grown by a buffer of metres (geodesic) or degrees (the old form); the area itself for 0."""
    if buffer.value <= 0:
        return area
    if buffer.unit == "deg":
        return areal_part(area.buffer(buffer.value))
    return geodesic_buffer(area, buffer.value)


def geodesic_buffer(area: MultiPolygon, metres: float) -> MultiPolygon:
    """The area grown by `metres` in every direction, measured on the WGS84 ellipsoid.

    Each part (or, for parts wider or taller than 20°, each 20° cell of it) is projected to an azimuthal
    equidistant projection centred on it, where distances from the centre are true and other distances
    within 1 % (less than 0.1 % within 600 km of the centre), buffered there and projected back. Edges
    are followed in steps of 0.1° first, so that the buffer also holds edges taken as straight lines in
    longitude/latitude. The result may extend past ±180° of longitude: it is cut there and wrapped, like
    an AOI written past the antimeridian; latitudes are clipped to ±90°."""
    pieces: list[BaseGeometry] = []
    for part in area.geoms:
        west, south, east, north = part.bounds
        if east - west <= _CELL and north - south <= _CELL:
            pieces.append(_buffer_piece(part, metres))
            continue
        for x in np.arange(west, east, _CELL):
            for y in np.arange(south, north, _CELL):
                cell = part.intersection(shapely.box(x, y, min(x + _CELL, east), min(y + _CELL, north)))
                for piece in areal_part(cell).geoms:
                    pieces.append(_buffer_piece(piece, metres))
    grown = shapely.unary_union(pieces)
    wrapped = []  # what lies past ±180° comes back on the other side, as for an AOI written past the line
    for shift in (-360.0, 0.0, 360.0):
        piece = grown.intersection(shapely.box(-180 + shift, -90, 180 + shift, 90))
        if not piece.is_empty:
            wrapped.append(shapely.affinity.translate(piece, xoff=-shift))
    return areal_part(shapely.unary_union(wrapped))


@functools.lru_cache(maxsize=64)
def _local_projection(lat0: float) -> tuple[Any, Any]:
    """Transformers to and from an azimuthal equidistant projection centred at (0°, lat0): a piece is
    moved to longitude 0 first (a shift in longitude moves nothing on the ellipsoid), so the cells of a
    row share one projection."""
    from pyproj import CRS, Transformer

    local = CRS.from_dict({"proj": "aeqd", "lat_0": lat0, "lon_0": 0, "datum": "WGS84", "units": "m"})
    return (Transformer.from_crs("EPSG:4326", local, always_xy=True),
            Transformer.from_crs(local, "EPSG:4326", always_xy=True))


def _buffer_piece(piece: Polygon, metres: float) -> BaseGeometry:
    centre = piece.centroid
    lon0, lat0 = centre.x, round(centre.y, 6)
    forward, inverse = _local_projection(lat0)
    at_zero = shapely.affinity.translate(shapely.segmentize(piece, _SEGMENT), xoff=-lon0)
    projected = shapely.transform(at_zero, lambda xy: np.column_stack(forward.transform(xy[:, 0], xy[:, 1])))
    grown = projected.buffer(metres, quad_segs=16)
    back = shapely.transform(grown, lambda xy: np.column_stack(inverse.transform(xy[:, 0], xy[:, 1])))
    south, north = back.bounds[1], back.bounds[3]
    for pole in (90.0, -90.0):  # a buffer over a pole: the whole cap beyond its farthest latitude
        if grown.contains(shapely.Point(*forward.transform(0.0, pole))):
            return shapely.box(-180, south, 180, 90) if pole > 0 else shapely.box(-180, -90, 180, north)
    return shapely.affinity.translate(shapely.make_valid(back), xoff=lon0)
