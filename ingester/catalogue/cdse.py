"""Sentinel-1 and Sentinel-2 scenes from the CDSE OData catalogue (docs/catalogues.md, "CDSE OData search").

The query is built from a fixed clause table (one attribute type per clause, values escaped, dates in
UTC) and always sent with `$orderby=ContentDate/Start asc` and `$expand=Attributes`. A MultiPolygon
AOI is searched one polygon at a time (OData rejects MULTIPOLYGON) and the answers merged by product
Id; long polygons are simplified for the query only. Every product is then checked again on the
client against the exact AOI and every payload filter, mapped to a `Scene`, de-duplicated
(reprocessed products: newest wins) and sorted by date.

Paging counts acquisitions of the server's ordered result (merged over polygons), before client
checks: `--page P --limit L` takes the acquisitions P·L … P·L+L−1 (an acquisition's reprocessed
copies count once and come on the page of its first row, wherever the server's pages cut), so pages
never overlap, the newest copy wins across pages as within one, and a page may hold fewer than L
scenes after the checks. `next` is true exactly when more acquisitions follow (see `RowStream`).

Scene metadata kept for later steps (no second search needed): `uuid` (OData Id), `product_name`
(with `.SAFE`), `checksums` ({"MD5": …, "BLAKE3": …}, possibly empty), `size` (ContentLength),
`online`, `s3_path`, `publication_date`, and `download_link` only from a single `annotations_urls`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import gc
import heapq
import itertools
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from ingester.catalogue.coverage import BELOW_MIN_COVERAGE, cover_scenes
from ingester.catalogue.paging import ODataPager, PagerStats, odata_time
from ingester.catalogue.result import SearchResult
from ingester.config import Settings
from ingester.errors import (
    CatalogueError,
    CatalogueFilterWarning,
    CatalogueWarning,
    HTTPError,
    InputError,
    OfflineProductWarning,
    PayloadError,
)
from ingester.geometry import GeometryError, from_wkt, query_polygons, to_wkt
from ingester.http.clients import Clients
from ingester.http.session import Service
from ingester.naming import dedup_key, format_pattern
from ingester.payload import Payload
from ingester.scenes import Scene
from ingester.times import parse_time

# Name prefix of the products of each collection (client-side check of `platformname`).
COLLECTION_PREFIX = {"SENTINEL-1": "S1", "SENTINEL-2": "S2", "SENTINEL-3": "S3", "SENTINEL-5P": "S5P"}
DEFAULTS: dict[str, dict[str, str]] = {
    "sentinel1": {"platformname": "SENTINEL-1", "producttype": "SLC", "polarisationmode": "VV VH",
                  "sensoroperationalmode": "IW"},
    "sentinel2": {"platformname": "SENTINEL-2", "producttype": "S2MSI1C"},
}  # fmt: skip
REQUIRED_ATTRIBUTES = ("relativeOrbitNumber", "orbitNumber", "productType")
EXAMPLES = 3  # product names quoted in a warning


@dataclasses.dataclass(frozen=True)
class Filters:
    """The payload's catalogue filters after defaults, in the form the query and the checks use."""

    collection: str
    start: datetime
    end: datetime
    product_type: str | None = None
    polarisation: str | None = None  # as the catalogue writes it: VV&VH
    operational_mode: str | None = None
    relative_orbit: int | None = None
    cloud_cover: tuple[float, float] | None = None
    filename: str | None = None  # without leading/trailing '*'


