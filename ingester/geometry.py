"""AOI parsing and validation, repair, antimeridian split, WKT/GeoJSON conversions, intersections."""

from __future__ import annotations

import math
import warnings
from typing import Any

import shapely
import shapely.affinity
from shapely import wkt as shapely_wkt
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity, make_valid

from ingester.errors import GeometryRepairedWarning

GEOMETRY_TYPES = {
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection",
}  # fmt: skip


class GeometryError(ValueError):
    """A geometry that cannot be used; the message says why (the caller adds file and field)."""


def _check_positions(coords: Any, where: str) -> None:
    """Recursively check GeoJSON positions: numbers, finite, lat in [-90, 90], lon in [-360, 360]
    (past ±180 only for an area that crosses the antimeridian, see `normalise_longitudes`)."""
    if isinstance(coords, (list, tuple)) and coords and isinstance(coords[0], (int, float)):
        if len(coords) < 2 or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords):
            raise GeometryError(f"{where}: position {coords!r} is not [longitude, latitude] (numbers, not strings)")
        lon, lat = coords[0], coords[1]
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise GeometryError(f"{where}: position {coords!r} is not finite")
        if not -360 <= lon <= 360 or not -90 <= lat <= 90:
            raise GeometryError(
                f"{where}: position {coords!r} is out of range (longitude -180…180, or up to ±360 for an area "
                "across the antimeridian; latitude -90…90; coordinates must be EPSG:4326 longitude, latitude)"
            )
        return
    if not isinstance(coords, (list, tuple)):
        raise GeometryError(f"{where}: coordinates must be arrays, got {coords!r}")
    for item in coords:
        _check_positions(item, where)


def _members(where: str) -> str:
    """The prefix of a member's place. A payload names a bare geometry (the AOI at its top level) by its
    `type` field: its members are named on their own (`coordinates[1]`, not `type.coordinates[1]`)."""
    return "" if where in ("", "type") else f"{where}."


def geometry_from_geojson(obj: Any, where: str = "geometry") -> BaseGeometry:
    """A shapely geometry from a GeoJSON geometry object, with range checks."""
    if not isinstance(obj, dict):
        raise GeometryError(f"{where}: expected a GeoJSON geometry object, got {type(obj).__name__}")
    gtype = obj.get("type")
    if gtype not in GEOMETRY_TYPES:
        raise GeometryError(f"{where}: unknown geometry type {gtype!r}")
    if gtype == "GeometryCollection":
        parts = obj.get("geometries")
        if not isinstance(parts, list):
            raise GeometryError(f"{where}: GeometryCollection without 'geometries'")
        return shapely.GeometryCollection(
            [geometry_from_geojson(p, f"{_members(where)}geometries[{i}]") for i, p in enumerate(parts)]
        )
    if "coordinates" not in obj:
        raise GeometryError(f"{where}: missing 'coordinates'")
    _check_positions(obj["coordinates"], where)
    if gtype in ("Polygon", "MultiPolygon"):
        obj = _with_closed_rings(obj, where)
    from ingester.geojson_check import UNCLOSED_RING, geometry_problem

    # what the geojson package finds wrong (rings of fewer than 4 positions, positions of 4 values, …);
    # rings equal in longitude and latitude but not in height count as closed, as above
    problem = geometry_problem({**obj, "coordinates": _as_lists(obj["coordinates"])}, _members(where).rstrip("."),
                               ignore=(UNCLOSED_RING,))
    if problem is not None:
        raise GeometryError(f"{problem} (GeoJSON, RFC 7946)")
    try:
        return shape(obj)
    except (ValueError, TypeError, IndexError, AttributeError, shapely.errors.GEOSException) as exc:
        raise GeometryError(f"{where}: invalid {gtype} coordinates ({exc})") from None


