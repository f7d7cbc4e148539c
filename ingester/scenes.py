"""`Scene` and `Tile` models; reading and writing scenes.json / tiles.json
(docs/files.md, "scenes.json and tiles.json").

Both files are one GeoJSON FeatureCollection with a top-level `properties: {"next": "true"|"false"}`;
each feature's `properties` is a scene whose keys are sorted alphabetically at every level, as the
original writes them. Reading accepts the current format and the legacy capitalised one
(docs/files.md, "Legacy capitalised variant").
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ingester.errors import ScenesFileError, ScenesFileWarning
from ingester.fileio import atomic_write_chunks
from ingester.graph.engine_config import check_config
from ingester.ids import id_problem, record_id_problem, shown, uuid_problem
from ingester.jsonfile import parse_json_forgiving, read_text
from ingester.naming import constellation_of
from ingester.times import format_time, parse_time


@dataclasses.dataclass(frozen=True)
class TileRef:
    """A link to another tile: its scene date, scene id and tile id."""

    date: datetime
    scene_id: str
    source_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"Date": format_time(self.date), "SceneID": self.scene_id, "SourceID": self.source_id}

    @property
    def key(self) -> tuple[str, str]:
        return (self.scene_id, self.source_id)


@dataclasses.dataclass
class Tile:
    """One unit of processing: a Sentinel-1 burst, or a whole scene for the other missions."""

    source_id: str
    scene_id: str
    date: datetime
    wkt: str
    anx_time: int = 0
    graph_name: str = ""
    is_retriable: bool = False
    swath_id: str = ""
    tile_nr: int = 0
    burst_id: int | None = None
    absolute_burst_id: int | None = None
    previous: TileRef | None = None
    reference: TileRef | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ref(self) -> TileRef:
        return TileRef(self.date, self.scene_id, self.source_id)

    @property
    def key(self) -> tuple[str, str]:
        return (self.scene_id, self.source_id)

    def data_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.extra,
            "graph_name": self.graph_name,
            "is_retriable": self.is_retriable,
            "swath_id": self.swath_id,
            "tile_nr": self.tile_nr,
        }
        if self.burst_id is not None:
            data["burst_id"] = self.burst_id
        if self.absolute_burst_id is not None:
            data["absolute_burst_id"] = self.absolute_burst_id
        if self.anx_time:
            data["anx_time"] = self.anx_time
        return data

    def to_dict(self) -> dict[str, Any]:
        return {
            "Date": format_time(self.date),
            "SceneID": self.scene_id,
            "SourceID": self.source_id,
            "anx_time": self.anx_time,
            "data": self.data_dict(),
            "id": 0,
            "previous": self.previous.to_dict() if self.previous else None,
            "reference": self.reference.to_dict() if self.reference else None,
            "wkt": self.wkt,
        }


@dataclasses.dataclass
class Scene:
    """One product of a catalogue, with what later steps need (metadata) and its tiles."""

    source_id: str
    aoi: str
    date: datetime
    wkt: str
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    graph_name: str = ""
    graph_config: dict[str, str] = dataclasses.field(default_factory=dict)
    is_retriable: bool = False
    record_id: str = ""
    storage_uri: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    instances_id: dict[str, str] = dataclasses.field(default_factory=dict)
    tiles: list[Tile] = dataclasses.field(default_factory=list)

    def data_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "date": format_time(self.date),
            "graph_config": dict(self.graph_config),
            "graph_name": self.graph_name,
            "is_retriable": self.is_retriable,
            "metadata": dict(self.metadata),
            "record_id": self.record_id,
            "storage_uri": self.storage_uri,
        }
        if self.tiles:
            data["tiles"] = {t.source_id: {"swath_id": t.swath_id, "tile_nr": t.tile_nr} for t in self.tiles}
        if self.instances_id:
            data["instances_id"] = dict(self.instances_id)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The scene object (docs/files.md, "Scene properties"); keys sorted when written."""
        props: dict[str, Any] = {
            "aoi": self.aoi,
            "data": self.data_dict(),
            "id": 0,
            "source_id": self.source_id,
            "tags": dict(self.tags),
            "wkt": self.wkt,
        }
        if self.tiles:
            props["tiles"] = [t.to_dict() for t in self.tiles]
        return props

    def geometry(self) -> dict[str, Any] | None:
        """The feature geometry: the footprint, plus every tile polygon when the scene has tiles."""
        # shapely loads here, not with the module: a worker process that only downloads never needs it
        from shapely.geometry import MultiPolygon, Polygon

        from ingester.geometry import GeometryError, from_wkt, single_polygon, to_geojson

        try:
            footprint = single_polygon(from_wkt(self.wkt))
        except GeometryError:
            return None
        if self.tiles and isinstance(footprint, Polygon):
            polys = [footprint]
            for tile in self.tiles:
                try:
                    geom = from_wkt(tile.wkt)
                except GeometryError:
                    continue
                polys.extend(getattr(geom, "geoms", [geom]))
            return to_geojson(MultiPolygon([p for p in polys if isinstance(p, Polygon)]))
        return to_geojson(footprint)