def filters_of(payload: Payload) -> Filters:
    """Defaults of the constellation, replaced key by key by the payload's parameters."""
    params = {**DEFAULTS[payload.constellation], **payload.parameters}
    where = f"{payload.path}: field 'scene_type.parameters"
    cloud = None
    if "cloudcoverpercentage" in params:
        m = re.fullmatch(r"\s*\[\s*(-?\d+(?:\.\d+)?)\s+TO\s+(-?\d+(?:\.\d+)?)\s*\]\s*", params["cloudcoverpercentage"])
        if not m:
            raise PayloadError(f"{where}.cloudcoverpercentage': must be '[min TO max]', e.g. '[0 TO 80]'")
        cloud = (float(m.group(1)), float(m.group(2)))
    orbit = None
    if "relativeorbitnumber" in params:
        try:
            orbit = int(params["relativeorbitnumber"])
        except ValueError:
            raise PayloadError(f"{where}.relativeorbitnumber': must be an integer") from None
    polar = params.get("polarisationmode")
    if polar is not None:
        polar = "&".join(p for p in re.split(r"[ &]+", polar.strip()) if p)
    name = params.get("filename")
    if name is not None:
        name = name.strip("*") or None
    return Filters(
        collection=params["platformname"],
        start=payload.start_time,
        end=payload.end_time,
        product_type=params.get("producttype"),
        polarisation=polar,
        operational_mode=params.get("sensoroperationalmode"),
        relative_orbit=orbit,
        cloud_cover=cloud,
        filename=name,
    )


# --- the query -------------------------------------------------------------------------------------

def quote(value: str) -> str:
    """An OData string literal: single quotes, an inner quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def number(value: float | int) -> str:
    """A number written plainly (no exponent): 1000000, 0.5, 50.9439586971957."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    if "e" in text or "n" in text:  # exponent (or inf/nan): write the digits out
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def attribute_clause(kind: str, name: str, op: str, literal: str) -> str:
    """`Attributes/OData.CSC.<kind>Attribute/any(…)` with the same type on both sides."""
    t = f"OData.CSC.{kind}Attribute"
    return f"Attributes/{t}/any(att:att/Name eq {quote(name)} and att/{t}/Value {op} {literal})"


def polygon_literal(poly: Polygon) -> str:
    return f"OData.CSC.Intersects(area=geography'SRID=4326;{to_wkt(poly)}')"


def build_filter(filters: Filters, polygon: Polygon) -> str:
    """The `$filter` for one query polygon; clauses in a fixed order."""
    clauses = [
        f"Collection/Name eq {quote(filters.collection)}",
        polygon_literal(polygon),
        f"ContentDate/Start gt {odata_time(filters.start)}",
        f"ContentDate/Start lt {odata_time(filters.end)}",
    ]
    if filters.product_type is not None:
        clauses.append(attribute_clause("String", "productType", "eq", quote(filters.product_type)))
    if filters.polarisation is not None:
        clauses.append(attribute_clause("String", "polarisationChannels", "eq", quote(filters.polarisation)))
    if filters.operational_mode is not None:
        clauses.append(attribute_clause("String", "operationalMode", "eq", quote(filters.operational_mode)))
    if filters.relative_orbit is not None:
        clauses.append(attribute_clause("Integer", "relativeOrbitNumber", "eq", str(filters.relative_orbit)))
    if filters.cloud_cover is not None:
        low, high = filters.cloud_cover
        clauses.append(attribute_clause("Double", "cloudCover", "ge", number(low)))
        clauses.append(attribute_clause("Double", "cloudCover", "le", number(high)))
    if filters.filename is not None:
        clauses.extend(f"contains(Name,{quote(piece)})" for piece in filters.filename.split("*") if piece)
    return " and ".join(clauses)


# --- products → scenes -----------------------------------------------------------------------------

def attributes(product: dict) -> dict[str, Any]:
    try:
        return {att["Name"]: att["Value"] for att in product.get("Attributes") or []}
    except (KeyError, TypeError, AttributeError):
        return {str(a["Name"]): a.get("Value") for a in product.get("Attributes") or []
                if isinstance(a, dict) and "Name" in a}


