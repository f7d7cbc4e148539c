"""The validated payload: AOI + period + constellation + graphs + layers + record tags (docs/payload.md, "Fields").

Everything is checked when the file is loaded, before any request or write; each problem raises a
`PayloadError` whose message names the file and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely.geometry import MultiPolygon

from ingester.errors import PayloadError
from ingester.geometry import GeometryError, geometry_from_geojson, validate_area
from ingester.graph.engine_config import check_config
from ingester.ids import MAX_LENGTH, id_problem, layer_problem, shown
from ingester.jsonfile import read_json
from ingester.naming import CONSTELLATIONS, STORAGE_SCHEMES, pattern_keys, unknown_pattern_keys
from ingester.times import parse_time

IDENT_RE = re.compile(r"^[a-zA-Z0-9\-:_]+$")
# Automatic re-runs per job: each waits retry_backoff × 2^(n-1) (capped at an hour), so 100 is days.
MAX_RETRY_COUNT = 100
MAX_INT = 2**31 - 1  # page, limit: far above any catalogue's result, and inside SQLite's integers

# Catalogue parameters accepted per constellation (docs/payload.md, "Catalogue parameters per constellation").
CATALOGUE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "sentinel1": ("platformname", "producttype", "polarisationmode", "sensoroperationalmode",
                  "relativeorbitnumber", "filename"),
    "sentinel2": ("platformname", "producttype", "cloudcoverpercentage", "relativeorbitnumber", "filename"),
    "landsat89": ("cloudcoverpercentage", "producttype", "platformname"),
    "phr": ("cloudCover", "acquisitionIdentifier", "processingLevel", "productType", "platform",
            "incidenceAngle", "workspace", "relation", "GetPrice", "order", "maxCost"),
    "spot": ("cloudCover", "acquisitionIdentifier", "processingLevel", "productType", "platform",
             "incidenceAngle", "workspace", "relation", "GetPrice", "order", "maxCost"),
}  # fmt: skip

# Parameters of a payload that names a STAC catalogue (`scene_type.catalogue`), whatever the constellation.
STAC_PARAMETERS: tuple[str, ...] = ("collection", "cloudcoverpercentage", "platformname")
# Constellation aliases that pick one platform (LANDSAT_8 or LANDSAT_9) unless `platformname` says otherwise.
PLATFORM_ALIASES = {"landsat-8": "LANDSAT_8", "landsat8": "LANDSAT_8", "landsat-9": "LANDSAT_9",
                    "landsat9": "LANDSAT_9"}
CATALOGUE_RE = re.compile(r"^(stac:https?://\S+|[a-z0-9][a-z0-9_\-]*)$")

PAYLOAD_FIELDS = (
    "name", "start_time", "end_time", "scene_type", "scene_graph_name", "tile_graph_name", "graph_config",
    "layers", "record_tags", "annotations_urls", "is_retriable", "retry_count", "storage_uri", "page", "limit",
    "min_coverage",
)  # fmt: skip
GEOJSON_FIELDS = ("type", "geometry", "features", "coordinates", "geometries", "properties", "bbox", "id", "crs")


@dataclasses.dataclass(frozen=True)
class Layer:
    variable: str
    instance: str
    instance_id: str = ""


@dataclasses.dataclass(frozen=True)
class Payload:
    """A validated payload. `path` is the file it came from (for messages and relative graph paths)."""

    name: str
    aoi: MultiPolygon
    start_time: datetime
    end_time: datetime
    constellation: str
    parameters: dict[str, str]
    catalogue: str = ""  # "" (the mission's default), "stac:<URL>" or a name of INGESTER_STAC_CATALOGUES
    scene_graph_name: str = ""
    tile_graph_name: str = ""
    graph_config: dict[str, str] = dataclasses.field(default_factory=dict)
    layers: dict[str, Layer] = dataclasses.field(default_factory=dict)
    record_tags: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations_urls: tuple[str, ...] = ()
    is_retriable: bool = False
    retry_count: int = 0
    storage_uri: str = ""
    page: int = 0
    limit: int = 0
    min_coverage: float = 0.0  # share of the AOI a scene must cover to be kept by a catalogue search (0…1)
    path: str = "<payload>"


class _Checker:
    """Collects the file name so every message reads `<file>: field '<f>': <problem>`."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, field: str, problem: str) -> PayloadError:
        return PayloadError(f"{self.origin}: field '{field}': {problem}")

    def string(self, raw: dict, field: str, default: str | None = None, required: bool = False) -> str:
        if field not in raw:
            if required:
                raise self.fail(field, "is required")
            return default or ""
        value = raw[field]
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, got {json.dumps(value)}")
        return value

    def str_map(self, raw: dict, field: str) -> dict[str, str]:
        value = raw.get(field)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, f"must be an object of strings, got {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(item, str):
                raise self.fail(f"{field}.{key}", f"must be a string, got {json.dumps(item)}")
        return dict(value)

    def integer(self, raw: dict, field: str, default: int = 0, minimum: int = 0, maximum: int = MAX_INT) -> int:
        value = raw.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be an integer, got {json.dumps(value)[:60]}")
        if not minimum <= value <= maximum:
            raise self.fail(field, f"must be from {minimum} to {maximum}, got {shown(value)}")
        return value

    def share(self, raw: dict, field: str) -> float:
        """A share from 0 to 1 (a number; 0 when absent)."""
        value = raw.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number from 0 to 1 (a share of the AOI, e.g. 0.5), got {shown(value)}")
        if not 0 <= value <= 1:  # NaN too
            hint = f" (a share, not a percentage: {value:g} % is {value / 100:g})" if 1 < value <= 100 else ""
            raise self.fail(field, f"must be from 0 to 1 (a share of the AOI), got {shown(value)}{hint}")
        return float(value)

    def boolean(self, raw: dict, field: str, default: bool = False) -> bool:
        value = raw.get(field, default)
        if not isinstance(value, bool):
            raise self.fail(field, f"must be true or false, got {json.dumps(value)}")
        return value

    def time(self, raw: dict, field: str) -> datetime:
        if field not in raw:
            raise self.fail(field, "is required (RFC 3339, e.g. 2022-01-01T00:00:00Z)")
        value = raw[field]
        if not isinstance(value, str):
            raise self.fail(field, f"must be an RFC 3339 string, got {json.dumps(value)}")
        example = "write it like 2022-01-01T00:00:00Z (RFC 3339, UTC)"
        try:
            parsed = parse_time(value)
        except ValueError as exc:
            if "out of range" in str(exc):
                raise self.fail(field, str(exc)) from None
            raise self.fail(field, f"{shown(value)} is not a date and time; {example}") from None
        if not re.search(r"(Z|z|[+-]\d\d:?\d\d)$", value.strip()):
            raise self.fail(field, f"{value!r} has no time zone; {example}")
        return parsed