@dataclasses.dataclass
class ScenesFile:
    scenes: list[Scene]
    next: bool | None = None
    extra_properties: dict[str, Any] = dataclasses.field(default_factory=dict)


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted(v) for v in obj]
    return obj


def scenes_to_geojson(scenes: list[Scene], next_: bool | None = None, extra: dict[str, Any] | None = None) -> dict:
    """The FeatureCollection (docs/files.md, "Envelope")."""
    out: dict[str, Any] = {"type": "FeatureCollection", "features": [scene_feature(i, s) for i, s in enumerate(scenes)]}
    props = _envelope_properties(next_, extra)
    if props:
        out["properties"] = props
    return out


def scene_feature(index: int, scene: Scene) -> dict[str, Any]:
    """One feature of the file: the scene's footprint (and tiles) as geometry, its object as properties."""
    return {"type": "Feature", "id": index, "geometry": scene.geometry(), "properties": _sorted(scene.to_dict())}


def _envelope_properties(next_: bool | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    props = dict(extra or {})
    if next_ is not None:
        props["next"] = "true" if next_ else "false"
    return _sorted(props) if props else {}


def write_scenes(path: str | Path, scenes: Iterable[Scene], next_: bool | None = None,
                 extra: dict[str, Any] | None = None) -> None:
    """Write scenes.json / tiles.json atomically, one scene at a time: each feature is encoded and
    written to a temporary file in the target's folder as it comes, then the file is renamed over the
    target. The text is the one `dumps_scenes(scenes_to_geojson(…))` gives, without ever holding the
    whole document (or its text) in memory."""
    props = _envelope_properties(next_, extra)
    head = {"type": "FeatureCollection", **({"properties": props} if props else {})}
    features = (scene_feature(i, scene) for i, scene in enumerate(scenes))
    atomic_write_chunks(path, _document_chunks(head, features))


def dumps_scenes(doc: dict[str, Any]) -> str:
    """The FeatureCollection as text with one feature per line: easy to read, diff and edit by hand
    (delete a scene = delete its line), and fast (json's C encoder runs only without `indent`)."""
    head = {k: v for k, v in doc.items() if k != "features"}
    return "".join(_document_chunks(head, doc.get("features", [])))


def _document_chunks(head: dict[str, Any], features: Iterable[Any]) -> Iterator[str]:
    """The text of a FeatureCollection in pieces: the opening line, each feature on its own line (keys as
    given), and the closing line with the other top-level members."""
    yield f'{{"type": "{head.get("type", "FeatureCollection")}", "features": [\n'
    separator = ""
    for feature in features:
        yield separator + json.dumps(feature, ensure_ascii=False, separators=(", ", ": "))
        separator = ",\n"
    tail = "".join(f', "{k}": {json.dumps(v, ensure_ascii=False)}' for k, v in head.items() if k != "type")
    yield f"\n]{tail}}}\n"


# --- reading -------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, origin: str):
        self.origin = origin
        # A tiles file repeats the same scene ids and dates in every tile's previous/reference: each distinct
        # value is checked once.
        self._id_problems: dict[str, str | None] = {}
        self._times: dict[str, datetime | str] = {}
        # footprints already parsed in one pass (`_valid_wkts`), with their bounds
        self.valid_wkts: dict[str, tuple[float, float, float, float]] = {}

    def fail(self, where: str, problem: str) -> ScenesFileError:
        return ScenesFileError(f"{self.origin}: {where}: {problem}")

    def time(self, value: Any, where: str) -> datetime:
        if not isinstance(value, str):
            raise self.fail(where, f"must be an RFC 3339 timestamp, got {json.dumps(value)}")
        known = self._times.get(value)
        if known is None:
            try:
                known = parse_time(value)
            except ValueError as exc:
                known = str(exc)
            self._times[value] = known
        if isinstance(known, str):
            raise self.fail(where, known)
        return known

    def wkt(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "missing or empty WKT footprint")
        if value in self.valid_wkts:
            return value
        from ingester.geometry import GeometryError, from_wkt

        try:
            from_wkt(value)
        except GeometryError as exc:
            raise self.fail(where, str(exc)) from None
        return value

    def str_map(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "must be an object of strings")
        for key, item in value.items():
            if not isinstance(item, str):
                raise self.fail(f"{where}.{key}", f"must be a string, got {json.dumps(item)}")
        return dict(value)

    def ref(self, value: Any, where: str) -> TileRef | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(where, "must be {Date, SceneID, SourceID} or null")
        for key in ("Date", "SceneID", "SourceID"):
            if key not in value:
                raise self.fail(f"{where}.{key}", "is required")
        return TileRef(self.time(value["Date"], f"{where}.Date"), self.id(value["SceneID"], f"{where}.SceneID"),
                       self.id(value["SourceID"], f"{where}.SourceID"))

    def id(self, value: Any, where: str) -> str:
        """An AOI name, scene id or tile id, checked with the one grammar of `ingester.ids`."""
        if isinstance(value, str):
            if value not in self._id_problems:
                self._id_problems[value] = id_problem(value)
            problem = self._id_problems[value]
        else:
            problem = id_problem(value)
        if problem is not None:
            raise self.fail(where, problem)
        return value

    def metadata(self, value: Any, where: str, source_id: str) -> dict[str, Any]:
        """The scene's metadata, with what later steps put in URLs, paths and checks verified: the
        catalogue id (a UUID for the CDSE catalogue, which names products by UUID), checksums and size."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "must be an object")
        for key, item in value.items():
            problem = _metadata_problem(key.lower(), item, source_id)
            if problem is not None:
                raise self.fail(f"{where}.{key}", problem)
        return dict(value)

    def tile(self, raw: Any, where: str, scene_id: str) -> Tile:
        if not isinstance(raw, dict):
            raise self.fail(where, "a tile must be an object")
        get = _legacy_get(raw, {"anx_time": "AnxTime", "data": "Data", "wkt": "GeometryWKT", "id": "ID",
                                "previous": "Previous", "reference": "Reference"})
        source_id = raw.get("SourceID")
        if not isinstance(source_id, str) or not source_id:
            raise self.fail(f"{where}.SourceID", "is required (the tile name)")
        self.id(source_id, f"{where}.SourceID")
        tile_scene = raw.get("SceneID", scene_id)
        if tile_scene != scene_id:
            raise self.fail(f"{where}.SceneID", f"{tile_scene!r} differs from the scene's source_id {scene_id!r}")
        data = get("data") or {}
        if not isinstance(data, dict):
            raise self.fail(f"{where}.data", "must be an object")
        known = {"graph_name", "is_retriable", "swath_id", "tile_nr", "burst_id", "absolute_burst_id", "anx_time"}
        anx = get("anx_time") or data.get("anx_time") or 0
        if isinstance(anx, bool) or not isinstance(anx, int):
            raise self.fail(f"{where}.anx_time", f"must be an integer, got {json.dumps(anx)}")
        tile_nr = data.get("tile_nr", 0)
        if isinstance(tile_nr, bool) or not isinstance(tile_nr, int):
            raise self.fail(f"{where}.data.tile_nr", f"must be an integer, got {json.dumps(tile_nr)}")
        return Tile(
            source_id=source_id,
            scene_id=scene_id,
            date=self.time(raw.get("Date"), f"{where}.Date"),
            wkt=self.wkt(get("wkt"), f"{where}.wkt"),
            anx_time=anx,
            graph_name=str(data.get("graph_name", "")),
            is_retriable=bool(data.get("is_retriable", False)),
            swath_id=str(data.get("swath_id", "")),
            tile_nr=tile_nr,
            burst_id=data.get("burst_id"),
            absolute_burst_id=data.get("absolute_burst_id"),
            previous=self.ref(get("previous"), f"{where}.previous"),
            reference=self.ref(get("reference"), f"{where}.reference"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def scene(self, props: Any, where: str) -> Scene:
        if not isinstance(props, dict):
            raise self.fail(where, "'properties' must be an object")
        get = _legacy_get(props, {"wkt": "GeometryWKT", "tags": "Tags", "tiles": "Tiles"})
        source_id = props.get("source_id")
        if source_id is not None and not isinstance(source_id, str):
            raise self.fail(f"{where}.source_id", f"must be a string (the product id), got {shown(source_id)}")
        if not isinstance(source_id, str) or not source_id.strip():
            raise self.fail(f"{where}.source_id", "is required (the product id)")
        if source_id.endswith(".SAFE"):
            source_id = source_id[: -len(".SAFE")]
        self.id(source_id, f"{where}.source_id")
        if props.get("id", 0) not in (0, None):
            raise self.fail(f"{where}.id", f"must be 0 (scene ids are given by the store), got {props['id']!r}")
        data = props.get("data")
        if not isinstance(data, dict):
            raise self.fail(f"{where}.data", "is required (an object with at least 'date')")
        metadata = self.metadata(data.get("metadata"), f"{where}.data.metadata", source_id)
        if "uuid" in data and "uuid" not in metadata:  # legacy: data.uuid
            problem = _metadata_problem("uuid", data["uuid"], source_id)
            if problem is not None:
                raise self.fail(f"{where}.data.uuid", problem)
            metadata["uuid"] = data["uuid"]
        graph_config = self.str_map(data.get("graph_config"), f"{where}.data.graph_config")
        check_config(graph_config, lambda key, problem: self.fail(f"{where}.data.graph_config.{key}", problem))
        raw_tiles = get("tiles") or []
        if not isinstance(raw_tiles, list):
            raise self.fail(f"{where}.tiles", "must be a list of tiles or null")
        tiles = [self.tile(t, f"{where}.tiles[{i}]", source_id) for i, t in enumerate(raw_tiles)]
        seen: set[str] = set()
        for i, tile in enumerate(tiles):
            if tile.source_id in seen:
                raise self.fail(f"{where}.tiles[{i}].SourceID", f"duplicate tile {tile.source_id!r} in the scene")
            seen.add(tile.source_id)
        data_tiles = data.get("tiles") or {}
        if tiles and data_tiles and set(data_tiles) != seen:
            raise self.fail(f"{where}.data.tiles", "does not list the same tiles as 'tiles'")
        aoi = props.get("aoi", "")
        if not isinstance(aoi, str):
            raise self.fail(f"{where}.aoi", "must be a string")
        if aoi:
            self.id(aoi, f"{where}.aoi")
        tags = self.str_map(get("tags"), f"{where}.tags")
        if tags.get("uuid"):
            problem = _metadata_problem("uuid", tags["uuid"], source_id)
            if problem is not None:
                raise self.fail(f"{where}.tags.uuid", problem)
        record_id = data.get("record_id")
        if record_id not in (None, ""):
            problem = record_id_problem(record_id)
            if problem is not None:
                raise self.fail(f"{where}.data.record_id", f"{problem}, or empty for a new record")
        is_retriable = data.get("is_retriable", False)
        if not isinstance(is_retriable, bool):
            raise self.fail(f"{where}.data.is_retriable", "must be true or false")
        return Scene(
            source_id=source_id,
            aoi=aoi,
            date=self.time(data.get("date"), f"{where}.data.date"),
            wkt=self.wkt(get("wkt"), f"{where}.wkt"),
            tags=tags,
            graph_name=str(data.get("graph_name") or ""),
            graph_config=graph_config,
            is_retriable=is_retriable,
            record_id=str(data.get("record_id") or ""),
            storage_uri=str(data.get("storage_uri") or ""),
            metadata=metadata,
            instances_id=self.str_map(data.get("instances_id"), f"{where}.data.instances_id"),
            tiles=tiles,
        )


_HEX_LENGTH = {"md5": 32, "blake3": 64}
_CHECKSUM_KEYS = {"md5": "md5", "checksum_md5": "md5", "md5sum": "md5", "blake3": "blake3", "checksum_blake3": "blake3"}
_SIZE_KEYS = ("size", "content_length", "contentlength", "bytes")
_CHECKSUMS_SHAPE = "must be an object {algorithm: checksum} or a list of {Algorithm, Value}"


def _checksum_problem(algorithm: str, value: Any) -> str | None:
    """A published checksum: a hexadecimal string of the algorithm's length, or empty (none published)."""
    if not isinstance(value, str):
        return f"must be a hexadecimal string, got {shown(value)}"
    length = _HEX_LENGTH.get(algorithm.lower())
    if value and length and (len(value) != length or any(c not in "0123456789abcdefABCDEF" for c in value)):
        return f"{shown(value)} is not a {algorithm.upper()} checksum ({length} hexadecimal digits)"
    return None


def _metadata_problem(key: str, value: Any, source_id: str) -> str | None:
    """What is wrong with one metadata value (key lower-cased) that a download puts in a URL or checks."""
    if key == "uuid":
        if value in (None, ""):
            return None
        if constellation_of(source_id) in ("sentinel1", "sentinel2"):  # CDSE names products by UUID
            return uuid_problem(value)
        return id_problem(value)
    if key in _CHECKSUM_KEYS:
        return None if value is None else _checksum_problem(_CHECKSUM_KEYS[key], value)
    if key in ("checksums", "checksum"):
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return f"{_CHECKSUMS_SHAPE}, got {shown(value)}"
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list) and all(isinstance(i, dict) for i in value):
            items = [(i.get("Algorithm") or i.get("algorithm"), i.get("Value", i.get("value"))) for i in value]
        else:
            return f"{_CHECKSUMS_SHAPE}, got {shown(value)}"
        for algorithm, checksum in items:
            if not isinstance(algorithm, str) or not algorithm:
                return f"an algorithm name must be a non-empty string, got {shown(algorithm)}"
            problem = None if checksum is None else _checksum_problem(algorithm, checksum)
            if problem is not None:
                return f"{algorithm}: {problem}"
        return None
    if key in _SIZE_KEYS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return None
        if isinstance(value, str) and value.isdigit() and len(value) < 19:
            return None
        return f"must be a size in bytes (an integer ≥ 0) or null, got {shown(value)}"
    return None