def text(value: Any) -> str:
    """An attribute value as a tag string; numbers plainly."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if kind is float:
        return number(value)
    return str(value)


def fast_time(value: str) -> datetime:
    """ContentDate strings as the catalogue writes them (6 fraction digits, Z) without the general parser."""
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (TypeError, ValueError):
        pass
    return parse_time(value)


def footprint(product: dict) -> BaseGeometry | None:
    """The product footprint from GeoFootprint (GeoJSON), else Footprint (EWKT); None when absent."""
    geo = product.get("GeoFootprint")
    try:
        if isinstance(geo, dict) and geo.get("type") == "Polygon" and geo.get("coordinates"):
            rings = geo["coordinates"]  # the common case, without shape()'s slow pure-Python checks
            geom = shapely.polygons(rings[0], holes=rings[1:] or None)
        elif isinstance(geo, dict) and geo.get("type"):
            geom = shape(geo)
        elif isinstance(product.get("Footprint"), str) and product["Footprint"].strip():
            geom = from_wkt(product["Footprint"])
        else:
            return None
    except (GeometryError, ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
        return None
    return None if geom.is_empty else geom


def filter_mismatch(product: dict, atts: dict[str, Any], filters: Filters) -> str | None:
    """The name of the first payload filter the product does not satisfy, else None."""
    name = str(product.get("Name", ""))
    prefix = COLLECTION_PREFIX.get(filters.collection)
    if prefix and not name.startswith(prefix):
        return f"platformname={filters.collection}"
    try:
        date = fast_time(product["ContentDate"]["Start"])
    except (KeyError, TypeError, ValueError):
        return "ContentDate/Start (missing)"
    if not filters.start < date < filters.end:
        return "start_time/end_time"
    if filters.product_type is not None and atts.get("productType") != filters.product_type:
        return f"producttype={filters.product_type}"
    if filters.polarisation is not None and atts.get("polarisationChannels") != filters.polarisation:
        return f"polarisationmode={filters.polarisation}"
    if filters.operational_mode is not None and atts.get("operationalMode") != filters.operational_mode:
        return f"sensoroperationalmode={filters.operational_mode}"
    if filters.relative_orbit is not None and atts.get("relativeOrbitNumber") != filters.relative_orbit:
        return f"relativeorbitnumber={filters.relative_orbit}"
    if filters.cloud_cover is not None:
        cloud = atts.get("cloudCover")
        low, high = filters.cloud_cover
        if not isinstance(cloud, (int, float)) or not low <= cloud <= high:
            return f"cloudcoverpercentage=[{number(low)} TO {number(high)}]"
    if filters.filename is not None and not fnmatch.fnmatchcase(name, f"*{filters.filename}*"):
        return f"filename=*{filters.filename}*"
    return None


def scene_of(product: dict, wkt: str, atts: dict[str, Any], payload: Payload) -> Scene:
    """The scene of a product that passed every check (docs/catalogues.md, "Scene mapping and tags")."""
    name = product["Name"]
    source_id = name[:-5] if name.endswith(".SAFE") else name
    start = product["ContentDate"]["Start"]
    constellation = "SENTINEL1" if source_id.startswith("S1") else "SENTINEL2"
    tags = {
        "constellation": constellation,
        "ingestionDate": start,
        "orbit": text(atts.get("orbitNumber")),
        "orbitDirection": text(atts.get("orbitDirection")),
        "productType": text(atts.get("productType")),
        "relativeOrbit": text(atts.get("relativeOrbitNumber")),
        "satellite": constellation + source_id[2:3],
        "sourceID": source_id,
        "uuid": str(product.get("Id", "")),
    }
    if constellation == "SENTINEL1":
        tags["polarisationMode"] = text(atts.get("polarisationChannels"))
        tags["sliceNumber"] = text(atts.get("sliceNumber"))
    else:
        tags["cloudCoverPercentage"] = text(atts.get("cloudCover"))
    for key, value in payload.record_tags.items():
        if key in tags and tags[key] != value:
            raise PayloadError(
                f"{payload.path}: field 'record_tags.{key}': {value!r} conflicts with scene {source_id!r}, "
                f"whose catalogue tag {key!r} is {tags[key]!r}"
            )
        tags[key] = value
    metadata = entry_metadata(product)
    if len(payload.annotations_urls) == 1:  # the original's single-annotations_urls rule
        metadata["download_link"] = format_pattern(payload.annotations_urls[0], source_id, {"AREA": payload.name})
    return Scene(
        source_id=source_id,
        aoi=payload.name,
        date=fast_time(start),
        wkt=wkt,
        tags=tags,
        graph_name=payload.scene_graph_name,
        graph_config=dict(payload.graph_config),
        is_retriable=payload.is_retriable,
        storage_uri=payload.storage_uri,
        metadata=metadata,
    )


def entry_metadata(product: dict) -> dict[str, Any]:
    """The scene metadata a product's catalogue entry gives (search result or `Products(<id>)`)."""
    try:
        checksums = {c["Algorithm"]: c["Value"] for c in product.get("Checksum") or () if c["Value"]}
    except (KeyError, TypeError):
        checksums = {str(c["Algorithm"]): str(c["Value"]) for c in product.get("Checksum") or ()
                     if isinstance(c, dict) and c.get("Algorithm") and c.get("Value")}
    return {
        "uuid": str(product.get("Id", "")),
        "product_name": product.get("Name") or "",
        "checksums": checksums,
        "size": product.get("ContentLength"),
        "online": product.get("Online") is not False,
        "s3_path": product.get("S3Path") or "",
        "publication_date": product.get("PublicationDate") or "",
    }


