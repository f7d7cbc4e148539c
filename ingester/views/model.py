"""What the views show: one `SceneView` per scene of a scenes/tiles file or of an AOI in the store,
with the columns of `ingester show`, the share of the AOI it covers, its tiles and their links, and
the `Footprint`s that maps and timelines draw.

Coverage is geodesic: the area of (footprint ∩ AOI) over the area of the AOI, both measured on the
WGS84 ellipsoid with pyproj (the intersection itself is computed in longitude/latitude); it is
`ingester.geodesy.coverage`, the function the catalogues' `aoiCoverage` tag comes from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from ingester.errors import InputError
from ingester.geodesy import coverage
from ingester.geometry import GeometryError, areal_part, from_wkt, from_wkt_many
from ingester.naming import NameError_, constellation_of, product_keys
from ingester.scenes import Scene, feature_lines, parse_scenes, read_scenes_document
from ingester.times import format_time

if TYPE_CHECKING:
    from ingester.store import SceneTileRow, Store

STATUS_ORDER = ("DONE", "NEW", "PENDING", "RETRY", "FAILED")  # drawing order: problems on top
SORT_KEYS = ("line", "date", "source", "platform", "track", "cloud", "coverage", "online", "size")


@dataclasses.dataclass(frozen=True)
class Link:
    """A tile's previous or reference acquisition: its date and scene, and whether that scene is shown."""

    date: datetime
    scene_id: str
    tile: str
    present: bool

    def to_json(self) -> dict[str, Any]:
        return {"date": format_time(self.date), "scene": self.scene_id, "tile": self.tile, "present": self.present}


@dataclasses.dataclass(eq=False)
class TileView:
    """A tile of a scene: a Sentinel-1 burst (`name` is its burst id), or the whole scene."""

    name: str
    date: datetime
    geometry: BaseGeometry | None
    previous: Link | None = None
    reference: Link | None = None
    status: str | None = None
    message: str = ""
    tile_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.name, "previous": self.previous.to_json() if self.previous else None,
                               "reference": self.reference.to_json() if self.reference else None}
        if self.tile_id is not None:
            out.update({"tile_id": self.tile_id, "status": self.status, "message": self.message})
        return out


@dataclasses.dataclass(eq=False)
class SceneView:
    """One row of `ingester show`."""

    index: int                       # position in the file (features[index]) or in the AOI
    source_id: str
    aoi: str
    date: datetime
    platform: str
    track: str                       # "A44" (S1), "R108 32UNF" (S2), "196/022" (Landsat)
    stack: str                       # the timeline's row: "A44", "32UNF", "196/022"
    orbit: int | None                # relative orbit (S1, S2) or WRS path (Landsat)
    cloud: float | None              # percent
    online: bool | None
    size: int | None                 # bytes
    geometry: BaseGeometry | None
    tiles: list[TileView] = dataclasses.field(default_factory=list)
    line: int | None = None          # 1-based line in the file
    coverage: float | None = None    # share of the AOI, 0…1
    scene_id: int | None = None      # store id
    status: str | None = None        # store: the status of the scene's work (see `scene_status`)
    message: str = ""

    @property
    def bursts(self) -> list[TileView]:
        """The tiles drawn on their own: bursts, not a single tile that is the whole scene."""
        if len(self.tiles) == 1 and self.tiles[0].geometry is not None and self.geometry is not None \
                and self.tiles[0].geometry.equals(self.geometry):
            return []
        return [t for t in self.tiles if t.geometry is not None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "line": self.line, "index": self.index, "date": format_time(self.date), "source_id": self.source_id,
            "platform": self.platform, "track": self.track, "relative_orbit": self.orbit,
            "cloud_cover": self.cloud, "coverage": None if self.coverage is None else round(self.coverage, 6),
            "online": self.online, "size": self.size, "tiles": [t.to_json() for t in self.tiles],
        }
        if self.scene_id is not None:
            out.update({"scene_id": self.scene_id, "status": self.status, "message": self.message})
        return out


@dataclasses.dataclass
class View:
    """The scenes of one file or AOI, with the AOI when known."""

    name: str                        # the AOI name (or the file name when the file names none)
    origin: str                      # the file path, or "store"
    aoi: MultiPolygon | None
    scenes: list[SceneView]
    document: Any = None             # the file's decoded JSON (for `filter`)
    is_tiles_file: bool = False

    @property
    def from_store(self) -> bool:
        return self.origin == "store"