def _legacy_get(obj: dict, names: dict[str, str]):
    """Look a key up in its current spelling, then in its legacy capitalised one."""

    def get(key: str) -> Any:
        if key in obj:
            return obj[key]
        return obj.get(names.get(key, key))

    return get


def parse_scenes(doc: Any, origin: str = "<scenes>", text: str | None = None) -> ScenesFile:
    """Scenes from a decoded scenes.json / tiles.json document (current or legacy format); with the
    file's `text`, a message about a feature names its line."""
    reader = _Reader(origin)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ScenesFileError(f"{origin}: not a GeoJSON FeatureCollection (expected \"type\": \"FeatureCollection\")")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ScenesFileError(f"{origin}: 'features' must be a list")
    reader.valid_wkts = _valid_wkts(features)
    scenes: list[Scene] = []
    seen: dict[str, int] = {}
    for i, feature in enumerate(features):
        try:
            if not isinstance(feature, dict) or "properties" not in feature:
                raise reader.fail(f"features[{i}]", "must be a Feature with 'properties'")
            scene = reader.scene(feature["properties"], f"features[{i}].properties")
            _check_feature(feature, f"features[{i}]", reader, "" if scene.tiles else scene.wkt)
            if scene.source_id in seen:
                raise reader.fail(
                    f"features[{i}].properties.source_id",
                    f"duplicate scene {scene.source_id!r} (also features[{seen[scene.source_id]}])",
                )
        except ScenesFileError as exc:
            lines = feature_lines(text) if text is not None else []
            line = lines[i] if i < len(lines) else None
            if line is None:
                raise
            raise ScenesFileError(str(exc).replace(f"{origin}: ", f"{origin}: line {line}: ", 1)) from None
        seen[scene.source_id] = i
        scenes.append(scene)
    props = doc.get("properties") or {}
    next_raw = props.get("next") if isinstance(props, dict) else None
    next_ = None if next_raw is None else str(next_raw).lower() == "true"
    extra = {k: v for k, v in props.items() if k != "next"} if isinstance(props, dict) else {}
    return ScenesFile(scenes, next_, extra)


