"""Pléiades and SPOT scenes from the Airbus OneAtlas search (OpenSearch v2), and what ordering them
would cost (docs/catalogues.md, "OneAtlas").

The search is `POST <INGESTER_ONEATLAS_SEARCH_URL>` with a JSON body and the bearer token of the API
key, or HTTP Basic `APIKEY:<key>` where the server refuses the token (`ingester.oneatlas_auth`):
`constellation` (`PHR` or `SPOT`), `acquisitionDate` as the interval
`[<start>,<end>]` (the payload's exact period, in UTC), `geometry` (GeoJSON of the AOI's convex hull),
`sortBy` `acquisitionDate`, 200 `itemsPerPage` from `startPage` 1, and the payload's parameters of the
same name: `cloudCover` (`[0,80]`; `[0 TO 80]` and spaces are accepted), `productType`,
`processingLevel`, `incidenceAngle`, `platform`, `workspace`, `relation`, `acquisitionIdentifier`.
An answer holds `features` and `totalResults`.

Paging is the CDSE one: `--page P --limit L` keeps rows P·L … P·L+L−1 of the ordered result, counted
before the client's checks (limit 0: every row), and `next` says whether a row exists after them.

Every feature is checked again on the client (period, cloud cover, constellation and the filters that
name a value), then its footprint is intersected with the exact AOI: a feature whose intersection is
smaller than `INGESTER_ONEATLAS_MIN_AREA` m² (geodesic area on the WGS84 ellipsoid, pyproj) is dropped;
the intersection is the scene's footprint and the area an order delivers (`metadata.geometry`). Each scene
kept is tagged `aoiCoverage` (the share of the AOI it covers) and dropped below the payload's
`min_coverage`, as by every catalogue (`ingester.catalogue.cover_scenes`).

Scene: `source_id` = `parentIdentifier` (the datastrip id, `DS_PHR1A_…`), `date` = `acquisitionDate`;
`metadata`: every feature property, `uuid` (the catalogue id, what orders name), `download_link` (the
first http `download` link, for a product already in the account's workspace), `quicklook`,
`geometry`, `catalogue` `oneatlas`. Tags: `sourceID` (`sourceIdentifier`, else
`acquisitionIdentifier`, else `parentIdentifier`), `uuid`, `ingestionDate` (`acquisitionDate`, RFC
3339), `productType`, `constellation`, `satellite` (`platform`), `cloudCoverPercentage`, and with an
estimate `estimatedCost` and `amountUnit`.

Estimate (`ingester scenes --estimate`, parameter `GetPrice`, and before any order): one
`POST /api/v1/prices` for the products not ordered yet (the account's orders are listed once), and the
balance from `GET /api/v1/me`.
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

from ingester import oneatlas as api
from ingester.catalogue.coverage import BELOW_MIN_COVERAGE, cover_scenes
from ingester.catalogue.paging import odata_time
from ingester.catalogue.result import SearchResult
from ingester.config import Settings
from ingester.errors import (
    AuthError,
    CatalogueError,
    CatalogueFilterWarning,
    CatalogueWarning,
    CredentialsRefused,
    HTTPError,
    InputError,
    PayloadError,
    ProviderError,
)
from ingester.http.clients import Clients
from ingester.http.session import Service
from ingester.payload import Payload
from ingester.scenes import Scene
from ingester.times import format_time, parse_time

PAGE_SIZE = 200
CATALOGUE = "oneatlas"
CONSTELLATIONS = {"phr": "PHR", "spot": "SPOT"}
# payload parameters sent as body fields of the same name (the others are options of the tool)
BODY_FIELDS = ("cloudCover", "productType", "processingLevel", "incidenceAngle", "platform", "workspace",
               "relation", "acquisitionIdentifier")
RANGE_RE = re.compile(r"^\s*([\[\]])\s*(-?\d+(?:\.\d+)?)\s*(?:,|\s+TO\s+)\s*(-?\d+(?:\.\d+)?)\s*([\[\]])\s*$")
EXAMPLES = 3
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")


def parse_range(text: str) -> tuple[float, float]:
    """`[0,80]`, `[0, 80]` or `[0 TO 80]` → (0, 80); ValueError otherwise."""
    m = RANGE_RE.match(text)
    if not m or float(m.group(2)) > float(m.group(3)):
        raise ValueError(text)
    return float(m.group(2)), float(m.group(3))


def range_text(text: str) -> str:
    """A range as OneAtlas writes it: `[0,80]` (spaces removed, ` TO ` → `,`)."""
    m = RANGE_RE.match(text)
    if not m:
        return text.replace(" ", "")
    return f"{m.group(1)}{m.group(2)},{m.group(3)}{m.group(4)}"


@dataclasses.dataclass(frozen=True)
class Query:
    body: dict[str, Any]  # without the paging fields
    start: datetime
    end: datetime
    constellation: str
    cloud_cover: tuple[float, float] | None = None
    incidence: tuple[float, float] | None = None
    equal: tuple[tuple[str, str], ...] = ()  # (property, value) the client checks again (any case)


def query_of(payload: Payload) -> Query:
    constellation = CONSTELLATIONS.get(payload.constellation)
    if constellation is None:
        raise InputError(f"{payload.path}: OneAtlas serves phr and spot, not {payload.constellation}")
    params = payload.parameters
    hull = shapely.convex_hull(payload.aoi)
    body: dict[str, Any] = {
        "constellation": constellation,
        "sortBy": "acquisitionDate",
        "acquisitionDate": f"[{odata_time(payload.start_time)},{odata_time(payload.end_time)}]",
        "geometry": mapping(hull),
    }
    ranges: dict[str, tuple[float, float]] = {}
    for key in BODY_FIELDS:
        value = params.get(key, "").strip()
        if not value:
            continue  # empty fields are not sent
        if key in ("cloudCover", "incidenceAngle"):
            try:
                ranges[key] = parse_range(value)
            except ValueError:
                raise PayloadError(f"{payload.path}: field 'scene_type.parameters.{key}': {value!r} must be a range "
                                   "'[min,max]', e.g. '[0,80]'") from None
            value = range_text(value)
        body[key] = value
    equal = tuple((k, params[k].strip()) for k in ("productType", "processingLevel", "platform")
                  if params.get(k, "").strip())
    return Query(body, payload.start_time.astimezone(UTC), payload.end_time.astimezone(UTC), constellation,
                 ranges.get("cloudCover"), ranges.get("incidenceAngle"), equal)


# --- paging ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Rows:
    """Rows start … start+limit−1 of the search (limit None: every row); after iteration `next` says
    whether more rows exist, `count` how many came and `pages` how many pages were asked for."""

    svc: Service
    body: dict[str, Any]
    start: int
    limit: int | None
    page_size: int = PAGE_SIZE
    next: bool = False
    count: int = 0
    pages: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        size = max(1, self.page_size)
        page_no = self.start // size + 1  # startPage is 1-based
        pos = (page_no - 1) * size  # index of the first row of the page asked for
        end = None if self.limit is None else self.start + self.limit
        while True:
            page = api.search_page(self.svc, {**self.body, "itemsPerPage": size, "startPage": page_no})
            self.pages += 1
            served = page.get("itemsPerPage")
            if isinstance(served, int) and not isinstance(served, bool) and 0 < served < size:
                # the server pages by fewer rows than asked (its own maximum): its pages are numbered
                # in its size, so go on in that size (the first page is the same in any size)
                size = served
                if page_no != 1:
                    page_no = self.start // size + 1
                    pos = (page_no - 1) * size
                    continue
            features = page["features"]
            total = page.get("totalResults")
            total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
            for i, feature in enumerate(features):
                at = pos + i
                if at < self.start:
                    continue
                if end is not None and at >= end:
                    self.next = True
                    return
                self.count += 1
                yield feature
            pos += len(features)
            if not features or len(features) < size or (total is not None and pos >= total):
                return  # the last page (guarded: no division by a page size or a total of 0)
            if end is not None and pos >= end and total is not None:
                self.next = total > end
                return
            page_no += 1


# --- features → scenes -----------------------------------------------------------------------------

def _geod():
    from pyproj import Geod

    return Geod(ellps="WGS84")


def geodesic_area(geom: BaseGeometry) -> float:
    """Area in m² on the WGS84 ellipsoid (pyproj), whatever the geometry's kind."""
    if geom.is_empty:
        return 0.0
    area, _perimeter = _geod().geometry_area_perimeter(geom)
    return abs(area)


