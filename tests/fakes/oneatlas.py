"""A fake Airbus OneAtlas on 127.0.0.1 speaking the documented protocol (docs/catalogues.md and
docs/providers.md, "OneAtlas"), its catalogue items made from the feature in
`tests/data/oneatlas/search_feature.json` and its delivered products from the DIMAP products in
`tests/data/oneatlas/`.

- `POST /auth/realms/IDP/protocol/openid-connect/token`, form `apikey`, `grant_type=api_key`,
  `client_id=IDP`: `{"access_token", "expires_in", "token_type": "Bearer", …}`; a wrong key is
  401 `{"error": "invalid_grant", …}`, another grant type or client 400.
- Every other call needs credentials, per endpoint (`modes`: `search`, `download`, `order` for me,
  prices and orders): `bearer` (the default: `Authorization: Bearer <token>`; a token revoked or
  expired on the server's side is refused), `basic` (HTTP Basic with the user `APIKEY` and the API key
  as password, as the original system used for the search and the delivered zip; a bearer token is
  refused) or `both`. A refusal is 401 with a `WWW-Authenticate` challenge naming the scheme(s) the
  endpoint takes (`challenge=False`: without one, as some servers answer), or, with `refusal=403`, 403
  with a body saying the Authorization header was not accepted.
- `POST /api/v2/opensearch` (JSON): `constellation`, `acquisitionDate` `[start,end]`, `geometry`
  (GeoJSON, intersects), `cloudCover` `[min,max]`, `productType`, `processingLevel`, `platform`,
  `itemsPerPage` (≤ 500) and `startPage` (1-based), `sortBy` `acquisitionDate`: `{"type":
  "FeatureCollection", "features", "error": false, "totalResults", "startIndex", "itemsPerPage"}`.
- `GET /api/v1/me`: the account, `contract.balance` and `contract.amountUnit`.
- `POST /api/v1/prices` (an order body): `price` (`amount`, `amountUnit`, `areaKm2`, …), one
  `deliveries` entry per product (`datas`, `amount`, `amountUnit`), `orderable`, `feasibility`.
- `POST /api/v1/orders` (an order body, `kind` `order.data.product`, products with `id`, `aoi`,
  `productType`, `radiometricProcessing`, `imageFormat`, `crsCode`; an AOI of at least 0.1 km²):
  201 with the order; its deliveries start `ordered` and move one state (`processing`, then
  `delivered`, or the failure set in `failures`) each time a listing shows them. The balance pays.
- `GET /api/v1/orders?kind=…&itemsPerPage=…&page=…`: `{"items", "totalResults", "startIndex",
  "itemsPerPage"}`, every order of the account with its deliveries; a delivered one has
  `_links.download.href`.
- `GET /api/v1/items/<delivery or item id>/download`: the product zip, `Range` answered 206.

Knobs: `expires_in`, `revoke_tokens()`, `unauthorized_next` (bearer tokens refused), `modes`, `refusal`,
`challenge`, `forbid_downloads` (a 403 about the account, not the credentials, for every download),
`download_redirect`, `page_limit` (search pages hold at most that many rows), `on_order` (called once an order is
recorded, before the answer: a test kills the client there), `states` (the progression), `failures`,
`drop_after` (the product download's connection drops after N bytes).
Counters and logs: `grants`, `requests` (method, path, authorization, body), `orders`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
import threading
import time
import urllib.parse
import uuid as uuidlib
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "oneatlas"
TOKEN_PATH = "/auth/realms/IDP/protocol/openid-connect/token"
_RANGE = re.compile(r"^\s*[\[\]]\s*([^,\]\[]*)\s*,\s*([^,\]\[]*)\s*[\[\]]\s*$")
_DOWNLOAD = re.compile(r"^/api/v1/items/([0-9a-fA-F-]+)/download$")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def area_km2(geojson: dict) -> float:
    from pyproj import Geod
    from shapely.geometry import shape

    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(shape(geojson))
    return abs(area) / 1e6


class FakeOneAtlas:
    def __init__(self, host: str = "127.0.0.1", *, api_key: str = "oa-key-7f3c9e2d51", expires_in: int = 3600,
                 balance: float = 10000.0, rate: float = 10.0, unit: str = "credits"):
        self.host = host
        self.api_key = api_key
        self.expires_in = expires_in
        self.balance = balance
        self.rate = rate  # price per km² (rounded up to a whole amount per product)
        self.unit = unit
        self.template = json.loads((DATA / "search_feature.json").read_text(encoding="utf-8"))
        self.items: list[dict[str, Any]] = []
        self.products: dict[str, bytes] = {}  # catalogue id → the zip delivered for it
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # access token → expiry (time.time); 0: revoked
        self.grants: list[tuple[str, bool]] = []  # (grant_type, granted)
        self.requests: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.deliveries: dict[str, dict[str, Any]] = {}  # delivery id → the delivery (inside its order)
        self.states = ["ordered", "processing", "delivered"]
        self.failures: dict[str, tuple[str, str, str]] = {}  # catalogue id → (state, message, errorCode)
        self.on_order: Callable[[dict[str, Any]], None] | None = None
        self.unauthorized_next = 0
        self.modes = {"search": "bearer", "download": "bearer", "order": "bearer"}  # bearer | basic | both
        self.refusal = 401
        self.challenge = True
        self.forbid_downloads = ""
        self.page_limit: int | None = None  # the most search rows the server puts in a page
        self.download_redirect = ""  # downloads answer 302 to this base URL + the path (another server)
        self.orderable = "ok"
        self.drop_after: list[int] = []  # per product download, in order: bytes sent before the connection drops
        self.list_delay = 0.0  # seconds each orders listing takes
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeOneAtlas:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    @property
    def auth_url(self) -> str:
        return self.base + TOKEN_PATH

    @property
    def search_url(self) -> str:
        return self.base + "/api/v2/opensearch"

    def env(self) -> dict[str, str]:
        """The settings that point the tool at this fake."""
        return {"INGESTER_ONEATLAS_API_KEY": self.api_key, "INGESTER_ONEATLAS_AUTH_URL": self.auth_url,
                "INGESTER_ONEATLAS_SEARCH_URL": self.search_url, "INGESTER_ONEATLAS_ORDER_URL": self.base}

    # --- catalogue ---------------------------------------------------------------------------
    def add_item(self, identifier: str, acquired: str, footprint: list[tuple[float, float]], *,
                 constellation: str = "PHR", platform: str = "PHR1A", cloud: float = 3.2,
                 product: bytes | None = None, in_workspace: bool = False, item_id: str | None = None,
                 **props: Any) -> str:
        """A catalogue item (its footprint a ring of (lon, lat)); `product` is the zip its orders deliver,
        `in_workspace` gives it a download link at once (a product the account already has)."""
        item_id = item_id or str(uuidlib.uuid4())
        text = json.dumps(self.template).replace("{id}", item_id).replace("{image}", str(uuidlib.uuid5(
            uuidlib.NAMESPACE_URL, item_id))).replace("{identifier}", identifier)
        feature = json.loads(text)
        ring = [list(p) for p in footprint]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        feature["geometry"] = {"type": "Polygon", "coordinates": [ring]}
        feature["properties"].update({"acquisitionDate": acquired, "constellation": constellation,
                                      "platform": platform, "cloudCover": cloud, **props})
        if in_workspace:
            feature["_links"]["download"] = [{"href": f"{self.base}/api/v1/items/{item_id}/download",
                                              "name": "Download", "type": "http"}]
            feature["properties"]["workspaceName"] = "my-workspace"
        self.items.append(feature)
        if product is not None:
            self.products[item_id] = product
        return item_id

    def search(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        from shapely.geometry import shape

        try:
            per_page = int(body.get("itemsPerPage", 50))
            page = int(body.get("startPage", 1))
        except (TypeError, ValueError):
            return 400, {"error": True, "message": "itemsPerPage and startPage must be integers"}
        if not 1 <= per_page <= 500 or page < 1:
            return 400, {"error": True, "message": "itemsPerPage must be 1..500 and startPage >= 1"}
        hits = []
        area = shape(body["geometry"]) if body.get("geometry") else None
        for item in self.items:
            props = item["properties"]
            if body.get("constellation") and props["constellation"] != body["constellation"]:
                continue
            if body.get("acquisitionDate"):
                m = _RANGE.match(body["acquisitionDate"])
                if not m:
                    return 400, {"error": True, "message": "acquisitionDate must be a range [start,end]"}
                when = _time(props["acquisitionDate"])
                if (m.group(1) and when < _time(m.group(1))) or (m.group(2) and when > _time(m.group(2))):
                    continue
            if body.get("cloudCover"):
                m = _RANGE.match(body["cloudCover"])
                if not m:
                    return 400, {"error": True, "message": "cloudCover must be a range [min,max]"}
                if not float(m.group(1) or 0) <= props["cloudCover"] <= float(m.group(2) or 100):
                    continue
            if any(body.get(k) and str(props.get(k)) != body[k] for k in ("productType", "processingLevel",
                                                                          "platform")):
                continue
            if area is not None and not shape(item["geometry"]).intersects(area):
                continue
            hits.append(item)
        hits.sort(key=lambda f: (f["properties"]["acquisitionDate"], f["properties"]["id"]))
        per_page = min(per_page, self.page_limit or per_page)
        first = (page - 1) * per_page
        return 200, {"type": "FeatureCollection", "features": hits[first:first + per_page], "error": False,
                     "totalResults": len(hits), "startIndex": first, "itemsPerPage": per_page}

    # --- tokens ------------------------------------------------------------------------------
    def revoke_tokens(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def issued_tokens(self) -> list[str]:
        return list(self.tokens)

    def basic_header(self, key: str | None = None) -> str:
        """What a client sends for HTTP Basic with the API key (user `APIKEY`)."""
        return "Basic " + base64.b64encode(f"APIKEY:{self.api_key if key is None else key}".encode()).decode()

    def _bearer_ok(self, header: str) -> bool:
        if not header.startswith("Bearer "):
            return False
        with self.lock:
            if self.unauthorized_next > 0:
                self.unauthorized_next -= 1
                return False
            expiry = self.tokens.get(header[len("Bearer "):])
        return expiry is not None and expiry > time.time()

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[len("Basic "):], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == "APIKEY" and password == self.api_key

    def _authorised(self, header: str | None, endpoint: str = "order") -> bool:
        mode = self.modes.get(endpoint, "bearer")
        header = header or ""
        return ((mode in ("bearer", "both") and self._bearer_ok(header))
                or (mode in ("basic", "both") and self._basic_ok(header)))

    def refusal_of(self, header: str | None, endpoint: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, body, headers) of a request whose credentials the endpoint does not take."""
        if self.refusal == 403:
            return 403, {"error": "Forbidden", "message": "Not authenticated: the Authorization header is not "
                                                          "accepted"}, {}
        mode = self.modes.get(endpoint, "bearer")
        challenges = []
        if mode in ("bearer", "both"):
            given = (header or "").startswith("Bearer ")
            challenges.append('Bearer realm="OneAtlas"' + (', error="invalid_token"' if given else ""))
        if mode in ("basic", "both"):
            challenges.append('Basic realm="OneAtlas"')
        headers = {"WWW-Authenticate": ", ".join(challenges)} if self.challenge else {}
        return 401, {"error": "Unauthorized", "message": "invalid or missing credentials"}, headers

    # --- orders ------------------------------------------------------------------------------
    def _price(self, product: dict[str, Any]) -> tuple[float, float]:
        km2 = area_km2(product["aoi"])
        return math.ceil(km2 * self.rate), km2

    def prices(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problem = self._check_order_body(body)
        if problem:
            return 400, {"error": "Bad Request", "message": problem}
        deliveries, total, total_km2 = [], 0.0, 0.0
        for product in body["products"]:
            amount, km2 = self._price(product)
            total += amount
            total_km2 += km2
            deliveries.append({"datas": {**product, "sourceId": self._identifier(product["id"])},
                               "amount": amount, "amountUnit": self.unit, "isAmountEstimated": "false",
                               "areaKm2": round(km2, 6)})
        return 200, {"payload": body, "deliveries": deliveries, "feasibility": "ok", "orderable": self.orderable,
                     "price": {"credits": total, "amount": total, "isAmountEstimated": "false",
                               "areaKm2": round(total_km2, 6), "amountUnit": self.unit}}

    def _identifier(self, item_id: str) -> str:
        return next((f["properties"]["sourceIdentifier"] for f in self.items if f["properties"]["id"] == item_id), "")

    def _check_order_body(self, body: Any) -> str:
        if not isinstance(body, dict) or body.get("kind") != "order.data.product":
            return "kind must be order.data.product"
        products = body.get("products")
        if not isinstance(products, list) or not products:
            return "products must be a non-empty list"
        known = {f["properties"]["id"] for f in self.items}
        for product in products:
            missing = [k for k in ("id", "aoi", "productType", "radiometricProcessing", "imageFormat", "crsCode")
                       if k not in product]
            if missing:
                return f"product: missing {', '.join(missing)}"
            if product["id"] not in known:
                return f"unknown catalog item {product['id']}"
            if product["productType"] not in ("bundle", "pansharpened", "panchromatic", "multiSpectral"):
                return f"productType {product['productType']!r} is not valid"
            if product["radiometricProcessing"] not in ("REFLECTANCE", "DISPLAY"):
                return f"radiometricProcessing {product['radiometricProcessing']!r} is not valid"
            if product["imageFormat"] not in ("image/jp2", "image/geotiff"):
                return f"imageFormat {product['imageFormat']!r} is not valid"
            if area_km2(product["aoi"]) < 0.1:
                return "the AOI must be at least 0.1 km²"
        return ""

    def create_order(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problem = self._check_order_body(body)
        if problem:
            return 400, {"error": "Bad Request", "message": problem}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        order_id = str(uuidlib.uuid4())
        deliveries, total = [], 0.0
        for product in body["products"]:
            amount, km2 = self._price(product)
            total += amount
            deliveries.append({"_links": {}, "id": str(uuidlib.uuid4()), "kind": "order.data.product",
                               "status": "ordered", "amount": amount, "amountUnit": self.unit,
                               "isAmountEstimated": "false", "area": f"{km2:.6f}", "unit": "km2",
                               "datas": {**copy.deepcopy(product), "sourceId": self._identifier(product["id"]),
                                         "areaKm2": round(km2, 6)},
                               "updatedAt": now, "step": 0})
        with self.lock:
            if total > self.balance:
                return 402, {"error": "Payment Required", "message": f"not enough credits ({self.balance} left)"}
            self.balance -= total
            order = {"id": order_id, "kind": "order.data.product", "status": "ordered", "contractId": "C-42",
                     "createdAt": now, "updatedAt": now, "price": total, "amount": total, "amountUnit": self.unit,
                     "isAmountEstimated": "false", "deliveries": deliveries}
            self.orders.append(order)
            for delivery in deliveries:
                self.deliveries[delivery["id"]] = delivery
        if self.on_order is not None:
            self.on_order(order)
        return 201, self._public(order)

    def _advance(self, order: dict[str, Any]) -> None:
        """Each listing that shows a delivery moves it one state on (after the answer is built)."""
        for delivery in order["deliveries"]:
            product = delivery["datas"]["id"]
            states = list(self.states)
            if product in self.failures:
                states = states[:-1] + [self.failures[product][0]]
            if delivery["status"] in ("delivered", "failed", "rejected", "error"):
                continue
            delivery["step"] = min(delivery["step"] + 1, len(states) - 1)
            delivery["status"] = states[delivery["step"]]
            delivery["updatedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if delivery["status"] == "delivered":
                delivery["_links"] = {"download": {"href": f"{self.base}/api/v1/items/{delivery['id']}/download"}}
            elif product in self.failures and delivery["status"] == self.failures[product][0]:
                delivery["message"], delivery["errorCode"] = self.failures[product][1:]
        statuses = {d["status"] for d in order["deliveries"]}
        order["status"] = statuses.pop() if len(statuses) == 1 else "processing"

    def _public(self, order: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(order)
        for delivery in out["deliveries"]:
            delivery.pop("step", None)
        return out

    def list_orders(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        time.sleep(self.list_delay)
        try:
            per_page = int(query.get("itemsPerPage", ["10"])[0])
            page = int(query.get("page", ["1"])[0])
        except ValueError:
            return 400, {"error": "Bad Request", "message": "itemsPerPage and page must be numbers"}
        if per_page < 1 or page < 1:
            return 400, {"error": "Bad Request", "message": "itemsPerPage and page must be >= 1"}
        with self.lock:
            kind = query.get("kind", [None])[0]
            status = query.get("status", [None])[0]
            chosen = [o for o in self.orders
                      if (not kind or o["kind"] == kind) and (not status or o["status"] == status)]
            first = (page - 1) * per_page
            shown = chosen[first:first + per_page]
            body = {"startIndex": first, "totalResults": len(chosen), "itemsPerPage": per_page,
                    "countLimitReached": False, "items": [self._public(o) for o in shown]}
            for order in shown:
                self._advance(order)
        return 200, body

    def me(self) -> dict[str, Any]:
        return {"_links": {"self": {"href": f"{self.base}/api/v1/me"}}, "id": "5406642f-e3e8-4250-7c7f-7ac2be36021b",
                "status": "created", "createdAt": "2022-08-19T12:19:43Z", "roles": ["user", "contractViewer"],
                "contract": {"_links": {"self": {"href": f"{self.base}/api/v1/contracts/C-42"}}, "id": "C-42",
                             "status": "created", "offers": ["oneatlas-data"], "amountUnit": self.unit,
                             "kind": "contract.premium", "name": "Tests", "balance": self.balance,
                             "workspaceId": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"}}

    def product_of(self, ident: str) -> bytes | None:
        delivery = self.deliveries.get(ident)
        if delivery is not None:
            if delivery["status"] != "delivered":
                return None
            return self.products.get(delivery["datas"]["id"])
        item = next((f for f in self.items if f["properties"]["id"] == ident and "download" in f["_links"]), None)
        return self.products.get(ident) if item is not None else None

    # --- handler -----------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes)
                                 else "application/zip")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _log(self, body: Any = None) -> None:
                with fake.lock:
                    fake.requests.append({"method": self.command, "path": self.path,
                                          "authorization": self.headers.get("Authorization"), "body": body,
                                          "range": self.headers.get("Range")})

            def do_POST(self) -> None:  # noqa: N802
                raw = self._body()
                path = urllib.parse.urlsplit(self.path).path
                if path == TOKEN_PATH:
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    self._log({k: ("***" if k == "apikey" else v) for k, v in form.items()})
                    return self._token(form)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    self._log(raw.decode(errors="replace"))
                    return self._send(400, {"error": "Bad Request", "message": "the body is not JSON"})
                self._log(body)
                endpoint = "search" if path == "/api/v2/opensearch" else "order"
                if not fake._authorised(self.headers.get("Authorization"), endpoint):
                    return self._send(*fake.refusal_of(self.headers.get("Authorization"), endpoint))
                if path == "/api/v2/opensearch":
                    return self._send(*fake.search(body))
                if path == "/api/v1/prices":
                    return self._send(*fake.prices(body))
                if path == "/api/v1/orders":
                    return self._send(*fake.create_order(body))
                return self._send(404, {"error": "Not Found", "message": path})

            def do_GET(self) -> None:  # noqa: N802
                self._log()
                parts = urllib.parse.urlsplit(self.path)
                m = _DOWNLOAD.match(parts.path)
                endpoint = "download" if m else "order"
                if not fake._authorised(self.headers.get("Authorization"), endpoint):
                    return self._send(*fake.refusal_of(self.headers.get("Authorization"), endpoint))
                if m and fake.forbid_downloads:
                    return self._send(403, {"error": "Forbidden", "message": fake.forbid_downloads})
                if m and fake.download_redirect:
                    return self._send(302, {"message": "moved"}, {"Location": fake.download_redirect + parts.path})
                if parts.path == "/api/v1/me":
                    return self._send(200, fake.me())
                if parts.path == "/api/v1/orders":
                    return self._send(*fake.list_orders(urllib.parse.parse_qs(parts.query)))
                if m:
                    data = fake.product_of(m.group(1))
                    if data is None:
                        return self._send(404, {"error": "Not Found", "message": "no delivered product"})
                    return self._zip(data)
                return self._send(404, {"error": "Not Found", "message": parts.path})

            def _zip(self, data: bytes) -> None:
                rng = self.headers.get("Range")
                m = re.match(r"bytes=(\d+)-$", rng or "")
                start = int(m.group(1)) if m and int(m.group(1)) < len(data) else 0
                with fake.lock:
                    drop = fake.drop_after.pop(0) if fake.drop_after else None
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/zip")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:] if drop is None else data[start:start + drop]
                self.wfile.write(body)
                if drop is not None:  # the connection drops: the client sees a short body
                    self.wfile.flush()
                    self.close_connection = True

            def _token(self, form: dict[str, str]) -> None:
                grant = form.get("grant_type", "")
                if grant != "api_key" or form.get("client_id") != "IDP":
                    with fake.lock:
                        fake.grants.append((grant, False))
                    return self._send(400, {"error": "unsupported_grant_type",
                                            "error_description": "grant_type api_key with client_id IDP expected"})
                if form.get("apikey") != fake.api_key:
                    with fake.lock:
                        fake.grants.append((grant, False))
                    return self._send(401, {"error": "invalid_grant", "error_description": "Invalid API key"})
                token = f"oa-acc-{uuidlib.uuid4().hex}"
                with fake.lock:
                    fake.tokens[token] = time.time() + fake.expires_in
                    fake.grants.append((grant, True))
                return self._send(200, {"access_token": token, "expires_in": fake.expires_in, "refresh_expires_in": 0,
                                        "token_type": "Bearer", "not-before-policy": 0, "scope": "openid"})

        return Handler


def keyless_scene_job(job: Any, settings: Any) -> Any:
    """The default scene worker, run by a worker process whose own environment holds no OneAtlas API key
    (as a worker started elsewhere by a scheduler would be): `--scene-worker
    tests.fakes.oneatlas:keyless_scene_job`."""
    import os

    from ingester.providers.worker import run_scene_job

    os.environ.pop("INGESTER_ONEATLAS_API_KEY", None)
    return run_scene_job(job, settings)


def product_zip(constellation: str = "PHR") -> bytes:
    """The delivered zip of the test product of a constellation (tests/data/oneatlas)."""
    from tests.fakes.dimap import zip_product

    folder = next(DATA.glob(f"{constellation}_*"))
    return zip_product(folder)


def footprint_around(lon: float, lat: float, half: float = 0.01) -> list[tuple[float, float]]:
    return [(lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half), (lon - half, lat + half)]




PHR = "DS_PHR1A_2022041{}1053440_FR1_PX_E001N43_0615_0123{}"  # `PHR.format(i, i)`: the i-th test scene


def add_scenes(fake: FakeOneAtlas, count: int, **kw: Any) -> list[str]:
    """`count` Pléiades items over the Toulouse payload's AOI (each ~1.1 km² of it: 12 credits), with the
    PHR test product as what their orders deliver."""
    zipped = product_zip("PHR")
    return [fake.add_item(PHR.format(i, i), f"2022-04-1{i}T10:53:44.012Z", footprint_around(1.445, 43.601),
                          product=zipped, **kw) for i in range(count)]


__all__ = ["PHR", "FakeOneAtlas", "add_scenes", "product_zip", "footprint_around", "area_km2", "keyless_scene_job"]