def product_entry(settings: Settings, uuid: str, service: Service | None = None,
                  clients: Clients | None = None) -> dict | None:
    """The product's catalogue entry as it is now (`GET Products(<uuid>)`, no account needed), None when
    the catalogue no longer has it (deleted or replaced by a reprocessing). HTTPError when the catalogue
    cannot be asked (no answer, 5xx after retries, …). Asked through `service`, else the catalogue
    service of `clients`, else a session of its own."""
    if service is None and clients is None:
        with contextlib.closing(make_service(settings)) as own:
            return product_entry(settings, uuid, own)
    if service is None:
        assert clients is not None
        key = ("cdse-catalogue", settings.cdse_catalogue_url, settings.http_timeout, settings.http_retries,
               settings.http_backoff)
        service = clients.service(key, lambda: make_service(settings))
    from urllib.parse import quote

    response = service.request("GET", f"Products({quote(uuid, safe='')})", ok_statuses=(404,))
    try:
        if response.status_code == 404:
            return None
        body = response.json()
    except ValueError:
        raise HTTPError(f"cdse-catalogue: GET Products({uuid}): answer is not JSON", response.status_code,
                        response.url) from None
    finally:
        response.close()
    if isinstance(body, dict) and isinstance(body.get("value"), list):  # a collection-shaped answer
        body = body["value"][0] if body["value"] else None
    elif isinstance(body, dict) and isinstance(body.get("value"), dict):
        body = body["value"]
    if body is not None and not isinstance(body, dict):
        raise HTTPError(f"cdse-catalogue: GET Products({uuid}): unexpected answer {str(body)[:120]!r}", 200, "")
    return body


def newest_key(scene: Scene) -> tuple[str, str, str]:
    """Order of reprocessings of one acquisition: S2 baseline, then generation time, then publication."""
    sid = scene.source_id
    if sid.startswith("S2") and len(sid) >= 60 and sid[10] == "_":
        return (sid[28:32], sid[45:60], str(scene.metadata.get("publication_date", "")))
    return ("", "", str(scene.metadata.get("publication_date", "")))


def deduplicate(scenes: Iterable[Scene]) -> tuple[list[Scene], list[str]]:
    """One scene per acquisition (naming.dedup_key): the newest processing wins. Returns (kept, dropped ids)."""
    best: dict[str, Scene] = {}
    dropped: list[str] = []
    for scene in scenes:
        key = dedup_key(scene.source_id)
        other = best.get(key)
        if other is None:
            best[key] = scene
        elif newest_key(scene) > newest_key(other):
            dropped.append(other.source_id)
            best[key] = scene
        else:
            dropped.append(scene.source_id)
    return list(best.values()), dropped