def areal(geom: BaseGeometry) -> BaseGeometry:
    """The polygons of a geometry (an intersection may hold lines or points on the edges)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    parts = [p for g in polys for p in getattr(g, "geoms", [g])]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:f}".rstrip("0").rstrip(".") if value == value else ""
    return str(value)


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(str(value)).astimezone(UTC) if value else None
    except ValueError:
        return None


def download_link(feature: dict[str, Any], kind: str = "download") -> str:
    """The first http link named `kind` in `_links` (a single link or a list of them)."""
    links = api.as_dict(feature.get("_links"))
    entries = links.get(kind)
    if isinstance(entries, dict):
        entries = [entries]
    for link in entries or []:
        if isinstance(link, dict) and link.get("href") and str(link.get("type") or "http").lower() in ("http",
                                                                                                        "https"):
            return str(link["href"])
    return ""


def identifier(props: dict[str, Any]) -> str:
    for key in ("sourceIdentifier", "acquisitionIdentifier", "parentIdentifier"):
        if props.get(key):
            return str(props[key])
    return ""


def mismatch(props: dict[str, Any], query: Query) -> str | None:
    """The first filter the feature does not satisfy, else None."""
    when = _time(props.get("acquisitionDate"))
    if when is None:
        return "acquisitionDate (missing)"
    if not query.start <= when <= query.end:
        return "start_time/end_time"
    if str(props.get("constellation") or query.constellation).upper() != query.constellation:
        return f"constellation={query.constellation}"
    for key, value in query.equal:
        if props.get(key) is not None and str(props[key]).lower() != value.lower():
            return f"{key}={value}"
    for key, bounds in (("cloudCover", query.cloud_cover), ("incidenceAngle", query.incidence)):
        if bounds is None:
            continue
        number = props.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float) or not bounds[0] <= number <= bounds[1]:
            return f"{key}=[{bounds[0]:g},{bounds[1]:g}]"
    return None


def tags_of(props: dict[str, Any]) -> dict[str, str]:
    when = _time(props.get("acquisitionDate"))
    return {
        "sourceID": identifier(props),
        "uuid": str(props.get("id") or ""),
        "ingestionDate": format_time(when) if when else "",
        "productType": str(props.get("productType") or ""),
        "constellation": str(props.get("constellation") or "").upper(),
        "satellite": str(props.get("platform") or ""),
        "cloudCoverPercentage": _text(props.get("cloudCover")),
    }


def scene_of(feature: dict[str, Any], area: BaseGeometry, payload: Payload) -> Scene:
    props = api.as_dict(feature.get("properties"))
    source_id = str(props.get("parentIdentifier") or identifier(props))
    tags = tags_of(props)
    for key, value in payload.record_tags.items():
        if key in tags and tags[key] != value:
            raise PayloadError(f"{payload.path}: field 'record_tags.{key}': {value!r} conflicts with scene "
                               f"{source_id!r}, whose catalogue tag {key!r} is {tags[key]!r}")
        tags[key] = value
    metadata: dict[str, Any] = {k: v for k, v in props.items() if k != "id"}
    metadata.update({"catalogue": CATALOGUE, "uuid": str(props.get("id") or ""), "geometry": mapping(area)})
    link = download_link(feature)
    if link:
        metadata["download_link"] = link
    quicklook = download_link(feature, "quicklook")
    if quicklook:
        metadata["quicklook"] = quicklook
    return Scene(
        source_id=source_id, aoi=payload.name, date=_time(props.get("acquisitionDate")),  # type: ignore[arg-type]
        wkt=shapely.to_wkt(area, trim=True, rounding_precision=-1), tags=tags,
        graph_name=payload.scene_graph_name, graph_config=dict(payload.graph_config),
        is_retriable=payload.is_retriable, storage_uri=payload.storage_uri, metadata=metadata,
    )


class _Report:
    """Features set aside, grouped by reason, shown as one warning per reason."""

    def __init__(self) -> None:
        self.items: dict[tuple[type[Warning], str], list[str]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, category: type[Warning] | None, reason: str, name: str) -> None:
        if category is None:
            self.counts[reason] += 1
        else:
            self.items[(category, reason)].append(name)

    def emit(self) -> dict[str, int]:
        counts = dict(self.counts)
        for (category, reason), names in self.items.items():
            more = f", … ({len(names) - EXAMPLES} more)" if len(names) > EXAMPLES else ""
            warnings.warn(f"{len(names)} product(s) {reason}: {', '.join(names[:EXAMPLES])}{more}", category,
                          stacklevel=3)
            counts[reason] = len(names)
        return counts


def scenes_from_features(features: Any, payload: Payload, query: Query, min_area: float
                         ) -> tuple[list[Scene], dict[str, int]]:
    """Check, intersect with the exact AOI, map, de-duplicate and sort."""
    report = _Report()
    aoi = payload.aoi
    shapely.prepare(aoi)
    kept: dict[str, Scene] = {}
    for feature in features:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            report.add(CatalogueWarning, "without properties skipped", "?")
            continue
        name = identifier(props) or str(props.get("id") or "?")
        try:
            footprint = shape(feature["geometry"]) if feature.get("geometry") else None
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
            footprint = None
        if footprint is None or footprint.is_empty:
            report.add(CatalogueWarning, "without footprint skipped", name)
            continue
        if not footprint.is_valid:
            footprint = shapely.make_valid(footprint)
        reason = mismatch(props, query)
        if reason is not None:
            report.add(CatalogueFilterWarning, f"returned by the catalogue but excluded by {reason}", name)
            continue
        if not props.get("id") or not (props.get("parentIdentifier") or identifier(props)):
            report.add(CatalogueWarning, "without an id skipped", name)
            continue
        area = areal(shapely.intersection(footprint, aoi))
        if area.is_empty:
            report.add(None, "outside the exact AOI", name)
            continue
        if geodesic_area(area) < min_area:
            report.add(None, f"covering less than {min_area:g} m² of the AOI", name)
            continue
        scene = scene_of(feature, area, payload)
        if not _FILE_NAME.fullmatch(scene.source_id) or ".." in scene.source_id:
            report.add(CatalogueWarning, "with an id that cannot name a file skipped", name)
            continue
        if scene.source_id in kept:
            report.add(None, "duplicates", name)
            continue
        kept[scene.source_id] = scene
    scenes, below = cover_scenes(sorted(kept.values(), key=lambda s: (s.date, s.source_id)), payload)
    counts = report.emit()
    counts[BELOW_MIN_COVERAGE] = below
    return scenes, counts


def _settings_problem(exc: BaseException) -> bool:
    """No API key, or one the authentication server refuses: the settings need fixing (exit 2)."""
    return isinstance(exc, CredentialsRefused) or (isinstance(exc, AuthError) and "no API key" in str(exc))


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None,
           svc: Service | None = None, clients: Clients | None = None) -> SearchResult:
    """Scenes of a `phr`/`spot` payload (limit 0: every row). With the payload parameter
    `GetPrice: "true"` the scenes come with their estimated cost (`estimate`). Asked through `svc`, else
    the search service of `clients` (the command's login), else of clients of its own."""
    if svc is None and clients is None:
        with Clients() as own:
            return search(payload, settings, page, limit, clients=own)
    page = payload.page if page is None else page
    limit = payload.limit if limit is None else limit
    if page < 0 or limit < 0:
        raise PayloadError(f"{payload.path}: page and limit must be ≥ 0 (got page {page}, limit {limit})")
    if page and not limit:
        raise InputError(f"{payload.path}: page {page} with limit 0: limit 0 returns every scene, so a page "
                         "needs a limit > 0 (--limit N or the payload's 'limit')")
    query = query_of(payload)
    try:
        svc = svc or api.service(settings, clients or Clients(), "search")
        sent_before = svc.requests_sent
        rows = Rows(svc, query.body, page * limit if limit else 0, limit or None)
        scenes, counts = scenes_from_features(rows, payload, query, settings.oneatlas_min_area)
    except (HTTPError, ProviderError) as exc:
        if _settings_problem(exc):
            raise InputError(f"{payload.path}: {exc}") from None
        raise CatalogueError(f"OneAtlas search failed: {exc}") from None
    filters = {"constellation": query.constellation, "acquisitionDate": query.body["acquisitionDate"],
               **{k: str(query.body[k]) for k in BODY_FIELDS if k in query.body}}
    return SearchResult(scenes=scenes, next=rows.next, pages=rows.pages, requests=svc.requests_sent - sent_before,
                        catalogue=CATALOGUE, rows=rows.count, dropped={k: v for k, v in counts.items() if v},
                        filters=filters)


# --- cost ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Estimate:
    """What ordering some scenes would cost: per scene (scenes already ordered cost nothing more) and in
    total, in `unit`; the account's balance when it could be read."""

    total: float = 0.0
    unit: str = ""
    per_scene: dict[str, float] = dataclasses.field(default_factory=dict)  # source id → amount
    ordered: dict[str, str] = dataclasses.field(default_factory=dict)  # source id → state of its existing order
    delivered_links: dict[str, str] = dataclasses.field(default_factory=dict)  # source id → download link
    orderable: str = ""
    balance: float | None = None
    balance_unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "unit": self.unit, "scenes": len(self.per_scene),
                "already_ordered": len(self.ordered), "orderable": self.orderable, "balance": self.balance,
                "balance_unit": self.balance_unit}

    def text(self) -> str:
        ordered = f" ({len(self.ordered)} already ordered: no new cost)" if self.ordered else ""
        balance = "" if self.balance is None else f"; balance {_text(self.balance)} {self.balance_unit}".rstrip()
        return (f"estimated cost {_text(self.total)} {self.unit}".rstrip()
                + f" for {len(self.per_scene)} product(s){ordered}{balance}")


