"""Sentinel-1 product annotation parsing: swath, burst list, geolocation grid (docs/bursts.md, "Annotation parsing").

Speed matters (thousands of ~1 MB files): only the five elements needed (`adsHeader`,
`productInformation`, `imageInformation`, `swathTiming`, `geolocationGrid`) are cut out of the
bytes and parsed with ElementTree; a file where that fails is parsed whole.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from ingester.geometry import split_antimeridian, tile_wkt
from ingester.tiling.burst_ids import T_ORB, BurstIdError, anx_key, burst_ids, cycle_offset, first_swath_offset

_SECTIONS = ("adsHeader", "productInformation", "imageInformation", "swathTiming", "geolocationGrid")
# The grid is the largest section; its points have a fixed element order (XSD), read by a regex.
# A grid where the regex does not find every point is parsed with ElementTree instead.
_GRID_POINT = re.compile(
    rb"<geolocationGridPoint>\s*<azimuthTime>[^<]*</azimuthTime>\s*<slantRangeTime>[^<]*</slantRangeTime>\s*"
    rb"<line>\s*(-?\d+)\s*</line>\s*<pixel>\s*(-?\d+)\s*</pixel>\s*<latitude>([^<]+)</latitude>\s*"
    rb"<longitude>([^<]+)</longitude>"
)


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Burst:
    index: int  # 0-based position in the swath file (tile_nr = index + 1)
    azimuth_time: datetime
    azimuth_anx_time: float
    sensing_time: datetime
    annotated_id: int | None = None  # <burstId>, IPF ≥ 3.40 only
    annotated_absolute_id: int | None = None  # <burstId absolute="…">


@dataclasses.dataclass
class SwathAnnotation:
    origin: str
    mission: str
    mode: str
    swath: str
    polarisation: str
    start_time: datetime
    absolute_orbit: int
    pass_direction: str  # Ascending / Descending
    anx_time: datetime
    azimuth_time_interval: float
    number_of_lines: int
    lines_per_burst: int
    samples_per_burst: int
    bursts: list[Burst]
    grid: list[tuple[int, int, float, float]]  # (line, pixel, longitude, latitude)

    def grid_lines(self) -> dict[int, list[tuple[int, float, float]]]:
        """Grid points by line, each line sorted by pixel: {line: [(pixel, lon, lat), …]}."""
        lines: dict[int, list[tuple[int, float, float]]] = {}
        for line, pixel, lon, lat in self.grid:
            lines.setdefault(line, []).append((pixel, lon, lat))
        for points in lines.values():
            points.sort()
        return dict(sorted(lines.items()))

    def footprints(self) -> list[BaseGeometry]:
        """One polygon per burst from all the grid points of the two grid lines bounding it.

        The grid lines come from the data: n bursts need n + 1 lines (the last one is
        numberOfLines − 1, so the last burst ends there). Polygons crossing ±180° are split.
        """
        lines = self.grid_lines()
        keys = list(lines)
        if len(keys) != len(self.bursts) + 1:
            raise AnnotationError(
                f"{self.origin}: geolocation grid has {len(keys)} lines for {len(self.bursts)} bursts "
                f"(expected {len(self.bursts) + 1})"
            )
        rings = np.empty((len(self.bursts), 2 * len(lines[keys[0]]) + 1, 2))
        for k in range(len(self.bursts)):
            top, bottom = lines[keys[k]], lines[keys[k + 1]]
            if len(top) != len(bottom):
                raise AnnotationError(f"{self.origin}: grid lines {keys[k]} and {keys[k + 1]} have "
                                      f"{len(top)} and {len(bottom)} points")
            ring = [(lon, lat) for _p, lon, lat in top] + [(lon, lat) for _p, lon, lat in reversed(bottom)]
            ring.append(ring[0])
            if len(ring) != rings.shape[1]:
                raise AnnotationError(f"{self.origin}: grid lines have different numbers of points")
            rings[k] = ring
        polygons = shapely.polygons(rings)
        crossing = np.abs(np.diff(rings[:, :, 0], axis=1)).max(axis=1) > 180
        return [split_antimeridian(poly) if cross else poly for poly, cross in zip(polygons, crossing, strict=True)]

    def geocube_polygons(self) -> list[str]:
        """The original's four-corner burst polygons (docs/bursts.md, "Compatibility polygon"), as its WKT text."""
        near: dict[int, tuple[float, float]] = {}
        far: dict[int, tuple[float, float]] = {}
        for line, pixel, lon, lat in self.grid:
            if pixel == 0:
                near[line] = (lon, lat)
            elif pixel == self.samples_per_burst - 1:
                far[line] = (lon, lat)
        out = []
        lpb = self.lines_per_burst
        for i in range(len(self.bursts)):
            first, last = i * lpb, (i + 1) * lpb
            if first not in near:
                first -= 1
            if last not in far:
                last -= 1
            try:
                ring = [near[first], near[last], far[last], far[first], near[first]]
            except KeyError as exc:
                raise AnnotationError(f"{self.origin}: burst {i + 1}: no grid point on line {exc}") from None
            out.append(tile_wkt(ring))
        return out

    def since_anx(self, burst: Burst) -> float:
        """t_b − t_anx in seconds: the reference time of the burst's cycle (central-swath rule)."""
        return (burst.sensing_time - self.anx_time).total_seconds() + cycle_offset(self.swath)

    def _cycle_start_since_anx(self, burst: Burst) -> float:
        """t_IW1 − t_anx: from the ANX to the start of the burst's cycle (its first swath)."""
        return (burst.sensing_time - self.anx_time).total_seconds() + first_swath_offset(self.swath)

    def burst_identity(self, burst: Burst, relative_orbit: int) -> tuple[int, int, int]:
        """(track, relative id, absolute id) with the DAD formula, `relative_orbit` being the
        product's (start) relative orbit.

        Two cases need care (docs/bursts.md, "ESA burst ids"). A product whose first burst is already more than
        an orbit after the annotated ANX carries a stale ANX (one orbit too early): one orbit period
        is taken off. Otherwise a burst more than an orbit after the ANX lies after the next ANX (the
        product crosses it): its id follows from the same formula and its track is the next one.
        """
        try:
            since = self.since_anx(burst)
            track = relative_orbit
            if self._cycle_start_since_anx(self.bursts[0]) >= T_ORB:
                since -= T_ORB
            elif self._cycle_start_since_anx(burst) >= T_ORB:
                track = relative_orbit % 175 + 1
            relative, absolute = burst_ids(self.swath, since, relative_orbit, self.absolute_orbit)
        except BurstIdError as exc:
            raise AnnotationError(f"{self.origin}: {exc}") from None
        return track, relative, absolute

    def computed_ids(self, burst: Burst, relative_orbit: int) -> tuple[int, int]:
        """ESA (relative, absolute) burst ids computed with the DAD formula."""
        _track, relative, absolute = self.burst_identity(burst, relative_orbit)
        return relative, absolute

    def anx_key(self, burst: Burst) -> int:
        return anx_key(burst.azimuth_anx_time)