def _valid_wkts(features: list[Any]) -> dict[str, tuple[float, float, float, float]]:
    """The footprints (scene and tile `wkt`, legacy `GeometryWKT`) of a document that parse, with their
    bounds, found in one vectorised pass through GEOS instead of one call per footprint; the reader still
    parses any other one itself, in document order, so that the first problem is the one reported."""
    texts: list[str] = []
    for feature in features:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            continue
        tiles = props.get("tiles") or props.get("Tiles") or []
        for obj in (props, *(tiles if isinstance(tiles, list) else [])):
            if isinstance(obj, dict):
                texts.extend(v for v in (obj.get("wkt"), obj.get("GeometryWKT")) if isinstance(v, str) and v.strip())
    from ingester.geometry import from_wkt_many

    return {text: geom.bounds for text, geom in zip(texts, from_wkt_many(texts), strict=True) if geom is not None}


def _check_feature(feature: dict[str, Any], where: str, reader: _Reader, wkt: str = "") -> None:
    """The GeoJSON side of a feature: `"type": "Feature"` and a valid geometry (or null) around the same
    footprint as the scene's `wkt` (given for a scene without tiles: a tiles file's geometry draws the
    tiles too). The tool reads the footprint from `wkt`, but other tools (QGIS, GDAL) read the geometry
    of the file: a hand edit of one and not the other is refused."""
    if feature.get("type") != "Feature":
        raise reader.fail(f"{where}.type", f"must be \"Feature\" (GeoJSON), got {shown(feature.get('type'))}")
    if feature.get("geometry") is not None:
        from ingester.geojson_check import geometry_problem

        problem = geometry_problem(feature["geometry"], f"{where}.geometry")
        if problem is not None:
            place, _, what = problem.partition(": ")
            raise reader.fail(place, f"{what} (GeoJSON, RFC 7946)")
        footprint = reader.valid_wkts.get(wkt)
        drawn = _bounds(feature["geometry"].get("coordinates"))
        if footprint is not None and drawn is not None and _bounds_differ(footprint, drawn):
            raise reader.fail(f"{where}.geometry",
                              f"covers {_box(drawn)} but properties.wkt, the footprint the tool uses, covers "
                              f"{_box(footprint)}: edit both the same way (or set the geometry to null)")