def is_oneatlas(scene: Scene) -> bool:
    return str(scene.metadata.get("catalogue") or "") == CATALOGUE


def estimate(scenes: list[Scene], settings: Settings, svc: Service | None = None, balance: bool = True,
             clients: Clients | None = None) -> Estimate:
    """Price the scenes' products over their areas (one `/api/v1/prices` for those not ordered yet,
    after one listing of the account's orders) and read the balance. Raises CatalogueError when
    OneAtlas cannot say. Asked through `svc`, else the order service of `clients`, else of clients of
    its own."""
    if svc is None and clients is None:
        with Clients() as own:
            return estimate(scenes, settings, balance=balance, clients=own)
    result = Estimate()
    try:
        svc = svc or api.service(settings, clients or Clients(), "order")
        products = {}
        for scene in scenes:
            try:
                products[scene.source_id] = api.order_product(scene.metadata, scene.source_id)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        existing = api.orders_of(svc, list(products.values())) if products else {}
        to_price = {}
        for source_id, product in products.items():
            found = existing.get(product["id"])
            state = api.delivery_state(*found) if found else ""
            if found and state not in api.GIVEN_UP:
                result.ordered[source_id] = state
                result.per_scene[source_id] = 0.0
                if state == api.DELIVERED and api.download_href(found[1]):
                    result.delivered_links[source_id] = api.download_href(found[1])
            else:
                to_price[source_id] = product
        if to_price:
            quote = api.prices(svc, list(to_price.values()))
            price = api.as_dict(quote.get("price"))
            result.unit = str(price.get("amountUnit") or "")
            result.orderable = str(quote.get("orderable") or "")
            by_id: dict[str, tuple[float, str]] = {}
            for delivery in quote.get("deliveries") or []:
                if not isinstance(delivery, dict):
                    continue
                datas = api.as_dict(delivery.get("datas"))
                amount = api.amount_of(delivery.get("amount"))
                if datas.get("id") and amount is not None:
                    by_id[str(datas["id"]).lower()] = (amount, str(delivery.get("amountUnit") or result.unit))
            total = api.amount_of(price.get("amount"))
            for source_id, product in to_price.items():
                amount, unit = by_id.get(product["id"].lower(), (None, result.unit))
                if amount is None and len(to_price) == 1:
                    amount = total
                if amount is None:
                    raise CatalogueError(f"oneatlas: /api/v1/prices gave no amount for {source_id} "
                                         f"({product['id']}): {str(quote)[:200]}")
                result.per_scene[source_id] = amount
                result.unit = result.unit or unit
            result.total = total if total is not None else sum(result.per_scene.values())
        if balance:
            result.balance, result.balance_unit = api.balance_of(api.account(svc))
    except (HTTPError, ProviderError) as exc:
        if _settings_problem(exc):
            raise InputError(str(exc)) from None
        raise CatalogueError(f"OneAtlas price estimate failed: {exc}") from None
    return result


def apply_estimate(scenes: list[Scene], result: Estimate) -> dict[str, str]:
    """Write each scene's `estimatedCost` and `amountUnit` tags; the collection properties
    `globalEstimatedCost` and `amountUnit` (strings, as the original writes them)."""
    for scene in scenes:
        if scene.source_id in result.per_scene:
            scene.tags["estimatedCost"] = _text(result.per_scene[scene.source_id])
            scene.tags["amountUnit"] = result.unit
    return {"globalEstimatedCost": _text(result.total), "amountUnit": result.unit}