@dataclasses.dataclass(frozen=True)
class Footprint:
    """One polygon on a map: a burst, or a whole scene."""

    geometry: BaseGeometry
    scene: SceneView
    tile: TileView | None

    @property
    def status(self) -> str | None:
        return self.tile.status if self.tile is not None and self.tile.status else self.scene.status

    @property
    def message(self) -> str:
        return (self.tile.message if self.tile is not None and self.tile.message else "") or self.scene.message

    @property
    def label(self) -> str | None:
        return self.tile.name if self.tile is not None else None

    @property
    def date(self) -> datetime:
        return self.scene.date


# --- columns ---------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


_MGRS = re.compile(r"_T?(\d{2}[C-X][A-Z]{2})_")
CLOUD_KEYS = ("cloudCoverPercentage", "cloudCover", "eo:cloud_cover", "cloud_cover")


def describe(source_id: str, tags: dict[str, str], metadata: dict[str, Any]) -> dict[str, Any]:
    """platform, track, stack, orbit, cloud, online and size of a scene, from its tags, its metadata
    and its product name (for what the tags lack)."""
    kind = constellation_of(source_id)
    try:
        keys = product_keys(source_id)
    except NameError_:
        keys = {}
    orbit = _integer(tags.get("relativeOrbit") or tags.get("relativeOrbitNumber"))
    if kind == "sentinel1":
        platform = source_id[:3]
        direction = (tags.get("orbitDirection") or "")[:1].upper()
        track = f"{direction}{orbit}" if orbit is not None else "?"
        stack = track
    elif kind == "sentinel2":
        platform = source_id[:3]
        if orbit is None:
            orbit = _integer(keys.get("ORBIT"))
        tile = keys.get("TILE", "")[1:] if keys.get("TILE", "").startswith("T") else ""
        if not tile:  # a STAC item id (Earth Search: S2B_32UNG_20220104_0_L2A)
            found = _MGRS.search(source_id)
            tile = found.group(1) if found else ""
        track = " ".join(x for x in (f"R{orbit:03d}" if orbit is not None else "", tile) if x) or "?"
        stack = tile or track
    elif kind == "landsat89":
        platform = source_id[:4]
        path = tags.get("path") or keys.get("PATH", "")
        row = tags.get("row") or keys.get("ROW", "")
        orbit = _integer(path)
        track = stack = f"{str(path).zfill(3)}/{str(row).zfill(3)}" if path else "?"
    else:
        platform = tags.get("satellite") or tags.get("platform") or tags.get("constellation") or "?"
        track = stack = f"R{orbit}" if orbit is not None else "?"
    cloud = next((c for c in (_number(tags.get(k)) for k in CLOUD_KEYS) if c is not None), None)
    if cloud is None:
        cloud = next((c for c in (_number(metadata.get(k)) for k in CLOUD_KEYS) if c is not None), None)
    online = metadata.get("online")
    return {"platform": platform, "track": track, "stack": stack, "orbit": orbit, "cloud": cloud,
            "online": online if isinstance(online, bool) else None, "size": _integer(metadata.get("size"))}


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def _geometry(wkt: str) -> BaseGeometry | None:
    try:
        geom = from_wkt(wkt)
    except GeometryError:
        return None
    return None if geom.is_empty else geom


# --- building views --------------------------------------------------------------------------------

def _scene_view(index: int, scene: Scene, present: set[str], shapes: Iterator[BaseGeometry | None]) -> SceneView:
    """`shapes` yields the parsed footprint of the scene, then those of its tiles."""
    info = describe(scene.source_id, scene.tags, scene.metadata)
    geometry = next(shapes)
    tiles = []
    for tile in scene.tiles:
        links = [None if ref is None else Link(ref.date, ref.scene_id, ref.source_id, ref.scene_id in present)
                 for ref in (tile.previous, tile.reference)]
        tiles.append(TileView(tile.source_id, tile.date, next(shapes), links[0], links[1]))
    return SceneView(index=index, source_id=scene.source_id, aoi=scene.aoi, date=scene.date,
                     geometry=geometry, tiles=tiles, **info)


def _shapes(wkts: list[str]) -> Iterator[BaseGeometry | None]:
    for geom in from_wkt_many(wkts):
        yield None if geom is None or geom.is_empty else geom


