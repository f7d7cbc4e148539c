"""Scenes from any STAC API (item search), on pystac-client: the USGS Landsat server, Earth Search,
Planetary Computer or a URL given as `scene_type.catalogue: "stac:https://…"`.

The search is one `POST /search` (pystac-client falls back to what the server offers) with the AOI as
`intersects` (the query polygons of the AOI, simplified when long), the payload's exact period as a
closed `datetime` interval in UTC, the collections, and the cloud-cover range (and, for the USGS
server, the platforms) through the query extension when the server conforms to it, else as a CQL2
JSON `filter`, else on the client only. Pages follow the server's `next` links as given (GET, or
POST with a body, merged into the request when `merge` says so), retried with backoff on
429/5xx by `StacApiIO`.

Paging is the same as for CDSE: `--page P --limit L` keeps rows P·L … P·L+L−1 of the server's
ordered result (limit 0: every row), counted before the client's checks, and `next` is true exactly
when more rows exist. Every item is checked again on the client (period, cloud cover, platform,
collection, exact AOI), mapped to a scene, de-duplicated (reprocessings of one acquisition: the
newest processing wins) and sorted by date.

Scene metadata keeps what the download needs without a second search: the item's `self` link, the
catalogue URL and name, the collection, every asset's href, media type, roles, `file:size`,
`file:checksum` and `alternate.s3.href`, and for Landsat the S3 prefix of the product folder.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from ingester.catalogue.coverage import BELOW_MIN_COVERAGE, cover_scenes
from ingester.catalogue.paging import odata_time
from ingester.catalogue.result import SearchResult
from ingester.config import Settings, redact_url, stac_catalogues
from ingester.errors import (
    CatalogueError,
    CatalogueFilterWarning,
    CatalogueWarning,
    InputError,
    PayloadError,
)
from ingester.geometry import query_polygons
from ingester.naming import landsat_parts, landsat_prefix
from ingester.payload import Payload
from ingester.scenes import Scene
from ingester.times import parse_time

EXAMPLES = 3
# Default collection of a constellation on a STAC catalogue (Earth Search and Planetary Computer ids).
DEFAULT_COLLECTIONS = {"sentinel2": "sentinel-2-l2a", "landsat89": "landsat-c2-l2"}
PLANETARY_COMPUTER_HOSTS = ("planetarycomputer.microsoft.com",)
DOWNLOADABLE_SCHEMES = ("http", "https", "s3")
_CATEGORY_RANK = {"RT": 0, "T2": 1, "T1": 2}


@dataclasses.dataclass(frozen=True)
class StacQuery:
    """What to ask a STAC API, and what to check again on the client."""

    url: str
    catalogue: str  # how the payload named it: "usgs-landsat", "earth-search", "stac:https://…"
    collections: tuple[str, ...]
    start: datetime
    end: datetime
    cloud_cover: tuple[float, float] | None = None
    platforms: tuple[str, ...] = ()  # client-side check, any spelling (LANDSAT_8 = landsat-8)
    server_platforms: tuple[str, ...] = ()  # sent as `platform in […]` (the server's own spelling)
    signing: str = ""  # "planetary-computer": asset hrefs are signed at download time


def platform_key(value: Any) -> str:
    """LANDSAT_8, landsat-8, Landsat 8 → landsat8; sentinel-2a → sentinel2a."""
    return re.sub(r"[^a-z0-9]", "", str(value or "").lower())


def cloud_range(payload: Payload) -> tuple[float, float] | None:
    text = payload.parameters.get("cloudcoverpercentage")
    if text is None:
        return None
    m = re.fullmatch(r"\s*\[\s*(-?\d+(?:\.\d+)?)\s+TO\s+(-?\d+(?:\.\d+)?)\s*\]\s*", text)
    if not m:
        raise PayloadError(f"{payload.path}: field 'scene_type.parameters.cloudcoverpercentage': must be "
                           "'[min TO max]', e.g. '[0 TO 80]'")
    return float(m.group(1)), float(m.group(2))


def catalogue_url(payload: Payload, settings: Settings) -> str:
    """The STAC API of `scene_type.catalogue`: `stac:<URL>`, or a name of INGESTER_STAC_CATALOGUES."""
    value = payload.catalogue
    if value.startswith("stac:"):
        return value[len("stac:"):].rstrip("/")
    named = stac_catalogues(settings)
    if value.lower() in named:
        return named[value.lower()]
    raise PayloadError(f"{payload.path}: field 'scene_type.catalogue': unknown catalogue {value!r}; give "
                       f"'stac:https://…' or one of INGESTER_STAC_CATALOGUES: {', '.join(sorted(named)) or '(none)'}")


def query_of(payload: Payload, settings: Settings) -> StacQuery:
    """The query of a payload that names a STAC catalogue (`scene_type.catalogue`)."""
    url = catalogue_url(payload, settings)
    collection = payload.parameters.get("collection") or DEFAULT_COLLECTIONS.get(payload.constellation)
    if not collection:
        raise PayloadError(f"{payload.path}: field 'scene_type.parameters.collection': is required for "
                           f"{payload.constellation} on a STAC catalogue (the STAC collection id)")
    host = (re.sub(r"^https?://", "", url).split("/", 1)[0]).split(":")[0].lower()
    platform = payload.parameters.get("platformname")
    return StacQuery(
        url=url, catalogue=payload.catalogue, collections=(collection,), start=payload.start_time,
        end=payload.end_time, cloud_cover=cloud_range(payload), platforms=(platform,) if platform else (),
        signing="planetary-computer" if host in PLANETARY_COMPUTER_HOSTS
        or payload.catalogue.lower() == "planetary-computer" else "",
    )


# --- the client ------------------------------------------------------------------------------------

def open_client(url: str, settings: Settings):
    """A pystac-client `Client` for the API, with the tool's timeout and retries (429/5xx and
    dropped connections, POST included, honouring Retry-After) on its `StacApiIO` session."""
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    from ingester import __version__

    retry = Retry(total=settings.http_retries, backoff_factor=settings.http_backoff,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    io = StacApiIO(headers={"User-Agent": f"ingester/{__version__}"}, timeout=settings.http_timeout,
                   max_retries=retry)
    from ingester.http.session import NoNetrcAuth

    io.session.auth = NoNetrcAuth()  # proxies from the environment yes, a ~/.netrc password never
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoConformsTo and friends: we check conformance ourselves
        try:
            return Client.open(url, stac_io=io)
        except Exception as exc:  # noqa: BLE001 - pystac-client raises APIError, pystac STACTypeError, …
            raise CatalogueError(f"STAC API {redact_url(url)} cannot be opened: {api_message(exc)}") from None


def api_message(exc: BaseException) -> str:
    """A one-line reason from a pystac-client error (its text may hold a whole HTML page)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    status = getattr(exc, "status_code", None)
    if "Max retries exceeded" in text or "Connection refused" in text or "NewConnectionError" in text:
        reason = re.search(r"\[Errno -?\d+\] ([^')]+)", text)
        text = f"unreachable ({reason.group(1) if reason else 'no connection'})"
    text = text[:300]
    return f"HTTP {status}: {text}" if status else text