class _Report:
    """Products set aside, grouped by reason, shown as one warning per reason."""

    def __init__(self) -> None:
        self.items: dict[tuple[type[Warning], str], list[str]] = defaultdict(list)

    def add(self, category: type[Warning], reason: str, name: str) -> None:
        self.items[(category, reason)].append(name)

    def emit(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (category, reason), names in self.items.items():
            more = f", … ({len(names) - EXAMPLES} more)" if len(names) > EXAMPLES else ""
            shown = ", ".join(names[:EXAMPLES]) + more
            warnings.warn(f"{len(names)} product(s) {reason}: {shown}", category, stacklevel=3)
            counts[reason] = len(names)
        return counts


def footprints(products: list[dict]) -> list[BaseGeometry | None]:
    """Footprints of many products at once: single-ring Polygons (nearly all) are built in one
    vectorised call; the rest go through `footprint`."""
    out: list[BaseGeometry | None] = [None] * len(products)
    flat: list[Any] = []
    index: list[int] = []
    which: list[int] = []
    for i, product in enumerate(products):
        geo = product.get("GeoFootprint")
        rings = geo.get("coordinates") if isinstance(geo, dict) and geo.get("type") == "Polygon" else None
        ring = rings[0] if isinstance(rings, list) and len(rings) == 1 and isinstance(rings[0], list) else None
        if ring and len(ring) >= 4:  # a ragged or non-numeric ring makes the batch fail: see below
            flat.extend(ring)
            index.extend([len(which)] * len(ring))
            which.append(i)
        else:
            out[i] = footprint(product)
    if which:
        try:
            polys = shapely.polygons(shapely.linearrings(np.asarray(flat, dtype=float), indices=index))
        except (ValueError, TypeError, shapely.errors.GEOSException):
            polys = [footprint(products[i]) for i in which]  # one is broken: find it the slow way
        for i, poly in zip(which, polys, strict=True):
            out[i] = None if poly is None or poly.is_empty else poly
    return out


def scenes_from_products(products: Iterable[dict], payload: Payload, filters: Filters,
                         chunk: int = 1000) -> tuple[list[Scene], dict]:
    """Check, map, de-duplicate and sort; warnings for what the server returned but we set aside.

    Products are handled `chunk` at a time as they arrive (a streaming source keeps fetching the
    next page meanwhile)."""
    report = _Report()
    scenes: list[Scene] = []
    outside = below = 0
    iterator = iter(products)
    while batch := list(itertools.islice(iterator, chunk)):
        batch_outside, batch_below = _map_batch(batch, payload, filters, report, scenes)
        outside += batch_outside
        below += batch_below
    kept, dropped = deduplicate(scenes)
    kept.sort(key=lambda s: (s.date, s.source_id))
    counts = report.emit()
    counts["outside the exact AOI"] = outside
    counts[BELOW_MIN_COVERAGE] = below
    counts["reprocessed duplicates"] = len(dropped)
    return kept, counts


def _map_batch(products: list[dict], payload: Payload, filters: Filters, report: _Report,
               scenes: list[Scene]) -> tuple[int, int]:
    """Append the scenes of a batch of products, tagged with their coverage of the AOI; return how many
    fell outside the exact AOI, and how many covered less than the payload's `min_coverage`."""
    candidates: list[tuple[dict, BaseGeometry, dict[str, Any]]] = []
    for product, geom in zip(products, footprints(products), strict=True):
        name = str(product.get("Name", product.get("Id", "?")))
        if geom is None:
            report.add(CatalogueWarning, "without footprint skipped", name)
            continue
        atts = attributes(product)
        reason = filter_mismatch(product, atts, filters)
        if reason is not None:
            report.add(CatalogueFilterWarning, f"returned by the catalogue but excluded by {reason}", name)
            continue
        candidates.append((product, geom, atts))
    geoms = np.array([g for _, g, _ in candidates], dtype=object)
    inside = shapely.intersects(payload.aoi, geoms) if len(geoms) else np.zeros(0, dtype=bool)
    outside = int(len(geoms) - inside.sum())  # matched the simplified query polygon only
    accepted = []
    for (product, geom, atts), ok in zip(candidates, inside, strict=True):
        if not ok:
            continue
        missing = [a for a in REQUIRED_ATTRIBUTES if atts.get(a) is None]
        if missing:
            report.add(CatalogueWarning, f"without attribute {'/'.join(missing)} skipped", str(product["Name"]))
            continue
        if product.get("Online") is False:
            report.add(OfflineProductWarning, "offline (long-term archive; metadata.online = false)",
                       str(product["Name"]))
        accepted.append((product, geom, atts))
    wkts = shapely.to_wkt(np.array([g for _, g, _ in accepted], dtype=object), rounding_precision=-1, trim=True)
    mapped = [scene_of(product, str(wkt), atts, payload)
              for (product, _, atts), wkt in zip(accepted, wkts, strict=True)]
    kept, below = cover_scenes(mapped, payload, [g for _, g, _ in accepted])
    scenes.extend(kept)
    return outside, below


# --- search ----------------------------------------------------------------------------------------

def make_service(settings: Settings) -> Service:
    return Service("cdse-catalogue", settings.cdse_catalogue_url, timeout=settings.http_timeout,
                   retries=settings.http_retries, backoff=settings.http_backoff,
                   max_concurrency=settings.cdse_search_concurrency)


def _sort_key(product: dict) -> tuple[datetime, str]:
    return (fast_time(product["ContentDate"]["Start"]), str(product.get("Id", "")))


# Copies of one acquisition (reprocessings) carry the same sensing time in their names; their
# ContentDate/Start lie within this spread of each other (in practice they are equal).
COPY_SPREAD = timedelta(seconds=60)


def acquisition_key(row: dict) -> str:
    """The de-duplication key of a catalogue row (naming.dedup_key of its name; its Id without one)."""
    name = str(row.get("Name") or "")
    if not name:
        return f"Id:{row.get('Id', '')}"
    return dedup_key(name[:-5] if name.endswith(".SAFE") else name)


def _row_time(row: dict) -> datetime | None:
    try:
        return fast_time(row["ContentDate"]["Start"])
    except (KeyError, TypeError, ValueError):
        return None


def _all_rows(pager: ODataPager) -> list[dict]:
    """Every row of one query, read to its end (the pager's generator closes itself)."""
    return list(pager.rows(0, None))


class RowStream:
    """The rows of a page of the merged, ordered result of one query per polygon, as an iterable;
    after iteration, `next` says whether more exist and `count` how many rows came.

    Without a limit: every row. With one, the window is cut from the de-duplicated result: the
    acquisitions `start … start+count−1` (numbered in the order of their first row), each with every
    row of it (its reprocessed copies too, wherever the page size would have cut them), so that an
    acquisition lands on one page only and a page holds at most `count` of them. This reads the result
    from its first row, and past the window's end while copies may follow (`COPY_SPREAD`); `next` is
    true exactly when an acquisition beyond the window exists."""

    def __init__(self, service: Service, filters_: list[str], start: int, count: int | None, *, page_size: int,
                 max_skip: int, stats: PagerStats, concurrency: int = 1):
        self.stats = stats  # each query counts its own pages (they may run side by side); summed at the end
        self.pagers = [ODataPager(service, f, page_size=page_size, max_skip=max_skip, stats=PagerStats())
                       for f in filters_]
        self.page_size = page_size
        self.start = start
        self.limit = count
        self.concurrency = max(1, concurrency)
        self.next = False
        self.count = 0

    def _everything(self) -> Iterator[dict]:
        if len(self.pagers) == 1:
            return self.pagers[0].rows(0, None)
        # every query read to its end, side by side, then merged in query order: the result is the one a
        # query-after-query search gives
        answers = self._side_by_side([functools.partial(_all_rows, pager) for pager in self.pagers])
        merged: dict[str, dict] = {}
        for rows in answers:
            for row in rows:
                merged.setdefault(str(row.get("Id")), row)
        return iter(sorted(merged.values(), key=_sort_key))

    def _side_by_side(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run the calls (one per query) at most `concurrency` at a time (the service also caps its
        connections); their results in the calls' order."""
        if self.concurrency == 1 or len(calls) == 1:
            return [call() for call in calls]
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(calls)), thread_name_prefix="odata-polygon")
        try:
            return list(pool.map(lambda call: call(), calls))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _count_pages(self) -> None:
        for pager in self.pagers:
            for name in ("pages", "windows", "link_fallbacks"):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(pager.stats, name))
                setattr(pager.stats, name, 0)

    def _chunks(self, pager: ODataPager, first: int) -> Generator[dict, None, None]:
        """Every row of one query from row 0, read `first` rows, then more as the caller asks."""
        pos, size = 0, first
        while True:
            with contextlib.closing(pager.rows(pos, size)) as rows:
                yield from rows
            if pager.exhausted:
                return
            pos += size
            size = min(max(size, 16), self.page_size)

    def _merged(self, first: int) -> Generator[dict, None, None]:
        """Rows of every query from row 0 in (date, Id) order, each product once."""
        streams = [self._chunks(pager, first) for pager in self.pagers]
        source: Iterator[dict] = streams[0]
        if len(streams) > 1:  # the first answer of every query side by side, then merged as they are read
            heads = self._side_by_side([functools.partial(next, stream, None) for stream in streams])
            source = heapq.merge(*(itertools.chain((head,), stream) for head, stream in zip(heads, streams, strict=True)
                                   if head is not None), key=_sort_key)
        seen: set[str] = set()
        try:
            for row in source:
                rid = str(row.get("Id", ""))
                if rid and rid in seen:
                    continue
                seen.add(rid)
                yield row
        finally:
            for stream in streams:
                stream.close()

    def __iter__(self) -> Iterator[dict]:
        try:
            yield from self._rows()
        finally:
            self._count_pages()

    def _rows(self) -> Iterator[dict]:
        if self.limit is None:
            source = self._everything()
            try:
                for row in source:
                    self.count += 1
                    yield row
            finally:
                if hasattr(source, "close"):
                    source.close()
            return
        end = self.start + self.limit
        index: dict[str, int] = {}  # acquisition → its number in the order of first rows
        last: datetime | None = None  # date of the first row of the window's last acquisition
        source = self._merged(end + 1)
        try:
            for row in source:
                key = acquisition_key(row)
                number = index.get(key)
                if number is None:
                    number = index[key] = len(index)
                    if number == end - 1:
                        last = _row_time(row)
                    elif number >= end:
                        self.next = True
                if self.start <= number < end:
                    self.count += 1
                    yield row
                if self.next:
                    when = _row_time(row)
                    if last is None or (when is not None and when > last + COPY_SPREAD):
                        return  # no copy of the window's acquisitions can follow
        finally:
            source.close()


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None,
           service: Service | None = None) -> SearchResult:
    """Scenes of the payload from the CDSE OData catalogue (limit 0: every row from page·0 = all)."""
    page = payload.page if page is None else page
    limit = payload.limit if limit is None else limit
    if page < 0 or limit < 0:
        raise PayloadError(f"{payload.path}: page and limit must be ≥ 0 (got page {page}, limit {limit})")
    if page and not limit:
        raise InputError(f"{payload.path}: page {page} with limit 0: limit 0 returns every scene, so a page "
                         "needs a limit > 0 (--limit N or the payload's 'limit')")
    filters = filters_of(payload)
    polygons = query_polygons(payload.aoi)  # the AOI is within [-180, 180] (payload: normalise_longitudes)
    service = service or make_service(settings)
    sent_before = service.requests_sent
    stats = PagerStats()
    # Decoded products and scenes are acyclic and short-lived: reference counting frees them, and
    # pausing the cyclic collector saves the repeated full collections of a growing heap.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows = RowStream(
            service, [build_filter(filters, p) for p in polygons],
            page * limit if limit else 0, limit or None,
            page_size=settings.cdse_page_size, max_skip=settings.cdse_max_skip, stats=stats,
            concurrency=settings.cdse_search_concurrency,
        )
        scenes, counts = scenes_from_products(rows, payload, filters, chunk=settings.cdse_page_size)
    except HTTPError as exc:
        raise CatalogueError(f"CDSE catalogue search failed: {exc}") from None
    finally:
        if collecting:
            gc.enable()
    return SearchResult(
        scenes=scenes,
        next=rows.next,
        pages=stats.pages,
        requests=service.requests_sent - sent_before,
        catalogue="cdse",
        rows=rows.count,
        dropped={k: v for k, v in counts.items() if v},
        filters={**DEFAULTS[payload.constellation], **payload.parameters},
    )