def from_file(path: str | Path, aoi: MultiPolygon | None = None) -> View:
    """The scenes of a scenes.json / tiles.json file, read with the project's reader, with the line
    each one starts on; with the AOI, the share of it each scene covers."""
    origin = str(path)
    text, doc = read_scenes_document(path)
    scenes = parse_scenes(doc, origin, text).scenes  # with the text: a message names the line
    lines = feature_lines(text)
    present = {s.source_id for s in scenes}
    shapes = _shapes([w for s in scenes for w in (s.wkt, *(t.wkt for t in s.tiles))])
    views = [_scene_view(i, s, present, shapes) for i, s in enumerate(scenes)]
    for view, line in zip(views, lines, strict=False):
        view.line = line
    names = sorted({s.aoi for s in scenes if s.aoi})
    name = names[0] if len(names) == 1 else Path(path).name
    result = View(name, origin, aoi, views, document=doc, is_tiles_file=any(s.tiles for s in scenes))
    add_coverage(result)
    return result


_WORST = {"DONE": 0, "NEW": 1, "PENDING": 2, "RETRY": 3, "FAILED": 4}


def scene_status(scene_status: str, scene_message: str, tiles: Iterable[TileView]) -> tuple[str, str]:
    """The status of a scene's work as one word: the scene's own until it is DONE (its download and
    scene graph), then the worst of its tiles' (FAILED > RETRY > PENDING > NEW > DONE), with the
    message of the job it comes from."""
    if scene_status != "DONE":
        return scene_status, scene_message
    worst = max(tiles, key=lambda t: _WORST.get(t.status or "DONE", 0), default=None)
    if worst is None or not worst.status:
        return scene_status, scene_message
    return worst.status, worst.message


def from_rows(name: str, rows: list[SceneTileRow], aoi: MultiPolygon | None) -> View:
    """The scenes of an AOI from its stored rows (`Store.scene_tile_rows`)."""
    links: dict[int, tuple[datetime, str, str]] = {}
    for r in rows:
        if r.tile is not None:
            links[r.tile.id] = (_parse(r.scene.date), r.scene.source_id, r.tile.source_id)

    def link(tile_id: int | None) -> Link | None:
        if tile_id is None or tile_id not in links:
            return None
        date, scene_id, tile = links[tile_id]
        return Link(date, scene_id, tile, True)

    views: list[SceneView] = []
    by_id: dict[int, SceneView] = {}
    for r in rows:
        view = by_id.get(r.scene.id)
        if view is None:
            info = describe(r.scene.source_id, r.tags, r.data.get("metadata") or {})
            view = SceneView(index=len(views), source_id=r.scene.source_id, aoi=name, date=_parse(r.scene.date),
                             geometry=_geometry(r.wkt), scene_id=r.scene.id, status=r.scene.status,
                             message=r.scene.message, **info)
            by_id[r.scene.id] = view
            views.append(view)
        if r.tile is not None:
            view.tiles.append(TileView(r.tile.source_id, _parse(r.scene.date),
                                       _geometry(str(r.tile_data.get("wkt") or "")), link(r.tile.prev),
                                       link(r.tile.ref), r.tile.status, r.tile.message, r.tile.id))
    for view in views:
        view.status, view.message = scene_status(view.status or "NEW", view.message, view.tiles)
    result = View(name, "store", aoi, views, is_tiles_file=any(v.bursts for v in views))
    add_coverage(result)
    return result


def from_store(store: Store, name: str, aoi: MultiPolygon | None = None) -> View:
    """The scenes and tiles of an AOI of the store, with their statuses; the AOI outline is the one
    stored at ingestion unless `aoi` is given."""
    row = store.require_aoi(name)
    if aoi is None:
        aoi = stored_aoi(row.settings)
    return from_rows(row.name, store.scene_tile_rows(row.id), aoi)


def stored_aoi(settings: dict[str, Any]) -> MultiPolygon | None:
    """The AOI geometry kept with the AOI (`aoi_wkt`, written by `ingester aoi` since the views exist)."""
    geom = _geometry(str(settings.get("aoi_wkt") or ""))
    return None if geom is None else areal_part(geom)


def _parse(text: str) -> datetime:
    from ingester.times import parse_time

    return parse_time(text)


def add_coverage(view: View) -> None:
    if view.aoi is None:
        return
    for scene, share in zip(view.scenes, coverage([s.geometry for s in view.scenes], view.aoi), strict=True):
        scene.coverage = share