def check_collections(client, query: StacQuery) -> None:
    """Raise InputError for a collection the API does not have (GET /collections/{id} → 404)."""
    from pystac_client.exceptions import APIError

    for collection in query.collections:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FallbackToPystac on servers without /collections
                found = client.get_collection(collection)
        except APIError as exc:
            raise CatalogueError(f"STAC API {redact_url(query.url)}: collection {collection!r}: "
                                 f"{api_message(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - pystac errors on a broken collection document
            raise CatalogueError(f"STAC API {redact_url(query.url)}: collection {collection!r}: "
                                 f"{api_message(exc)}") from None
        if found is None:  # 404, or absent from the catalogue's children
            known = _collection_ids(client)
            hint = f"; it has: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}" if known else ""
            raise InputError(f"collection {collection!r} does not exist on the STAC API {redact_url(query.url)} "
                             f"({query.catalogue}){hint}")


def _collection_ids(client) -> list[str]:
    try:
        return sorted(c.id for c in client.get_collections())
    except Exception:  # noqa: BLE001 - only a hint for the message
        return []


def search_parameters(client, query: StacQuery, area: BaseGeometry, page_size: int) -> dict[str, Any]:
    """Arguments of `Client.search`: intersects, datetime, collections, limit, and the cloud cover and
    platforms as a `query` (query extension) or a CQL2 JSON `filter` (filter extension)."""
    from pystac_client.conformance import ConformanceClasses

    polygons = query_polygons(area)
    geometry = mapping(polygons[0]) if len(polygons) == 1 else mapping(shapely.MultiPolygon(polygons))
    methods = {str(link.extra_fields.get("method") or "GET").upper() for link in client.get_links("search")}
    params: dict[str, Any] = {
        "method": "POST" if "POST" in methods or not methods else "GET",
        "collections": list(query.collections),
        "intersects": geometry,
        "datetime": f"{odata_time(query.start)}/{odata_time(query.end)}",
        "limit": page_size,
    }
    clauses: dict[str, dict[str, Any]] = {}
    if query.cloud_cover is not None:
        clauses["eo:cloud_cover"] = {"gte": query.cloud_cover[0], "lte": query.cloud_cover[1]}
    if query.server_platforms:
        clauses["platform"] = {"in": list(query.server_platforms)}
    if not clauses:
        return params
    if client.conforms_to(ConformanceClasses.QUERY):
        params["query"] = clauses
    elif client.conforms_to(ConformanceClasses.FILTER):
        ops = {"gte": ">=", "lte": "<=", "in": "in"}
        args = [{"op": ops[op], "args": [{"property": prop}, value]}
                for prop, cond in clauses.items() for op, value in cond.items()]
        params["filter"] = args[0] if len(args) == 1 else {"op": "and", "args": args}
        params["filter_lang"] = "cql2-json"
    return params


@dataclasses.dataclass
class Rows:
    """Rows start … start+count−1 of the search result; after iteration, `next` says whether more
    rows exist, `count` how many were kept and `pages` how many pages were read."""

    search: Any
    start: int
    limit: int | None
    next: bool = False
    count: int = 0
    pages: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        position = 0
        for page in self.search.pages_as_dicts():
            self.pages += 1
            for item in page.get("features") or []:
                if position >= self.start:
                    if self.limit is not None and self.count == self.limit:
                        self.next = True
                        return
                    self.count += 1
                    yield item
                position += 1


# --- items → scenes --------------------------------------------------------------------------------

def item_geometry(item: dict[str, Any]) -> BaseGeometry | None:
    try:
        geom = shape(item["geometry"]) if item.get("geometry") else None
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
        return None
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def item_time(item: dict[str, Any]) -> datetime | None:
    props = item.get("properties") or {}
    value = props.get("datetime") or props.get("start_datetime")
    try:
        return parse_time(str(value)).astimezone(UTC) if value else None
    except ValueError:
        return None


def source_id_of(item: dict[str, Any]) -> str:
    """The product id: a Landsat item id without the `_SR`/`_ST` suffix of the USGS Level-2 items."""
    item_id = str(item.get("id", ""))
    parts = landsat_parts(item_id)
    if parts:
        return re.sub(r"_(SR|ST)$", "", item_id)
    return item_id


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value).rstrip("0").rstrip(".") if "e" not in repr(value) else f"{value:f}".rstrip("0")
    return str(value)


