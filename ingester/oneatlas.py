"""Airbus OneAtlas (Pléiades, SPOT): the API-key login and the calls that the catalogue
(`catalogue/oneatlas.py`: search, prices, balance) and the provider (`providers/oneatlas.py`: orders,
delivered products) make.

What Airbus documents, and what this module does with it:

- Login: `POST <auth URL>` (Keycloak realm `IDP`), form `apikey=<key>&grant_type=api_key&client_id=IDP`;
  the answer holds `access_token` and `expires_in` (an hour). No refresh token is used: the same
  grant is asked again shortly before the token expires and after a 401. A 400/401 answer refuses the
  key itself: it is kept, and no further login is tried by the process (each one would fail the same).
- The order API (`/api/v1/me`, prices, orders) takes `Authorization: Bearer <access token>`, as
  documented. The search and the delivered product's download link take the bearer token too in the
  current documentation, but the original sent HTTP Basic `APIKEY:<key>` there: those two services
  send the bearer token first and fall back to Basic where the server refuses it
  (`ingester.oneatlas_auth`). Jobs carry a short-lived token, never the key; a worker that must send
  Basic auth reads the key from its own environment (`own_api_key`). Credentials go only to the
  origins of the configured URLs and over https to hosts under `oneatlas.airbus.com` (also across
  redirects), never elsewhere.
- Order API (base `INGESTER_ONEATLAS_ORDER_URL`): `GET /api/v1/me` (account; `contract.balance` and
  `contract.amountUnit`), `POST /api/v1/prices` and `POST /api/v1/orders` with an order body
  (`kind` + `products`), `GET /api/v1/orders?kind=…&itemsPerPage=…&page=…` (1-based pages; the
  answer's `items`, each with its `deliveries`, and `totalResults`).

A delivery's `status` is one of `ordered`, `processing` (not ready: ask again later), `delivered` (its
`_links.download.href` is the product zip), `failed`, `rejected`, `error` (given up; `message` and
`errorCode` say why). The documentation does not say whether an order's `status` or its delivery's is
authoritative: the delivery's is used, the order's when a delivery has none.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import requests

from ingester.config import ONEATLAS_DOMAINS, Settings, oneatlas_api_key, redact_url
from ingester.errors import AuthError, CatalogueError, CredentialsRefused, HTTPError
from ingester.http.clients import Clients
from ingester.http.session import Service, new_session
from ingester.http.tokens import CachedAccessToken

SERVICE = "oneatlas"
CLIENT_ID = "IDP"
ORDER_KIND = "order.data.product"
# What the tool orders: the panchromatic and the multispectral images delivered separately (the graphs
# index both), reflectance radiometry, GeoTIFF, in geographic coordinates (as the original ordered).
PRODUCT_TYPE = "bundle"
RADIOMETRIC_PROCESSING = "REFLECTANCE"
IMAGE_FORMAT = "image/geotiff"
CRS_CODE = "urn:ogc:def:crs:EPSG::4326"
ORDERS_PER_PAGE = 100

WAITING = ("ordered", "processing")
DELIVERED = "delivered"
GIVEN_UP = ("failed", "rejected", "error")


class ApiKeyTokens(CachedAccessToken):
    """Bearer tokens from the OneAtlas API key, shared by everything a process does (thread-safe).

    The API-key grant is asked once, then again shortly before the token expires (a minute before, or
    a quarter of its lifetime when shorter) or after `invalidate` (a 401). A key refused by the
    authentication server (400/401) is refused for good: every later call raises the same
    `CredentialsRefused` without a request."""

    def __init__(self, token_url: str, api_key: str, *, timeout: float = 30.0, margin: float = 60.0,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.monotonic):
        self.token_url = token_url
        self._api_key = api_key
        self.timeout = timeout
        self.margin = margin
        self.session = session if session is not None else new_session()
        self.clock = clock
        self._init_cache()
        self.logins = 0

    def __repr__(self) -> str:  # never show the key or the token
        return f"ApiKeyTokens({redact_url(self.token_url)!r})"

    def _renew(self, now: float) -> None:
        where = f"oneatlas: authentication {redact_url(self.token_url)}"
        form = {"apikey": self._api_key, "grant_type": "api_key", "client_id": CLIENT_ID}
        response, status, detail = self._post_grant(form, where, "the API key is never sent to a redirect target: "
                                                                  "set INGESTER_ONEATLAS_AUTH_URL to the token "
                                                                  "endpoint itself")
        if response is None:
            if status in (400, 401):
                self._refused = CredentialsRefused(
                    f"{where} refused the API key ({detail}); no further login is tried in this run: check "
                    "INGESTER_ONEATLAS_API_KEY (or the ~/.netrc entry for the authentication host)")
                raise self._refused
            raise AuthError(f"{where} refused the API-key grant ({detail})")
        try:
            body = response.json()
            access = body["access_token"]
            if not isinstance(access, str) or not access:
                raise TypeError
            # expires_in is documented (an hour); an answer without it is taken as a short-lived token
            expires = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(f"{where}: the API-key grant answered 200 without a usable token (expected JSON "
                            "with an access_token)") from None
        self._keep(access, expires, now)
        self.logins += 1


def require_api_key(settings: Settings) -> str:
    """The API key, or AuthError saying which settings to set."""
    key = oneatlas_api_key(settings)
    if not key:
        raise AuthError("oneatlas: no API key: set INGESTER_ONEATLAS_API_KEY, or a ~/.netrc entry for "
                        f"{urlparse(settings.oneatlas_auth_url).hostname} with the key as password")
    return key


def login_manager(settings: Settings, clients: Clients) -> ApiKeyTokens:
    """The token manager of `clients` for the configured API key (made on first use; shared by what uses
    the same clients: the search, the estimate, the pre-flight check and the coordinator's token source)."""
    key = require_api_key(settings)
    ident = (SERVICE, settings.oneatlas_auth_url, hashlib.sha256(key.encode()).hexdigest())
    return clients.login(ident, lambda: ApiKeyTokens(settings.oneatlas_auth_url, key, timeout=settings.http_timeout))


def token_holder(settings: Settings, clients: Clients) -> Any:
    """The token for OneAtlas calls: the job's handed token (in a worker: no key there), else the login
    of `clients`."""
    handed = clients.handed(SERVICE)
    return handed if handed is not None else login_manager(settings, clients)


def own_api_key(settings: Settings) -> str:
    """The API key where a request is made, for HTTP Basic (`oneatlas_auth`): the settings' own (the
    coordinator, library use), else this process's own configuration (a worker is handed settings
    without the key: its environment's INGESTER_ONEATLAS_API_KEY or ingester.toml), else the ~/.netrc
    entry for the authentication host; "" without one. Never taken from a job."""
    from ingester.config import load_settings
    from ingester.errors import ConfigError

    if settings.oneatlas_api_key:
        return settings.oneatlas_api_key
    try:
        own = load_settings().oneatlas_api_key
    except ConfigError:
        own = ""
    return own or oneatlas_api_key(settings)


def service(settings: Settings, clients: Clients, which: str = "order") -> Service:
    """The session of `clients` for the order API (`which="order"`, base INGESTER_ONEATLAS_ORDER_URL: bearer
    token only), the search (`"search"`, the search URL itself) or delivered products (`"download"`,
    absolute links), with OneAtlas's trusted hosts. The search and the download take the bearer token or,
    where the server refuses it, HTTP Basic with the API key (`oneatlas_auth.KeyFallbackService`)."""
    from ingester.oneatlas_auth import KeyFallbackService, SchemeMemory

    if which not in ("order", "search", "download"):
        raise ValueError(f"unknown OneAtlas service {which!r}")
    token = token_holder(settings, clients)
    base = settings.oneatlas_search_url if which == "search" else settings.oneatlas_order_url
    key = (SERVICE, which, base, settings.oneatlas_auth_url, settings.oneatlas_search_url,
           settings.oneatlas_order_url, settings.http_timeout, settings.http_retries, settings.http_backoff, token)

    # the schemes learnt outlive a job's session (asked here: `make` runs under the clients' lock)
    memory = None if which == "order" else clients.lasting((SERVICE, which, base, "schemes"), SchemeMemory)

    def make() -> Service:
        hosts = {settings.oneatlas_auth_url, settings.oneatlas_search_url, settings.oneatlas_order_url}
        options: dict[str, Any] = dict(timeout=settings.http_timeout, retries=settings.http_retries,
                                       backoff=settings.http_backoff, token=token, trusted_hosts=hosts,
                                       trusted_domains=ONEATLAS_DOMAINS)
        if which == "order":
            return Service(f"oneatlas-{which}", base, **options)
        host = urlparse(settings.oneatlas_auth_url).hostname
        hint = (f"set INGESTER_ONEATLAS_API_KEY in its environment (or a ~/.netrc entry for {host} with the key as "
                "password)")
        return KeyFallbackService(f"oneatlas-{which}", base, api_key=lambda: own_api_key(settings),
                                  no_key_hint=hint, memory=memory, **options)

    return clients.service(key, make)


# --- calls -----------------------------------------------------------------------------------------

def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CatalogueError(f"oneatlas: {what}: the answer is not JSON ({response.text[:120]!r})") from None


def search_page(svc: Service, body: dict[str, Any]) -> dict[str, Any]:
    """One page of the OpenSearch v2 search: `{"features": […], "totalResults": n, "itemsPerPage": …,
    "startIndex": …}`."""
    response = svc.request("POST", svc.base_url, auth=True, json=body)
    page = _json(response, "search")
    if not isinstance(page, dict) or not isinstance(page.get("features"), list):
        raise CatalogueError(f"oneatlas: search: unexpected answer (no 'features' list): {str(page)[:200]}")
    if page.get("error") is True:
        raise CatalogueError(f"oneatlas: search answered an error: {str(page)[:200]}")
    return page


def account(svc: Service) -> dict[str, Any]:
    """`GET /api/v1/me`: the account, with its contract's `balance` and `amountUnit`."""
    body = _json(svc.request("GET", "api/v1/me", auth=True), "/api/v1/me")
    return body if isinstance(body, dict) else {}


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def balance_of(me: dict[str, Any]) -> tuple[float | None, str]:
    contract = as_dict(me.get("contract"))
    value = contract.get("balance") if contract else None
    try:
        return (float(value) if value is not None else None), str(contract.get("amountUnit") or "")
    except (TypeError, ValueError):
        return None, str(contract.get("amountUnit") or "")


def order_body(products: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": ORDER_KIND, "products": products}


def prices(svc: Service, products: list[dict[str, Any]]) -> dict[str, Any]:
    """`POST /api/v1/prices` for an order body: `price` (`amount`, `amountUnit`, …), `deliveries` (one
    per product: `datas.id`, `amount`, `amountUnit`), `orderable`."""
    body = _json(svc.request("POST", "api/v1/prices", auth=True, json=order_body(products)), "/api/v1/prices")
    if not isinstance(body, dict):
        raise CatalogueError(f"oneatlas: /api/v1/prices: unexpected answer {str(body)[:200]}")
    return body


def create_order(svc: Service, product: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/v1/orders` for one product (201 Created, the order in the answer)."""
    response = svc.request("POST", "api/v1/orders", auth=True, json=order_body([product]))
    try:
        body = response.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def iter_orders(svc: Service, per_page: int = ORDERS_PER_PAGE) -> Iterator[dict[str, Any]]:
    """Every product order of the account, page by page (`kind` filter, 1-based `page`). Missing one
    would order a product twice: the listing ends at `totalResults` when the answer gives it (else on a
    short page), and a server that pages by fewer items than asked is followed in its own size."""
    page = 1
    seen = 0
    while True:
        body = _json(svc.request("GET", "api/v1/orders", auth=True,
                                 params={"kind": ORDER_KIND, "itemsPerPage": per_page, "page": page}),
                     "/api/v1/orders")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise CatalogueError(f"oneatlas: /api/v1/orders: unexpected answer (no 'items' list): {str(body)[:200]}")
        served = body.get("itemsPerPage")
        if isinstance(served, int) and not isinstance(served, bool) and 0 < served < per_page:
            per_page = served  # page 1 is the same in any size; the next ones are numbered in the server's
        yield from (item for item in items if isinstance(item, dict))
        seen += len(items)
        total = body.get("totalResults")
        if not items:
            return
        if isinstance(total, int) and not isinstance(total, bool):
            if seen >= total:
                return
        elif len(items) < per_page:
            return
        page += 1


# --- products and their orders -------------------------------------------------------------------

def order_product(metadata: dict[str, Any], source_id: str) -> dict[str, Any]:
    """The order (and price) entry of a scene: its catalogue id and the area to deliver, the part of the
    AOI inside its footprint (`metadata.geometry`, set by the search)."""
    uuid = str(metadata.get("uuid") or "").strip()
    aoi = metadata.get("geometry")
    if not uuid or not isinstance(aoi, dict) or aoi.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"scene {source_id} has no OneAtlas product id (metadata.uuid) or no area to order "
                         "(metadata.geometry): list it again with `ingester scenes`")
    return {"crsCode": CRS_CODE, "productType": PRODUCT_TYPE, "radiometricProcessing": RADIOMETRIC_PROCESSING,
            "aoi": aoi, "id": uuid, "imageFormat": IMAGE_FORMAT}


AREA_TOLERANCE = 1e-6  # degrees (~0.1 m): an order's AOI as OneAtlas records it may be rounded


def _same_area(a: Any, b: Any) -> bool:
    """Whether two GeoJSON areas are the same (ring start, orientation and a rounding of the coordinates
    by the server do not matter: topological equality, else every vertex within AREA_TOLERANCE)."""
    from shapely.errors import GEOSException
    from shapely.geometry import shape

    try:
        ga, gb = shape(a), shape(b)
        return bool(ga.equals(gb)) or ga.hausdorff_distance(gb) <= AREA_TOLERANCE
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, GEOSException):
        return False


def _matches(datas: dict[str, Any], product: dict[str, Any]) -> bool:
    if str(datas.get("id", "")).lower() != product["id"].lower():
        return False
    for key in ("productType", "radiometricProcessing", "imageFormat", "crsCode"):
        if key in datas and str(datas[key]).lower() != str(product[key]).lower():
            return False
    return "aoi" not in datas or _same_area(datas["aoi"], product["aoi"])


def delivery_state(item: dict[str, Any], delivery: dict[str, Any]) -> str:
    return str(delivery.get("status") or item.get("status") or "").lower()


def download_href(delivery: dict[str, Any]) -> str:
    """`_links.download.href` (a single link, or the first of a list)."""
    link = as_dict(delivery.get("_links")).get("download")
    if isinstance(link, list):
        link = next((x for x in link if isinstance(x, dict) and x.get("href")), None)
    return str(link.get("href") or "") if isinstance(link, dict) else ""


_RANK = {DELIVERED: 3, "processing": 2, "ordered": 2}


def find_order(orders: Iterator[dict[str, Any]] | list[dict[str, Any]], product: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (order, delivery) of an existing order of this product over this area with the same
    options, if any: a delivered one first, then one being processed, then the latest given up."""
    best: tuple[tuple[int, str], dict[str, Any], dict[str, Any]] | None = None
    for item in orders:
        for delivery in item.get("deliveries") or []:
            if not isinstance(delivery, dict) or not isinstance(delivery.get("datas"), dict):
                continue
            if not _matches(delivery["datas"], product):
                continue
            rank = (_RANK.get(delivery_state(item, delivery), 1),
                    str(delivery.get("updatedAt") or item.get("updatedAt") or item.get("createdAt") or ""))
            if best is None or rank > best[0]:
                best = (rank, item, delivery)
    return None if best is None else (best[1], best[2])


def orders_of(svc: Service, products: list[dict[str, Any]]) -> dict[str, tuple[dict, dict]]:
    """Product id → its existing (order, delivery), for the products that have one (one listing)."""
    items = list(iter_orders(svc))
    out = {}
    for product in products:
        found = find_order(items, product)
        if found is not None:
            out[product["id"]] = found
    return out


def amount_of(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def message_of(delivery: dict[str, Any], item: dict[str, Any]) -> str:
    """OneAtlas's own words about a failed or rejected order."""
    parts = [str(x) for x in (delivery.get("message") or item.get("message"),
                              delivery.get("errorCode") or item.get("errorCode")) if x]
    return " ".join(parts[:1] + [f"(error code {p})" for p in parts[1:]]) or "no reason given"


def http_status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, HTTPError) else None


__all__ = ["ApiKeyTokens", "login_manager", "own_api_key", "service", "search_page", "account", "prices",
           "create_order", "iter_orders", "order_product", "find_order", "orders_of"]
