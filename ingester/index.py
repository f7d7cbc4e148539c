"""Indexing: datasets of the store listed for people and scripts, and the STAC export (docs/indexing.md, "STAC export").

The STAC side is a pure function of plain data (`StacTile` with its `StacDataset`s): one Collection per
AOI, one Item per tile (`<YYYYMMDD>_<tile>`), one asset per indexed layer with `raster:bands` derived from
the dataset's format: for exponent 1, real = stored × scale + offset with
scale = (real_max − real_min) / (max − min) and offset = real_min − min × scale.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingester import __version__
from ingester.errors import InputError
from ingester.geometry import from_wkt
from ingester.graph.model import nodata_json
from ingester.times import format_time, parse_time

STAC_EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
}
STAC_DTYPES = {"uint8": "uint8", "int8": "int8", "uint16": "uint16", "uint32": "uint32", "int16": "int16",
               "int32": "int32",
               "float32": "float32", "float64": "float64", "complex64": "cfloat32"}
MEDIA_TYPES = {".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
               ".tiff": "image/tiff; application=geotiff", ".jp2": "image/jp2", ".zip": "application/zip"}
# Sentinel-2 MSI bands: common name and centre wavelength (µm).
S2_BANDS = {
    "B01": ("coastal", 0.443), "B02": ("blue", 0.490), "B03": ("green", 0.560), "B04": ("red", 0.665),
    "B05": ("rededge", 0.705), "B06": ("rededge", 0.740), "B07": ("rededge", 0.783), "B08": ("nir", 0.842),
    "B8A": ("nir08", 0.865), "B09": ("nir09", 0.945), "B10": ("cirrus", 1.375), "B11": ("swir16", 1.610),
    "B12": ("swir22", 2.190),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StacDataset:
    """An indexed output (a dataset of the store, or a worker's IndexedOutput)."""

    layer: str
    uri: str
    dtype: str
    nodata: float
    min_value: float
    max_value: float
    real_min: float
    real_max: float
    exponent: float = 1.0
    bands: tuple[int, ...] = (1,)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_output(cls, out: Any) -> StacDataset:
        """From a worker's IndexedOutput (or any object with the same fields)."""
        return cls(out.layer, out.uri, out.dtype, out.nodata, out.min_value, out.max_value, out.real_min,
                   out.real_max, out.exponent, tuple(out.bands), dict(out.extra))


@dataclasses.dataclass(frozen=True)
class StacTile:
    """A tile with what its Item needs: scene, date, footprint, the record's tags and its datasets."""

    scene_id: str
    tile_id: str
    date: datetime
    wkt: str
    tags: dict[str, str]
    datasets: tuple[StacDataset, ...]
    previous: tuple[str, str, datetime] | None = None  # (scene id, tile id, date)
    reference: tuple[str, str, datetime] | None = None
    graph_name: str = ""

    @property
    def item_id(self) -> str:
        return item_id(self.date, self.tile_id)


def item_id(date: datetime, tile_id: str) -> str:
    return f"{date.strftime('%Y%m%d')}_{tile_id}"


def raster_band(ds: StacDataset) -> dict[str, Any]:
    """`raster:bands` entry of one band: data type, nodata, and scale/offset when exponent is 1."""
    band: dict[str, Any] = {"data_type": STAC_DTYPES.get(ds.dtype, "other")}
    if isinstance(ds.nodata, float) and math.isnan(ds.nodata):
        if ds.dtype.startswith("float"):
            band["nodata"] = "nan"
    else:
        band["nodata"] = ds.nodata if not float(ds.nodata).is_integer() else int(ds.nodata)
    if ds.exponent == 1 and ds.max_value != ds.min_value:
        scale = (ds.real_max - ds.real_min) / (ds.max_value - ds.min_value)
        band["scale"] = _clean(scale)
        band["offset"] = _clean(ds.real_min - ds.min_value * scale)
    return band


def _clean(value: float) -> float:
    """Drop float noise: 1.0000000000000002e-04 → 0.0001."""
    return float(f"{value:.12g}")


def _platform(value: str) -> str:
    """SENTINEL1A → sentinel-1a, SENTINEL2 → sentinel-2, LANDSAT09 → landsat-9."""
    text = value.strip().lower()
    match = re.match(r"^(sentinel|landsat)0?(\d.*)$", text)
    return f"{match.group(1)}-{match.group(2)}" if match else text


def _int(value: str) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def _utc_text(value: str) -> str | None:
    """A tag date (RFC 3339 or `YYYY-MM-DD HH:MM:SS`, taken as UTC) as an RFC 3339 UTC string."""
    try:
        return format_time(parse_time(value)).replace("+00:00", "Z")
    except (TypeError, ValueError):
        pass
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def tag_properties(tile: StacTile) -> tuple[dict[str, Any], set[str]]:
    """STAC properties derived from the record's tags, and the extensions they use
    (docs/indexing.md, "Tags to STAC properties")."""
    tags = tile.tags
    props: dict[str, Any] = {}
    used: set[str] = set()
    if tags.get("constellation"):
        props["constellation"] = _platform(tags["constellation"])
    if tags.get("satellite"):
        props["platform"] = _platform(tags["satellite"])
    direction = tags.get("orbitDirection", "").strip().lower()
    if direction in ("ascending", "descending"):
        props["sat:orbit_state"] = direction
    for tag, field in (("relativeOrbit", "sat:relative_orbit"), ("orbit", "sat:absolute_orbit")):
        number = _int(tags.get(tag, ""))
        if number is not None:
            props[field] = number
    if any(k.startswith("sat:") for k in props):
        used.add("sat")
    is_s1 = tile.scene_id.startswith("S1") or tags.get("constellation", "").upper() == "SENTINEL1"
    if is_s1:
        pols = [p for p in re.split(r"[&+ ,]+", tags.get("polarisationMode", "")) if p in ("HH", "VV", "HV", "VH")]
        mode = tile.scene_id[4:6] if len(tile.scene_id) > 6 else ""
        if pols and mode:
            props.update({"sar:instrument_mode": mode, "sar:frequency_band": "C", "sar:polarizations": pols})
            if tags.get("productType"):
                props["sar:product_type"] = tags["productType"]
            used.add("sar")
    cloud = tags.get("cloudCoverPercentage")
    if cloud not in (None, ""):
        try:
            props["eo:cloud_cover"] = min(100.0, max(0.0, float(cloud)))
            used.add("eo")
        except ValueError:
            pass
    published = _utc_text(tags.get("ingestionDate", ""))
    if published:
        props["ingester:ingestion_date"] = published
    processed = _utc_text(tags.get("processingDate", ""))
    if processed:
        props["processing:datetime"] = processed
    props["processing:software"] = {"ingester": __version__}
    if tile.graph_name:
        props["processing:lineage"] = f"ingester tile graph {tile.graph_name}"
    used.add("processing")
    props["ingester:scene_id"] = tile.scene_id
    props["ingester:tile_id"] = tile.tile_id
    props["ingester:tags"] = dict(sorted(tags.items()))
    return props, used


def _href(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def _media_type(uri: str) -> str | None:
    return MEDIA_TYPES.get(os.path.splitext(uri)[1].lower())


def _within_footprint(raster_box, wkt: str):
    """The outputs' extent cut to the tile's footprint (data lie in both: a window of a scene, a tile whose
    raster is wider than its data); the extent alone when the footprint is unreadable or does not
    overlap it with an area."""
    try:
        footprint = from_wkt(wkt)
        if not footprint.is_valid or footprint.geom_type not in ("Polygon", "MultiPolygon"):
            return raster_box
        clipped = raster_box.intersection(footprint)
    except Exception:  # noqa: BLE001 - GEOS errors on odd footprints: the extent is still right
        return raster_box
    if clipped.is_empty or clipped.area <= 0 or clipped.geom_type not in ("Polygon", "MultiPolygon"):
        return raster_box
    return clipped


def build_item(tile: StacTile):
    """The STAC Item of one tile (pystac object, not yet in a catalog)."""
    import pystac
    from shapely.geometry import box, mapping

    props, used = tag_properties(tile)
    bboxes = [ds.extra["bbox"] for ds in tile.datasets if ds.extra.get("bbox")]
    if bboxes:
        west, south = min(b[0] for b in bboxes), min(b[1] for b in bboxes)
        east, north = max(b[2] for b in bboxes), max(b[3] for b in bboxes)
        geom = _within_footprint(box(west, south, east, north), tile.wkt)
    else:
        geom = from_wkt(tile.wkt)
    codes = {ds.extra.get("proj_code") for ds in tile.datasets if ds.extra.get("proj_code")}
    if len(codes) == 1:
        props["proj:code"] = codes.pop()
        used.add("proj")
    item = pystac.Item(id=tile.item_id, geometry=mapping(geom), bbox=list(geom.bounds),
                       datetime=tile.date.astimezone(UTC), properties=props)
    for ds in sorted(tile.datasets, key=lambda d: d.layer):
        extra: dict[str, Any] = {"raster:bands": [raster_band(ds) for _ in ds.bands]}
        used.add("raster")
        if ds.extra.get("shape"):
            extra["proj:shape"] = list(ds.extra["shape"])
            extra["proj:transform"] = list(ds.extra["transform"])
            used.add("proj")
        if ds.exponent != 1:
            extra.update({"geocube:min": ds.min_value, "geocube:max": ds.max_value, "geocube:real_min": ds.real_min,
                          "geocube:real_max": ds.real_max, "geocube:exponent": ds.exponent})
        if ds.layer in S2_BANDS and tile.scene_id.startswith("S2"):
            common, wavelength = S2_BANDS[ds.layer]
            extra["eo:bands"] = [{"name": ds.layer, "common_name": common, "center_wavelength": wavelength}]
            used.add("eo")
        item.add_asset(ds.layer, pystac.Asset(href=_href(ds.uri), media_type=_media_type(ds.uri), roles=["data"],
                                              title=ds.layer, extra_fields=extra))
    item.stac_extensions = [STAC_EXTENSIONS[k] for k in sorted(used)]
    return item


def build_collection(aoi: str, tiles: Sequence[StacTile], description: str = ""):
    """One Collection for the AOI with one Item per tile, `derived_from` links between chained tiles."""
    import pystac

    items = {tile.item_id: build_item(tile) for tile in tiles}
    if items:
        dates = [t.date.astimezone(UTC) for t in tiles]
        west = min(i.bbox[0] for i in items.values())
        south = min(i.bbox[1] for i in items.values())
        east = max(i.bbox[2] for i in items.values())
        north = max(i.bbox[3] for i in items.values())
        extent = pystac.Extent(pystac.SpatialExtent([[west, south, east, north]]),
                               pystac.TemporalExtent([[min(dates), max(dates)]]))
    else:
        extent = pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                               pystac.TemporalExtent([[None, None]]))  # type: ignore[arg-type]  # open interval
    collection = pystac.Collection(id=aoi, description=description or f"Outputs of the ingester for AOI {aoi}",
                                   extent=extent, license="other", title=aoi)
    for tile in tiles:
        item = items[tile.item_id]
        for link in (tile.previous, tile.reference):
            if link is None:
                continue
            target = item_id(link[2], link[1])
            if target in items and target != tile.item_id and not any(
                    lk.rel == "derived_from" and lk.target is items[target] for lk in item.links):
                item.add_link(pystac.Link("derived_from", items[target], media_type="application/geo+json"))
        collection.add_item(item)
    return collection


def _previous_export(root: Path) -> list[Path]:
    """The files of an earlier export of this AOI in `root`, or an InputError when `root` holds anything
    else (a STAC export never deletes what it did not write, e.g. when pointed at the storage)."""
    if not root.exists():
        return []
    ours = []
    for path in (p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix == ".json" and (rel == Path("collection.json") or len(rel.parts) == 2) and _is_stac(path):
            ours.append(path)
            continue
        raise InputError(f"{root}: holds files that are not an earlier STAC export of this AOI ({rel}); "
                         "choose an empty or dedicated folder with -o")
    return ours


def _is_stac(path: Path) -> bool:
    try:
        return "stac_version" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def write_stac(aoi: str, tiles: Sequence[StacTile], out_dir: str | Path) -> Path:
    """Write `<out_dir>/<aoi>/collection.json` and its Items (absolute hrefs); returns the collection file.
    An earlier export of the AOI is replaced (no stale Items); nothing else is ever deleted."""
    import pystac

    root = Path(out_dir).resolve() / aoi
    collection = build_collection(aoi, tiles)  # everything that can fail on the data, before writing
    for path in _previous_export(root):
        path.unlink()
    for folder in sorted((p for p in root.glob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    collection.normalize_hrefs(str(root))
    collection.save(catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED)
    return root / "collection.json"


# --- reading the store (ingester.store, written by the workflow) ---------------------------------

def stac_tiles_from_store(store: Any, aoi: str, leave_out: frozenset[str] | set[str] = frozenset()) -> list[StacTile]:
    """The AOI's indexed tiles as `StacTile`s: datasets grouped per tile, with the record's tags. The
    datasets whose URI is in `leave_out` (missing from storage) get no asset."""
    store.require_aoi(aoi)
    by_tile: dict[int, list[Any]] = {}
    for row in store.datasets(aoi=aoi):
        if row.tile_id is not None and row.uri not in leave_out:
            by_tile.setdefault(row.tile_id, []).append(row)
    tiles: list[StacTile] = []
    for tile_id, rows in by_tile.items():
        tile_row = store.tile_row(tile_id)
        tile = store.tile(tile_id)
        record = store.record(rows[0].record_id)
        tags = dict(record.tags) if record else {}

        def link(ref: Any) -> tuple[str, str, datetime] | None:
            return None if ref is None else (ref.scene_id, ref.source_id, ref.date)

        tiles.append(StacTile(
            scene_id=tile_row.scene_source_id, tile_id=tile_row.source_id, date=parse_time(tile_row.date),
            wkt=tile.wkt, tags=tags, datasets=tuple(StacDataset.from_output(r) for r in rows),
            previous=link(tile.previous), reference=link(tile.reference), graph_name=tile.graph_name))
    tiles.sort(key=lambda t: (t.date, t.tile_id))
    return tiles


def dataset_listing(store: Any, aoi: str, missing: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    """`ingester datasets AOI --json`: one object per dataset (record, layer, tile, uri, format, real range,
    and `missing`: whether its file is absent from storage, per the URIs given)."""
    store.require_aoi(aoi)
    out = []
    for row in store.datasets(aoi=aoi):
        tile = store.tile_row(row.tile_id) if row.tile_id is not None else None
        out.append({
            "record": row.record_name, "time": row.record_time, "layer": row.layer, "variable": row.variable,
            "instance": row.instance, "tile": tile.source_id if tile else None, "uri": row.uri,
            "bands": list(row.bands), "dformat": {"dtype": row.dtype, "nodata": nodata_json(row.nodata),
                                                  "min": row.min_value, "max": row.max_value},
            "real_min": row.real_min, "real_max": row.real_max, "exponent": row.exponent,
            "missing": row.uri in missing,
        })
    return out