def satellite_of(item: dict[str, Any]) -> str:
    """SENTINEL2A, LANDSAT08, … from `platform` (or the id)."""
    props = item.get("properties") or {}
    parts = landsat_parts(str(item.get("id", "")))
    if parts:
        return "LANDSAT" + parts["sensor"][2:4]
    platform = str(props.get("platform") or "")
    m = re.fullmatch(r"(?i)landsat[-_ ]?(\d+)", platform)
    if m:
        return f"LANDSAT{int(m.group(1)):02d}"
    return platform_key(platform).upper()


def constellation_tag(item: dict[str, Any]) -> str:
    sat = satellite_of(item)
    if sat.startswith("LANDSAT"):
        return "LANDSAT"
    m = re.match(r"(SENTINEL\d)", sat)
    if m:
        return m.group(1)
    return platform_key((item.get("properties") or {}).get("constellation")).upper() or sat


def tags_of(item: dict[str, Any], source_id: str) -> dict[str, str]:
    """Record tags from the `eo`, `sat`, `view`, `s2` and `landsat` fields (the original's tag names)."""
    props = item.get("properties") or {}
    tags = {
        "sourceID": source_id,
        "ingestionDate": str(props.get("datetime") or ""),
        "constellation": constellation_tag(item),
        "satellite": satellite_of(item),
    }
    if props.get("eo:cloud_cover") is not None:
        tags["cloudCoverPercentage"] = _text(props["eo:cloud_cover"])
    parts = landsat_parts(str(item.get("id", "")))
    path = props.get("landsat:wrs_path") or (parts["path"] if parts else None)
    row = props.get("landsat:wrs_row") or (parts["row"] if parts else None)
    if parts or path:
        correction = props.get("landsat:correction") or (parts["correction"] if parts else "")
        number = props.get("landsat:collection_number") or (parts["collection"] if parts else "")
        tags["productType"] = f"{source_id[0:2]}_C{number}_{correction}"
        if props.get("landsat:cloud_cover_land") is not None:
            tags["landCloudCoverPercentage"] = _text(props["landsat:cloud_cover_land"])
        if path:
            tags["path"] = f"{int(path):03d}"
            tags["relativeOrbit"] = str(int(path))
        if row:
            tags["row"] = f"{int(row):03d}"
    else:
        tags["productType"] = str(props.get("s2:product_type") or props.get("product_type") or item.get("collection")
                                  or "")
        orbit = props.get("sat:relative_orbit")
        if orbit is None:
            m = re.search(r"_R(\d{3})_", str(props.get("s2:product_uri") or ""))
            orbit = int(m.group(1)) if m else None
        tags["relativeOrbit"] = _text(orbit)
        tags["orbit"] = _text(props.get("sat:absolute_orbit"))
        tags["orbitDirection"] = str(props.get("sat:orbit_state") or "").upper()
    for key, tag in (("view:sun_azimuth", "sunAzimuth"), ("view:sun_elevation", "sunElevation")):
        if props.get(key) is not None:
            tags[tag] = _text(props[key])
    return tags