def footprint_wkt(geom: BaseGeometry) -> str:
    """`POLYGON((lon lat, …))` with 6 decimals, or the MULTIPOLYGON of a split footprint."""
    if isinstance(geom, Polygon):
        return tile_wkt(shapely.get_coordinates(geom).tolist())
    if isinstance(geom, MultiPolygon):
        parts = [
            "((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in p.exterior.coords) + "))" for p in geom.geoms
        ]
        return "MULTIPOLYGON(" + ", ".join(parts) + ")"
    raise AnnotationError(f"unexpected footprint geometry {geom.geom_type}")


def _time(text: str | None, where: str) -> datetime:
    if not text:
        raise AnnotationError(f"{where}: missing time")
    try:
        value = datetime.fromisoformat(text.strip().rstrip("Z"))
    except ValueError:
        raise AnnotationError(f"{where}: bad time {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sections(data: bytes) -> tuple[dict[str, ET.Element], list[tuple[bytes, ...]] | None]:
    """The needed elements cut out of the file (they come in document order), and the grid points
    when the regex read them all; falls back to a full parse if a cut fails."""
    out: dict[str, ET.Element] = {}
    fast_grid = None
    position = 0
    try:
        for tag in _SECTIONS:
            start = data.find(b"<" + tag.encode() + b">", position)
            end = data.find(b"</" + tag.encode() + b">", start)
            if start < 0 or end < 0:
                break
            position = end + len(tag) + 3
            if tag == "geolocationGrid":
                grid = _GRID_POINT.findall(data, start, end)
                if grid and len(grid) == data.count(b"<geolocationGridPoint>", start, end):
                    out[tag], fast_grid = ET.Element(tag), grid
                    continue
            out[tag] = ET.fromstring(data[start:position])
        else:
            return out, fast_grid
    except ET.ParseError:
        pass
    out.clear()
    root = ET.fromstring(data)
    for tag in _SECTIONS:
        element = root.find(f".//{tag}")
        if element is not None:
            out[tag] = element
    return out, None


def parse_annotation(data: bytes, origin: str = "<annotation>") -> SwathAnnotation:
    """Parse a product annotation (one swath, one polarisation). Raises AnnotationError."""
    try:
        sections, fast = _sections(data)
    except ET.ParseError as exc:
        raise AnnotationError(f"{origin}: not valid XML ({exc})") from None
    missing = [t for t in _SECTIONS if t not in sections]
    if missing:
        raise AnnotationError(f"{origin}: not a Sentinel-1 product annotation (no {', '.join(missing)})")
    header, info, image = sections["adsHeader"], sections["productInformation"], sections["imageInformation"]
    timing, grid_el = sections["swathTiming"], sections["geolocationGrid"]

    def text(element: ET.Element, path: str) -> str:
        value = element.findtext(path)
        if value is None or not value.strip():
            raise AnnotationError(f"{origin}: missing {element.tag}/{path}")
        return value.strip()

    def number(element: ET.Element, path: str, kind: type = int):
        raw = text(element, path)
        try:
            return kind(raw)
        except ValueError:
            raise AnnotationError(f"{origin}: {element.tag}/{path}: not a number ({raw!r})") from None

    bursts: list[Burst] = []
    for i, burst in enumerate(timing.iter("burst")):
        where = f"{origin}: burst {i + 1}"
        bid = burst.find("burstId")
        annotated = annotated_abs = None
        if bid is not None and bid.text and bid.text.strip():
            annotated = int(bid.text)
            if bid.get("absolute"):
                annotated_abs = int(bid.get("absolute", "0"))
        bursts.append(Burst(
            index=i,
            azimuth_time=_time(burst.findtext("azimuthTime"), f"{where} azimuthTime"),
            azimuth_anx_time=float(burst.findtext("azimuthAnxTime") or "nan"),
            sensing_time=_time(burst.findtext("sensingTime"), f"{where} sensingTime"),
            annotated_id=annotated,
            annotated_absolute_id=annotated_abs,
        ))
    if not bursts:
        raise AnnotationError(f"{origin}: the burst list is empty (not an SLC annotation?)")
    burst_list = timing.find("burstList")
    count = burst_list.get("count") if burst_list is not None else None
    if count is not None and count.isdigit() and int(count) != len(bursts):
        raise AnnotationError(f"{origin}: burstList count={count} but {len(bursts)} burst elements")
    if any(b.azimuth_anx_time != b.azimuth_anx_time for b in bursts):
        raise AnnotationError(f"{origin}: a burst has no azimuthAnxTime")

    grid: list[tuple[int, int, float, float]] = []
    try:
        if fast is not None:
            grid = [(int(line), int(pixel), float(lon), float(lat)) for line, pixel, lat, lon in fast]
        for point in grid_el.iter("geolocationGridPoint"):
            grid.append((
                int(point.findtext("line") or ""),
                int(point.findtext("pixel") or ""),
                float(point.findtext("longitude") or ""),
                float(point.findtext("latitude") or ""),
            ))
    except ValueError:
        raise AnnotationError(f"{origin}: a geolocation grid point lacks line/pixel/longitude/latitude") from None
    if not grid:
        raise AnnotationError(f"{origin}: empty geolocation grid")

    return SwathAnnotation(
        origin=origin,
        mission=text(header, "missionId"),
        mode=text(header, "mode"),
        swath=text(header, "swath"),
        polarisation=text(header, "polarisation"),
        start_time=_time(text(header, "startTime"), f"{origin}: adsHeader/startTime"),
        absolute_orbit=number(header, "absoluteOrbitNumber"),
        pass_direction=text(info, "pass"),
        anx_time=_time(text(image, "ascendingNodeTime"), f"{origin}: ascendingNodeTime"),
        azimuth_time_interval=number(image, "azimuthTimeInterval", float),
        number_of_lines=number(image, "numberOfLines"),
        lines_per_burst=number(timing, "linesPerBurst"),
        samples_per_burst=number(timing, "samplesPerBurst"),
        bursts=bursts,
        grid=grid,
    )