def _aoi(raw: dict, check: _Checker) -> MultiPolygon:
    gtype = raw.get("type")
    if gtype is None:
        raise check.fail("type", "missing GeoJSON field 'type' (Feature, FeatureCollection or a geometry type)")
    try:
        if gtype == "Feature":
            if "geometry" not in raw or raw["geometry"] is None:
                raise check.fail("geometry", "a Feature payload needs a 'geometry'")
            geom = geometry_from_geojson(raw["geometry"], "geometry")
            where = "geometry"
        elif gtype == "FeatureCollection":
            features = raw.get("features")
            if not isinstance(features, list) or not features:
                raise check.fail("features", "a FeatureCollection payload needs a non-empty 'features' list")
            parts = []
            for i, feature in enumerate(features):
                if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
                    raise check.fail(f"features[{i}]", "must be a Feature with a 'geometry'")
                parts.append(geometry_from_geojson(feature["geometry"], f"features[{i}].geometry"))
            import shapely

            geom = shapely.GeometryCollection(parts)
            where = "features"
        else:
            geom = geometry_from_geojson({k: raw[k] for k in ("type", "coordinates", "geometries") if k in raw}, "type")
            where = "coordinates"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            area = validate_area(geom, f"{check.origin}: field '{where}'")
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
        return area
    except GeometryError as exc:
        text = str(exc)
        if text.startswith(check.origin):
            raise PayloadError(text) from None
        field, _, problem = text.partition(": ")
        raise check.fail(field, problem) from None