def assets_of(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each asset's href and what verifies it (`file:size`, `file:checksum`), its type and roles,
    and its `alternate.s3.href` (the USGS items' requester-pays copy)."""
    out: dict[str, dict[str, Any]] = {}
    for key, asset in (item.get("assets") or {}).items():
        if not isinstance(asset, dict) or not asset.get("href"):
            continue
        entry: dict[str, Any] = {"href": str(asset["href"])}
        if asset.get("type"):
            entry["type"] = str(asset["type"])
        if asset.get("roles"):
            entry["roles"] = list(asset["roles"])
        if asset.get("file:size") is not None:
            entry["size"] = asset["file:size"]
        if asset.get("file:checksum"):
            entry["checksum"] = str(asset["file:checksum"])
        alternate = ((asset.get("alternate") or {}).get("s3") or {}).get("href")
        if alternate:
            entry["s3"] = str(alternate)
        bands = asset.get("raster:bands")
        if isinstance(bands, list) and bands and isinstance(bands[0], dict):
            entry["raster"] = {k: bands[0][k] for k in ("data_type", "nodata", "scale", "offset") if k in bands[0]}
        names = [b.get("name") for b in asset.get("eo:bands") or [] if isinstance(b, dict) and b.get("name")]
        if names:
            entry["bands"] = names
        out[str(key)] = entry
    return out


def self_link(item: dict[str, Any]) -> str:
    return next((str(link.get("href")) for link in item.get("links") or []
                 if isinstance(link, dict) and link.get("rel") == "self" and link.get("href")), "")


def metadata_of(item: dict[str, Any], query: StacQuery, source_id: str) -> dict[str, Any]:
    assets = assets_of(item)
    metadata: dict[str, Any] = {
        "stac_item": self_link(item),
        "stac_api": query.url,
        "catalogue": query.catalogue,
        "collection": str(item.get("collection") or ""),
        "item_id": str(item.get("id", "")),
        "assets": assets,
        "online": True,
    }
    props = item.get("properties") or {}
    for key in ("s2:processing_baseline", "earthsearch:boa_offset_applied"):
        if key in props:
            metadata[key] = props[key]
    if query.signing:
        metadata["signing"] = query.signing
    if landsat_parts(source_id):
        prefix = landsat_prefix(item, assets, source_id)
        if prefix:
            metadata["s3_prefix"] = prefix
    return metadata


def dedup_key(item: dict[str, Any], source_id: str) -> str:
    """Reprocessings of one acquisition share this key: Landsat (sensor, path, row, acquisition date);
    others (collection, platform, grid tile, acquisition time to the second); else the id."""
    parts = landsat_parts(source_id)
    if parts:
        return f"{parts['sensor']}_{parts['path']}{parts['row']}_{parts['acquired']}"
    props = item.get("properties") or {}
    grid = props.get("grid:code") or props.get("s2:mgrs_tile") or "".join(
        str(props.get(k) or "") for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"))
    when = item_time(item)
    if not grid or when is None:
        return source_id
    return f"{item.get('collection')}|{platform_key(props.get('platform'))}|{grid}|{when:%Y%m%dT%H%M%S}"


def newest_key(item: dict[str, Any], source_id: str) -> tuple[str, ...]:
    """Order of the processings of one acquisition (the greatest wins)."""
    props = item.get("properties") or {}
    parts = landsat_parts(source_id)
    if parts:
        return (parts["processed"], str(_CATEGORY_RANK.get(parts["category"], 0)), str(props.get("updated") or ""))
    return (str(props.get("s2:processing_baseline") or ""), str(props.get("s2:generation_time") or ""),
            str(props.get("updated") or props.get("created") or ""), source_id)


class _Report:
    """Items set aside or doubtful, grouped by reason, shown as one warning per reason."""

    def __init__(self) -> None:
        self.items: dict[tuple[type[Warning], str], list[str]] = defaultdict(list)

    def add(self, category: type[Warning], reason: str, name: str) -> None:
        self.items[(category, reason)].append(name)

    def emit(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (category, reason), names in self.items.items():
            more = f", … ({len(names) - EXAMPLES} more)" if len(names) > EXAMPLES else ""
            warnings.warn(f"{len(names)} item(s) {reason}: {', '.join(names[:EXAMPLES])}{more}", category,
                          stacklevel=3)
            counts[reason] = len(names)
        return counts


def mismatch(item: dict[str, Any], query: StacQuery) -> str | None:
    """The first filter of the query that the item does not satisfy, else None."""
    props = item.get("properties") or {}
    if query.collections and item.get("collection") and item["collection"] not in query.collections:
        return f"collection={','.join(query.collections)}"
    when = item_time(item)
    if when is None:
        return "datetime (missing)"
    if not query.start <= when <= query.end:
        return "start_time/end_time"
    if query.cloud_cover is not None:
        cloud = props.get("eo:cloud_cover")
        low, high = query.cloud_cover
        if isinstance(cloud, bool) or not isinstance(cloud, int | float) or not low <= cloud <= high:
            return f"cloudcoverpercentage=[{low:g} TO {high:g}]"
    if query.platforms:
        wanted = {platform_key(p) for p in query.platforms}
        if platform_key(props.get("platform")) not in wanted:
            return f"platformname={','.join(query.platforms)}"
    return None


def scene_of(item: dict[str, Any], geom: BaseGeometry, payload: Payload, query: StacQuery) -> Scene:
    source_id = source_id_of(item)
    tags = tags_of(item, source_id)
    for key, value in payload.record_tags.items():
        if key in tags and tags[key] != value:
            raise PayloadError(f"{payload.path}: field 'record_tags.{key}': {value!r} conflicts with scene "
                               f"{source_id!r}, whose catalogue tag {key!r} is {tags[key]!r}")
        tags[key] = value
    return Scene(
        source_id=source_id, aoi=payload.name, date=item_time(item), wkt=shapely.to_wkt(geom, trim=True,  # type: ignore[arg-type]
                                                                                        rounding_precision=-1),
        tags=tags, graph_name=payload.scene_graph_name, graph_config=dict(payload.graph_config),
        is_retriable=payload.is_retriable, storage_uri=payload.storage_uri,
        metadata=metadata_of(item, query, source_id),
    )


def scenes_from_items(items: Any, payload: Payload, query: StacQuery) -> tuple[list[Scene], dict[str, int]]:
    """Check, map, tag with the coverage of the AOI, keep those covering `min_coverage`, de-duplicate and
    sort; warnings for what the server returned but we set aside."""
    report = _Report()
    candidates: list[tuple[dict[str, Any], BaseGeometry, str, Scene]] = []
    outside = duplicates = 0
    for item in items:
        name = str(item.get("id", "?"))
        geom = item_geometry(item)
        if geom is None:
            report.add(CatalogueWarning, "without geometry skipped", name)
            continue
        reason = mismatch(item, query)
        if reason is not None:
            report.add(CatalogueFilterWarning, f"returned by the catalogue but excluded by {reason}", name)
            continue
        if not shapely.intersects(payload.aoi, geom):
            outside += 1
            continue
        source_id = source_id_of(item)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:\-]*", source_id) or ".." in source_id:
            report.add(CatalogueWarning, "with an id that cannot name a file skipped", name)
            continue
        schemes = {str(a.get("href", "")).split("://", 1)[0].lower() if "://" in str(a.get("href", "")) else "file"
                   for a in (item.get("assets") or {}).values() if isinstance(a, dict)}
        if schemes and not schemes & set(DOWNLOADABLE_SCHEMES):
            report.add(CatalogueWarning, f"with assets on unsupported schemes ({', '.join(sorted(schemes))}) listed "
                                         "but not downloadable by stac-assets", name)
        candidates.append((item, geom, source_id, scene_of(item, geom, payload, query)))
    kept_scenes, below = cover_scenes([c[3] for c in candidates], payload, [c[1] for c in candidates])
    kept_ids = {id(scene) for scene in kept_scenes}
    best: dict[str, tuple[tuple[str, ...], Scene]] = {}
    for item, _geom, source_id, scene in candidates:
        if id(scene) not in kept_ids:
            continue
        key, rank = dedup_key(item, source_id), newest_key(item, source_id)
        other = best.get(key)
        if other is None:
            best[key] = (rank, scene)
        else:
            duplicates += 1
            if rank > other[0]:
                best[key] = (rank, scene)
    kept = sorted((scene for _, scene in best.values()), key=lambda s: (s.date, s.source_id))
    counts = report.emit()
    counts["outside the exact AOI"] = outside
    counts[BELOW_MIN_COVERAGE] = below
    counts["reprocessed duplicates"] = duplicates
    return kept, counts


def search_stac(payload: Payload, settings: Settings, query: StacQuery, page: int | None = None,
                limit: int | None = None, filters: dict[str, str] | None = None) -> SearchResult:
    """Scenes of the payload from a STAC API (limit 0: every row)."""
    page = payload.page if page is None else page
    limit = payload.limit if limit is None else limit
    if page < 0 or limit < 0:
        raise PayloadError(f"{payload.path}: page and limit must be ≥ 0 (got page {page}, limit {limit})")
    if page and not limit:
        raise InputError(f"{payload.path}: page {page} with limit 0: limit 0 returns every scene, so a page "
                         "needs a limit > 0 (--limit N or the payload's 'limit')")
    from pystac_client.exceptions import APIError

    client = open_client(query.url, settings)
    check_collections(client, query)
    start = page * limit if limit else 0
    wanted = start + limit + 1 if limit else settings.stac_page_size
    params = search_parameters(client, query, payload.aoi, max(1, min(settings.stac_page_size, wanted)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DoesNotConformTo: the client checks every filter again
            search = client.search(**params)
        rows = Rows(search, start, limit or None)
        scenes, counts = scenes_from_items(rows, payload, query)
    except APIError as exc:
        raise CatalogueError(f"STAC API {redact_url(query.url)} search failed: {api_message(exc)}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise CatalogueError(f"STAC API {redact_url(query.url)}: unexpected answer ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None
    applied = dict(filters or {})
    applied.setdefault("collections", ",".join(query.collections))
    if query.cloud_cover is not None:
        applied.setdefault("cloudcoverpercentage", f"[{query.cloud_cover[0]:g} TO {query.cloud_cover[1]:g}]")
    if query.platforms:
        applied.setdefault("platformname", ",".join(query.platforms))
    server_side = "query" if "query" in params else "filter" if "filter" in params else "client only"
    applied["server filters"] = server_side
    return SearchResult(
        scenes=scenes, next=rows.next, pages=rows.pages, requests=rows.pages + 2,
        catalogue=query.catalogue, rows=rows.count, dropped={k: v for k, v in counts.items() if v},
        filters=applied,
    )


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None) -> SearchResult:
    """`scene_type.catalogue` payloads."""
    return search_stac(payload, settings, query_of(payload, settings), page, limit,
                       {"catalogue": payload.catalogue})