def footprints(view: View) -> list[Footprint]:
    """What a map draws: each burst of a scene that has bursts, else the scene's footprint."""
    out: list[Footprint] = []
    for scene in view.scenes:
        bursts = scene.bursts
        if bursts:
            out.extend(Footprint(t.geometry, scene, t) for t in bursts if t.geometry is not None)
        elif scene.geometry is not None:
            tile = scene.tiles[0] if len(scene.tiles) == 1 else None
            out.append(Footprint(scene.geometry, scene, tile))
    return out


# --- filters and order -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Filters:
    """`--max-cloud` (percent; scenes without a cloud cover, such as radar ones, pass),
    `--min-coverage` (percent of the AOI), `--orbit` (any of: relative orbit number, S1 track such
    as A44, MGRS tile, WRS path or path/row)."""

    max_cloud: float | None = None
    min_coverage: float | None = None
    orbits: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.max_cloud is not None or self.min_coverage is not None or bool(self.orbits)

    def check(self, view: View) -> None:
        for name, value in (("--max-cloud", self.max_cloud), ("--min-coverage", self.min_coverage)):
            if value is not None and not 0 <= value <= 100:
                raise InputError(f"{name}: must be a percentage between 0 and 100, got {value:g}")
        if self.min_coverage is not None and view.aoi is None:
            raise InputError(f"--min-coverage needs the AOI of {view.origin}: give --payload PAYLOAD")

    def describe(self) -> str:
        parts = []
        if self.max_cloud is not None:
            parts.append(f"cloud ≤ {self.max_cloud:g} %")
        if self.min_coverage is not None:
            parts.append(f"coverage ≥ {self.min_coverage:g} %")
        if self.orbits:
            parts.append(f"orbit {' or '.join(self.orbits)}")
        return ", ".join(parts)

    def keeps(self, scene: SceneView) -> bool:
        if self.max_cloud is not None and scene.cloud is not None and scene.cloud > self.max_cloud:
            return False
        if self.min_coverage is not None and (scene.coverage or 0.0) * 100 < self.min_coverage - 1e-9:
            return False
        if self.orbits and not any(_orbit_matches(scene, o) for o in self.orbits):
            return False
        return True


def _orbit_matches(scene: SceneView, wanted: str) -> bool:
    text = wanted.strip().upper()
    number = _integer(text)
    if number is not None and scene.orbit is not None:
        return number == scene.orbit
    candidates = {scene.track.upper(), scene.stack.upper(), *scene.track.upper().split()}
    return text in candidates or text.lstrip("T") in candidates


def select(scenes: Iterable[SceneView], filters: Filters) -> list[SceneView]:
    return [s for s in scenes if filters.keeps(s)]


def sort_scenes(scenes: list[SceneView], key: str, reverse: bool = False) -> list[SceneView]:
    """Scenes ordered by one column (ties by line); scenes without a value come last either way."""
    if key not in SORT_KEYS:
        raise InputError(f"--sort {key!r}: unknown column; known: {', '.join(SORT_KEYS)}")
    attribute = {"source": "source_id", "line": "index"}.get(key, key)
    present = [s for s in scenes if getattr(s, attribute) is not None]
    missing = [s for s in scenes if getattr(s, attribute) is None]
    present.sort(key=lambda s: (getattr(s, attribute), s.index), reverse=reverse)
    return present + missing


# --- writing a filtered file -----------------------------------------------------------------------

def kept_document(view: View, kept: Iterable[SceneView]) -> dict[str, Any]:
    """The file's FeatureCollection with only the kept features, each as it was in the file: the
    same result as deleting the other features' lines by hand."""
    keep = {s.index for s in kept}
    doc = dict(view.document)
    doc["features"] = [f for i, f in enumerate(view.document["features"]) if i in keep]
    return doc


def broken_links(view: View, kept: Iterable[SceneView]) -> list[str]:
    """Previous/reference links of the kept tiles that point at a scene of the file left out (an
    `ingester aoi --tiles` of the result refuses them unless that scene is already in the AOI)."""
    kept = list(kept)
    names = {s.source_id for s in kept}
    dropped = {s.source_id for s in view.scenes} - names
    out = []
    for scene in kept:
        for tile in scene.tiles:
            for what, link in (("previous", tile.previous), ("reference", tile.reference)):
                if link is not None and link.scene_id in dropped:
                    out.append(f"{scene.source_id} tile {tile.name}: {what} {link.scene_id} is left out")
    return out


def polygons(geom: BaseGeometry) -> list[Polygon]:
    return list(areal_part(geom).geoms)