_Box = tuple[float, float, float, float]


def _bounds(coordinates: Any) -> _Box | None:
    """(min lon, min lat, max lon, max lat) of GeoJSON coordinates (already checked as valid)."""
    xs: list[float] = []
    ys: list[float] = []
    stack = [coordinates]
    while stack:
        item = stack.pop()
        if isinstance(item, list) and item and isinstance(item[0], (int, float)):
            if len(item) < 2:
                return None  # not a position the extent can be compared with (RFC 7946 wants 2 or 3 values)
            xs.append(float(item[0]))
            ys.append(float(item[1]))
        elif isinstance(item, list):
            stack.extend(item)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def _bounds_differ(a: _Box, b: _Box, tolerance: float = 1e-6) -> bool:
    """Whether two footprints' bounds differ (not judged where one reaches the antimeridian: the
    geometry of the file is then split at ±180° where the wkt is not)."""
    if any(abs(x) >= 179.999 for x in (a[0], a[2], b[0], b[2])):
        return False
    return any(abs(p - q) > tolerance for p, q in zip(a, b, strict=True))


def _box(b: _Box) -> str:
    return f"lon {b[0]:g}…{b[2]:g}, lat {b[1]:g}…{b[3]:g}"


def read_scenes(path: str | Path) -> ScenesFile:
    """Read a scenes.json / tiles.json file, with clear errors for hand-editing mistakes."""
    text, doc = read_scenes_document(path)
    return parse_scenes(doc, str(path), text)


