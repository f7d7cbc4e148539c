"""GeoJSON validity of geometry objects (RFC 7946), as the `geojson` package checks it, with the place of
the problem: used on the payload's AOI and on every feature of a scenes/tiles file.

The package's rules (`errors()` of its geometry classes, and its constructors for numbers): a position is
a list of numbers (of 2 or 3 in a point or a line), a line has at least 2 positions, a linear ring at least
4 and ends where it started, and the members of multi-geometries and geometry collections follow the
rules of their type. Each member of a
multi-geometry is checked on its own so that a message names it (`coordinates[2]`).

Speed: the package's constructors copy and round every coordinate (reading 10,000 scenes would cost half
as much again), so the decoded lists go as they are to the package's checks of a position, a line and a
polygon (what `errors()` of its classes runs); the numbers of polygon positions, which the package only
checks in that copy, are checked here. A test holds the result to the package's own `is_valid`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

import geojson
import geojson.geometry

GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection")
# What `errors()` of the package's classes runs: the check of one position, line or polygon; a multi-part
# geometry checks each of its parts with the check of its single-part type.
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "Point": geojson.geometry.check_point, "LineString": geojson.geometry.check_line_string,
    "Polygon": geojson.geometry.check_polygon}
_PART = {"MultiPoint": "Point", "MultiLineString": "LineString", "MultiPolygon": "Polygon"}
_LIST, _NUMBERS = {list}, {int, float}
UNCLOSED_RING = "Each linear ring must end where it started"  # the package's words (the payload repairs it)


def _in(where: str) -> str:
    """The prefix of a member's place: `features[3].geometry.`, or nothing for a geometry named "" (the top
    level of a document)."""
    return f"{where}." if where else ""


def _numbers_problem(polygon: list) -> str | None:
    """The package checks the numbers of polygon positions only in its constructors' copy; checked here
    instead (the JSON decoder gives int or float for a number), in C-level passes over every position.
    (Like the package, the number of values of a polygon's position is not checked.)"""
    positions = list(chain.from_iterable(polygon))
    if not set(map(type, positions)) <= _LIST or not set(map(type, chain.from_iterable(positions))) <= _NUMBERS:
        return "a position must be a list of numbers"
    return None


def _single_problem(kind: str, coordinates: Any) -> str | None:
    problem = _CHECKS[kind](coordinates)
    if problem is None and kind == "Polygon":
        problem = _numbers_problem(coordinates)
    return problem


def geometry_problems(obj: Any, where: str = "geometry") -> list[tuple[str, str]]:
    """Every (place, problem) the `geojson` package finds in a GeoJSON geometry object; [] when valid.
    `where` is the name of the object in messages (`features[3].geometry`; "" for a document's top level)."""
    if not isinstance(obj, dict):
        return [(where, f"must be a GeoJSON geometry object, got {type(obj).__name__}")]
    kind = obj.get("type")
    if kind not in GEOMETRY_TYPES:
        return [(f"{_in(where)}type", f"{kind!r} is not a GeoJSON geometry type ({', '.join(GEOMETRY_TYPES)})")]
    if kind == "GeometryCollection":
        members = obj.get("geometries")
        if not isinstance(members, list):
            return [(f"{_in(where)}geometries", "a GeometryCollection needs a 'geometries' list")]
        out: list[tuple[str, str]] = []
        for i, member in enumerate(members):
            out.extend(geometry_problems(member, f"{_in(where)}geometries[{i}]"))
        return out
    coordinates = obj.get("coordinates")
    if not isinstance(coordinates, list):
        return [(f"{_in(where)}coordinates", "must be a list (of positions, lines, rings or polygons)")]
    if kind in _PART:
        return [(f"{_in(where)}coordinates[{i}]", problem) for i, part in enumerate(coordinates)
                if (problem := _single_problem(_PART[kind], part)) is not None]
    problem = _single_problem(kind, coordinates)
    return [] if problem is None else [(f"{_in(where)}coordinates", problem)]


def geometry_problem(obj: Any, where: str = "geometry", ignore: tuple[str, ...] = ()) -> str | None:
    """The first problem as `<place>: <problem>`, leaving out the problems listed in `ignore`; None when valid."""
    for place, problem in geometry_problems(obj, where):
        if problem not in ignore:
            return f"{place}: {problem}"
    return None