def _as_lists(value: Any) -> Any:
    """Coordinates with tuples as lists (as JSON decodes them; a payload built in Python may use tuples)."""
    return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _with_closed_rings(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The Polygon/MultiPolygon object with each open ring closed (its first position repeated at its end),
    with a warning saying so; the object itself when every ring is closed."""
    polygons = [obj["coordinates"]] if obj["type"] == "Polygon" else obj["coordinates"]
    closed = []
    changed = False
    for rings in polygons:
        if not isinstance(rings, list):
            closed.append(rings)
            continue
        out = []
        for ring in rings:
            if isinstance(ring, list) and len(ring) >= 2 and ring[0][:2] != ring[-1][:2]:
                warnings.warn(f"{where}: a ring is not closed (its last position differs from the first); "
                              "it was closed", GeometryRepairedWarning, stacklevel=3)
                ring = [*ring, ring[0]]
                changed = True
            out.append(ring)
        closed.append(out)
    if not changed:
        return obj
    return {**obj, "coordinates": closed[0] if obj["type"] == "Polygon" else closed}


def areal_part(geom: BaseGeometry) -> MultiPolygon:
    """The polygons of a geometry as one MultiPolygon (points and lines dropped)."""
    polys: list[Polygon] = []
    for part in getattr(geom, "geoms", [geom]):
        if isinstance(part, Polygon):
            if not part.is_empty:
                polys.append(part)
        elif isinstance(part, (MultiPolygon, shapely.GeometryCollection)):
            polys.extend(areal_part(part).geoms)
    return MultiPolygon(polys)


def validate_area(geom: BaseGeometry, where: str) -> MultiPolygon:
    """A valid, non-empty MultiPolygon AOI; invalid rings are repaired with a warning saying so."""
    dropped = [g.geom_type for g in getattr(geom, "geoms", [geom]) if g.geom_type not in ("Polygon", "MultiPolygon")]
    area = areal_part(geom)
    if area.is_empty:
        raise GeometryError(f"{where}: the AOI has no polygon (got {geom.geom_type}); an AOI must be an area")
    if dropped:
        warnings.warn(
            f"{where}: non-areal members ignored ({', '.join(sorted(set(dropped)))})",
            GeometryRepairedWarning,
            stacklevel=2,
        )
    if not area.is_valid:
        reason = explain_validity(area)
        repaired = areal_part(make_valid(area))
        if repaired.is_empty:
            raise GeometryError(f"{where}: invalid geometry that cannot be repaired ({reason})")
        warnings.warn(
            f"{where}: invalid AOI repaired ({reason}); check that the repaired area is what you meant",
            GeometryRepairedWarning,
            stacklevel=2,
        )
        area = repaired
    if area.area <= 0:
        raise GeometryError(f"{where}: the AOI has zero area")
    return normalise_longitudes(area, where)


def normalise_longitudes(area: MultiPolygon, where: str = "AOI") -> MultiPolygon:
    """The AOI with every part inside longitudes [-180, 180], following GeoJSON (RFC 7946 §3.1.9).

    A geometry crosses the antimeridian only when its own coordinates say so: it is cut into parts
    on each side (already normalised), or it is written with longitudes past ±180 (170 … 190), in which
    case the part past the line is cut off and shifted by 360°. A ring whose longitudes jump from 178
    to -179 is an area 357° wide, as written: a width is never guessed."""
    west, _south, east, _north = area.bounds
    if -180 <= west and east <= 180:
        return area
    if east - west > 360:
        raise GeometryError(f"{where}: the AOI is wider than 360° of longitude ({west:g} … {east:g})")
    parts: list[Polygon] = []
    for shift in (-360, 0, 360):
        window = shapely.box(-180 + shift, -90, 180 + shift, 90)
        piece = area.intersection(window)
        if not piece.is_empty:
            parts.extend(p for p in areal_part(shapely.affinity.translate(piece, xoff=-shift)).geoms if p.area > 0)
    return areal_part(shapely.unary_union(parts))


def earth_fraction(area: BaseGeometry) -> float:
    """The share of the Earth's surface (sphere) that an area in longitude/latitude covers: the area
    integral of cos(latitude) over the polygons, with edges followed in steps of at most one degree."""
    total = 0.0
    for poly in areal_part(area).geoms:
        for ring, sign in [(poly.exterior, 1.0), *((hole, -1.0) for hole in poly.interiors)]:
            coords = shapely.segmentize(ring, 1.0).coords
            lon = [math.radians(x) for x, _ in coords]
            sin_lat = [math.sin(math.radians(y)) for _, y in coords]
            # ∮ sin(lat) d(lon) over the ring = ± the ring's area on the unit sphere (Green's theorem)
            integral = sum((lon[i + 1] - lon[i]) * (sin_lat[i] + sin_lat[i + 1]) / 2 for i in range(len(lon) - 1))
            total += sign * abs(integral)
    return total / (4 * math.pi)

def single_polygon(geom: BaseGeometry) -> BaseGeometry:
    """A MultiPolygon of one polygon becomes that Polygon (how the original writes geometries)."""
    if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
        return geom.geoms[0]
    return geom


def to_geojson(geom: BaseGeometry) -> dict[str, Any]:
    """GeoJSON dict of a geometry, coordinates as lists."""
    def lists(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [lists(v) for v in value]
        return value

    out = mapping(geom)
    return {k: lists(v) for k, v in out.items()}


def _unwrap_wkt(text: str) -> str:
    raw = text.strip()
    if raw.startswith("geography'") and raw.endswith("'"):
        raw = raw[len("geography'") : -1]
    if raw.upper().startswith("SRID="):
        raw = raw.split(";", 1)[1]
    return raw


def from_wkt(text: str) -> BaseGeometry:
    """Parse WKT (also the EWKT `SRID=4326;…` and CDSE `geography'…'` wrappers)."""
    try:
        return shapely_wkt.loads(_unwrap_wkt(text))
    except shapely.errors.GEOSException as exc:
        raise GeometryError(f"invalid WKT ({exc})") from None


def from_wkt_many(texts: list[str]) -> list[BaseGeometry | None]:
    """Parse many WKT strings at once (in GEOS, without a Python call each); None where one is invalid."""
    import numpy as np

    parsed = shapely.from_wkt(np.array([_unwrap_wkt(t) for t in texts], dtype=object), on_invalid="ignore")
    return list(parsed)


def to_wkt(geom: BaseGeometry, precision: int | None = None) -> str:
    """WKT with `precision` decimals (None: shortest exact form)."""
    if precision is None:
        return shapely.to_wkt(geom, rounding_precision=-1, trim=True)
    return shapely.to_wkt(geom, rounding_precision=precision, trim=False)


def tile_wkt(coords: list[tuple[float, float]]) -> str:
    """A burst polygon the way the original writes it: `POLYGON((lon lat, …))`, 6 decimals."""
    return "POLYGON((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in coords) + "))"


def split_antimeridian(poly: Polygon) -> BaseGeometry:
    """Split a small polygon whose longitudes jump across ±180° into parts on each side.

    For footprints computed from data normalised to [-180, 180] (an S1 burst's geolocation grid: a
    few dozen kilometres, so a jump of more than 180° between neighbours can only be the line), never
    for an AOI (see `normalise_longitudes`). The ring is unwrapped into continuous longitudes, then
    clipped into [-180, 180] and shifted parts.
    """
    xs = [x for x, _ in poly.exterior.coords]
    if all(abs(b - a) <= 180 for a, b in zip(xs, xs[1:], strict=False)):
        return poly
    unwrapped: list[tuple[float, float]] = []
    offset = 0.0
    prev = None
    for x, y in poly.exterior.coords:
        if prev is not None:
            if x - prev > 180:
                offset -= 360
            elif prev - x > 180:
                offset += 360
        unwrapped.append((x + offset, y))
        prev = x
    ring = Polygon(unwrapped)
    parts = []
    for shift in (-360, 0, 360):
        window = shapely.box(-180 + shift, -90, 180 + shift, 90)
        piece = ring.intersection(window)
        if not piece.is_empty and piece.area > 0:
            parts.extend(areal_part(shapely.affinity.translate(piece, xoff=-shift)).geoms)
    return single_polygon(MultiPolygon(parts))


def query_polygons(area: BaseGeometry, max_points: int = 200, max_edge: float = 10.0) -> list[Polygon]:
    """Polygons to send to a catalogue that takes one POLYGON: one per part, simplified if long.

    Simplification only ever grows the area (it is done on a small buffer), so no scene that
    touches the exact AOI can be missed; the exact AOI is used for the final intersection test.
    Edges are then cut to at most `max_edge` degrees: a catalogue that reads the polygon as a
    geography joins two vertices by a great circle, which for a long edge along a parallel (a box 185°
    wide) runs far from the AOI, over the pole.
    """
    out: list[Polygon] = []
    for poly in areal_part(area).geoms:
        candidate = Polygon(poly.exterior)  # holes only shrink the query: drop them
        tolerance = 1e-4
        while len(candidate.exterior.coords) > max_points:
            grown = Polygon(poly.exterior).buffer(tolerance, join_style="mitre")
            candidate = grown.simplify(tolerance, preserve_topology=True)
            if isinstance(candidate, MultiPolygon):
                candidate = candidate.convex_hull
            tolerance *= 2
        out.append(shapely.geometry.polygon.orient(shapely.segmentize(candidate, max_edge), sign=1.0))
    return out


def intersects(a: BaseGeometry, b: BaseGeometry) -> bool:
    return bool(a.intersects(b))