def read_scenes_document(path: str | Path) -> tuple[str, Any]:
    """The text of a scenes.json / tiles.json file and its decoded JSON (not yet checked as scenes)."""
    origin = str(path)
    text = read_text(path, ScenesFileError, origin)
    doc, notes = parse_json_forgiving(text, origin, ScenesFileError)
    for note in notes:
        warnings.warn(f"{origin}: {note}", ScenesFileWarning, stacklevel=3)
    return text, doc


_BLANK = re.compile(r"[ \t\n\r]*")
_FEATURE_LINE = '{"type": "Feature"'


def _written_layout(text: str) -> list[int] | None:
    """Lines 2…n+1 when the text has the layout `dumps_scenes` writes (the head line, one feature per
    line, the tail line), possibly with lines deleted; None otherwise (then the text is walked)."""
    lines = text.split("\n", text.count("\n"))
    if not lines or lines[0] != '{"type": "FeatureCollection", "features": [':
        return None
    n = 1
    while n < len(lines) and lines[n].startswith(_FEATURE_LINE):
        n += 1
    if n == len(lines) or not lines[n].startswith("]") or text.count(_FEATURE_LINE) != n - 1:
        return None
    return list(range(2, n + 1))


def feature_lines(text: str) -> list[int]:
    """The 1-based line on which each feature of a FeatureCollection's text starts: with the written
    format (one feature per line) deleting that line deletes the scene. Call it on text that
    `json.loads` accepted; [] when the text is not a JSON object."""
    fast = _written_layout(text)
    if fast is not None:
        return fast
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _BLANK.match(text, i).end()  # type: ignore[union-attr]

    i = skip(0)
    if text[i:i + 1] != "{":
        return []
    i = skip(i + 1)
    starts: list[int] = []
    while i < len(text) and text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # the ':' and the blanks around it
        if key == "features" and text[i] == "[":
            starts = []  # a repeated key: the last one wins, as in json.loads
            i = skip(i + 1)
            while text[i] != "]":
                starts.append(i)
                _value, i = decoder.raw_decode(text, i)
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            i += 1
        else:
            _value, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i:i + 1] == ",":
            i = skip(i + 1)
    lines, line, pos = [], 1, 0
    for start in starts:
        line += text.count("\n", pos, start)
        pos = start
        lines.append(line)
    return lines