def _check_keys(raw: dict, check: _Checker) -> None:
    known = set(PAYLOAD_FIELDS) | set(GEOJSON_FIELDS)
    for key in raw:
        if key in known:
            continue
        close = difflib.get_close_matches(key.lower(), sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'? (keys are exact and case-sensitive)" if close else ""
        if key == "aoi":
            hint = "; the AOI is the payload's own GeoJSON geometry, and the AOI name goes in 'name'"
        raise check.fail(key, f"unknown key{hint}. Known keys: {', '.join(PAYLOAD_FIELDS)}")


def _check_oneatlas_parameters(parameters: dict[str, str], check: _Checker) -> None:
    """OneAtlas parameters: ranges `[min,max]`, the tool's own options `GetPrice`/`order` (true/false)
    and `maxCost` (a number ≥ 0)."""
    for key in ("cloudCover", "incidenceAngle"):
        text = parameters.get(key, "").strip()
        m = re.fullmatch(r"[\[\]]\s*(-?\d+(?:\.\d+)?)\s*(?:,|\s+TO\s+)\s*(-?\d+(?:\.\d+)?)\s*[\[\]]", text)
        if text and (not m or float(m.group(1)) > float(m.group(2))):
            raise check.fail(f"scene_type.parameters.{key}", f"{text!r} must be a range '[min,max]' with min ≤ max, "
                                                             "e.g. '[0,80]'")
    for key in ("GetPrice", "order"):
        if key in parameters and parameters[key].strip().lower() not in ("true", "false"):
            raise check.fail(f"scene_type.parameters.{key}", f"{parameters[key]!r} must be \"true\" or \"false\"")
    if "maxCost" in parameters:
        try:
            cost = float(parameters["maxCost"])
        except ValueError:
            cost = float("nan")
        if not cost >= 0 or cost == float("inf"):
            raise check.fail("scene_type.parameters.maxCost", f"{parameters['maxCost']!r} must be a number ≥ 0 (the "
                                                              "most an ingestion may order, in the account's unit)")


def parse_payload(raw: Any, origin: str = "<payload>") -> Payload:
    """Validate a decoded payload document."""
    check = _Checker(origin)
    if not isinstance(raw, dict):
        raise PayloadError(f"{origin}: the payload must be a JSON object, got {type(raw).__name__}")
    _check_keys(raw, check)
    name = check.string(raw, "name", required=True)
    problem = id_problem(name)
    if problem is not None:
        raise check.fail("name", f"the AOI name {problem}")
    aoi = _aoi(raw, check)
    start = check.time(raw, "start_time")
    end = check.time(raw, "end_time")
    if end <= start:
        raise check.fail("end_time", f"must be after start_time ({raw['end_time']} ≤ {raw['start_time']})")

    scene_type = raw.get("scene_type")
    if not isinstance(scene_type, dict):
        raise check.fail("scene_type", "is required: {\"constellation\": \"sentinel1\", \"parameters\": {…}}")
    for key in scene_type:
        if key not in ("constellation", "parameters", "catalogue"):
            raise check.fail(f"scene_type.{key}", "unknown key; known keys: constellation, parameters, catalogue")
    constellation_raw = scene_type.get("constellation")
    if not isinstance(constellation_raw, str) or constellation_raw.lower() not in CONSTELLATIONS:
        raise check.fail(
            "scene_type.constellation",
            f"unknown constellation {json.dumps(constellation_raw)}; known: {', '.join(sorted(CONSTELLATIONS))}",
        )
    constellation = CONSTELLATIONS[constellation_raw.lower()]
    parameters = check.str_map(scene_type, "parameters")
    catalogue = check.string(scene_type, "catalogue").strip()
    if catalogue and not CATALOGUE_RE.match(catalogue):
        raise check.fail("scene_type.catalogue", f"{catalogue!r} must be 'stac:https://…' (a STAC API) or the name "
                                                 "of a catalogue of INGESTER_STAC_CATALOGUES, e.g. 'earth-search'")
    supported = STAC_PARAMETERS if catalogue else CATALOGUE_PARAMETERS[constellation]
    for key in parameters:
        if key not in supported:
            lower = {k.lower(): k for k in supported}
            hint = f" (did you mean '{lower[key.lower()]}'?)" if key.lower() in lower else ""
            raise PayloadError(
                f"{origin}: field 'scene_type.parameters.{key}': unknown parameter for "
                f"{constellation + (' on a STAC catalogue' if catalogue else '')}{hint}; "
                f"supported: {', '.join(supported)}"
            )
    if "cloudcoverpercentage" in parameters and (constellation in ("sentinel2", "landsat89") or catalogue):
        value = parameters["cloudcoverpercentage"]
        m = re.fullmatch(r"\s*\[\s*(-?\d+(?:\.\d+)?)\s+TO\s+(-?\d+(?:\.\d+)?)\s*\]\s*", value)
        if not m or float(m.group(1)) > float(m.group(2)) or not (0 <= float(m.group(1)) and float(m.group(2)) <= 100):
            raise check.fail("scene_type.parameters.cloudcoverpercentage",
                             f"{value!r} must be '[min TO max]' with 0 ≤ min ≤ max ≤ 100, e.g. '[0 TO 80]'")
    if "relativeorbitnumber" in parameters:
        value = parameters["relativeorbitnumber"]
        if not value.strip().isdigit() or not 1 <= int(value) <= 175:
            raise check.fail("scene_type.parameters.relativeorbitnumber",
                             f"{value!r} must be an integer from 1 to 175")
    if "polarisationmode" in parameters:
        value = parameters["polarisationmode"]
        if not re.fullmatch(r"(HH|VV|HV|VH)([ &](HH|VV|HV|VH))?", value.strip()):
            raise check.fail("scene_type.parameters.polarisationmode",
                             f"{value!r} must be one or two of HH, VV, HV, VH, e.g. 'VV VH'")
    if constellation == "landsat89" and not catalogue:
        level = parameters.get("producttype", "L1")
        if level.upper() not in ("L1", "L2"):
            raise check.fail("scene_type.parameters.producttype",
                             f"{level!r} must be L1 (collection landsat-c2l1) or L2 (landsat-c2l2-sr)")
        platform = parameters.get("platformname")
        if platform is not None and platform.upper() not in ("LANDSAT_8", "LANDSAT_9"):
            raise check.fail("scene_type.parameters.platformname", f"{platform!r} must be LANDSAT_8 or LANDSAT_9")
    if constellation in ("phr", "spot") and not catalogue:
        _check_oneatlas_parameters(parameters, check)
    alias_platform = PLATFORM_ALIASES.get(constellation_raw.lower())
    if alias_platform and "platformname" not in parameters:
        parameters["platformname"] = alias_platform  # `landsat-8` means that platform only
    if "collection" in parameters and not re.fullmatch(r"[A-Za-z0-9_\-.:]+", parameters["collection"]):
        raise check.fail("scene_type.parameters.collection",
                         f"{parameters['collection']!r} is not a STAC collection id (letters, digits, '_', '-', '.')")
    for key in ("producttype", "sensoroperationalmode", "platformname", "filename"):
        if key in parameters and not re.fullmatch(r"[A-Za-z0-9_\-.*]+", parameters[key]):
            raise check.fail(f"scene_type.parameters.{key}",
                             f"{parameters[key]!r} may only hold letters, digits, '_', '-', '.', '*'")

    layers: dict[str, Layer] = {}
    raw_layers = raw.get("layers") or {}
    if not isinstance(raw_layers, dict):
        raise check.fail("layers", "must be an object: layer → {variable, instance}")
    for layer, spec in raw_layers.items():
        problem = layer_problem(layer)
        if problem is not None:
            raise check.fail("layers", f"the layer name {problem}")
        if not isinstance(spec, dict):
            raise check.fail(f"layers.{layer}", "must be {\"variable\": …, \"instance\": …}")
        for key in spec:
            if key not in ("variable", "instance", "instance_id"):
                raise check.fail(f"layers.{layer}.{key}", "unknown key; known keys: variable, instance, instance_id")
        variable = check.string(spec, "variable", required=True) if "variable" in spec else None
        if variable is None:
            raise check.fail(f"layers.{layer}.variable", "is required")
        instance = spec.get("instance")
        if not isinstance(instance, str) or not instance:
            raise check.fail(f"layers.{layer}.instance", "is required (a non-empty string)")
        for key, value in (("variable", variable), ("instance", instance)):
            if not IDENT_RE.match(value) or len(value) > MAX_LENGTH:
                raise check.fail(f"layers.{layer}.{key}", f"{shown(value)} must match {IDENT_RE.pattern} "
                                                          f"(at most {MAX_LENGTH} characters)")
        instance_id = spec.get("instance_id", "")
        if not isinstance(instance_id, str):
            raise check.fail(f"layers.{layer}.instance_id", "must be a string")
        layers[layer] = Layer(variable, instance, instance_id)

    record_tags = check.str_map(raw, "record_tags")
    for key, value in record_tags.items():
        if any(c in key + value for c in "*?"):
            raise check.fail(f"record_tags.{key}", "tag keys and values must not contain '*' or '?'")
    annotations = raw.get("annotations_urls") or []
    if not isinstance(annotations, list) or not all(isinstance(a, str) and a for a in annotations):
        raise check.fail("annotations_urls", "must be a list of non-empty strings (URL patterns)")
    known_keys = pattern_keys(constellation, ("AREA",))
    for i, pattern in enumerate(annotations):
        unknown = unknown_pattern_keys(pattern, known_keys)
        if unknown:
            raise check.fail(f"annotations_urls[{i}]", f"unknown key(s) {', '.join('{' + k + '}' for k in unknown)} "
                                                       f"in {pattern!r}; known: {', '.join(known_keys)}")

    graph_config = check.str_map(raw, "graph_config")
    check_config(graph_config, lambda key, problem: check.fail(f"graph_config.{key}", problem))
    storage_uri = check.string(raw, "storage_uri").strip()
    if "://" in storage_uri and storage_uri.split("://", 1)[0].lower() not in STORAGE_SCHEMES:
        raise check.fail("storage_uri", f"{storage_uri!r}: unsupported scheme (use a local path, file://, s3://, gs:// "
                                        "or gcs://)")
    return Payload(
        name=name,
        aoi=aoi,
        start_time=start,
        end_time=end,
        constellation=constellation,
        parameters=parameters,
        catalogue=catalogue,
        scene_graph_name=check.string(raw, "scene_graph_name"),
        tile_graph_name=check.string(raw, "tile_graph_name"),
        graph_config=graph_config,
        layers=layers,
        record_tags=record_tags,
        annotations_urls=tuple(annotations),
        is_retriable=check.boolean(raw, "is_retriable"),
        retry_count=check.integer(raw, "retry_count", maximum=MAX_RETRY_COUNT),
        storage_uri=storage_uri,
        page=check.integer(raw, "page"),
        limit=check.integer(raw, "limit"),
        min_coverage=check.share(raw, "min_coverage"),
        path=origin,
    )


def load_payload(path: str | Path) -> Payload:
    """Read and validate a payload file."""
    return parse_payload(read_json(path, PayloadError), str(path))
