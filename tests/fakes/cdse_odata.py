"""A fake CDSE OData catalogue (`GET /odata/v1/Products`) on 127.0.0.1 that speaks the real protocol.

It parses and evaluates the `$filter` it receives (the subset `ingester` and common clients use:
`Collection/Name`, `Name`, `Id`, `ContentDate/Start|End`, `PublicationDate`, `Online` comparisons,
`contains`/`startswith`/`endswith` on names, `OData.CSC.Intersects(area=geography'SRID=4326;…')` with
shapely, the typed `Attributes/OData.CSC.<T>Attribute/any(att:…)` clauses, `and`/`or`/`not`/brackets),
orders by `$orderby` (Id tie-break; unordered without it, like the real service), pages with `$top`
and `$skip` and answers `@odata.nextLink` while more rows exist below the `$skip` ceiling.

Like the real service it rejects: `$top` > 1000 and `$skip` > 10000 (422 with a validation-error
list, as documented in the CDSE release notes of 2024-11-12); a MULTIPOLYGON area, an attribute
clause mixing two attribute types and any syntax it does not understand (400 with an error object).
`GET /odata/v1/Products(<Id>)` answers one product as it is now (`set_online` plays a product going
to the long-term archive or being restored), 404 for an unknown Id.
It can be told to answer 429 (with Retry-After) or 503 for the next N requests, to spell the next link
`@OData.nextLink` or to omit it, and to ignore the filter (a server that returns what it should not).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from shapely import wkt as shapely_wkt
from shapely.geometry import mapping, shape

TESTDATA = Path(__file__).resolve().parent.parent / "data"


class ODataError(Exception):
    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body if body is not None else {
            "detail": {"ErrorMessage": message, "ErrorCode": status, "RequestId": str(uuid.uuid4())}
        }


def _parse_dt(text: str) -> datetime:
    raw = text.strip().replace("Z", "+00:00")
    m = re.search(r"\.(\d+)", raw)
    if m and len(m.group(1)) > 6:
        raw = raw[: m.start(1)] + m.group(1)[:6] + raw[m.end(1):]
    if "T" not in raw:
        raw += "T00:00:00+00:00"
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- filter parser -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<geo>geography'(?:[^']|'')*')
  | (?P<str>'(?:[^']|'')*')
  | (?P<dt>\d{4}-\d\d-\d\d(?:T\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?)?)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*(?:/[A-Za-z_][A-Za-z0-9_.]*)*)
  | (?P<punct>[(),:=])
""", re.VERBOSE)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FIELDS = {"Name", "Id", "Collection/Name", "ContentDate/Start", "ContentDate/End", "PublicationDate",
           "ModificationDate", "OriginDate", "Online", "ContentLength"}
_DATE_FIELDS = {"ContentDate/Start", "ContentDate/End", "PublicationDate", "ModificationDate", "OriginDate"}
_ANY = re.compile(r"^Attributes/OData\.CSC\.(String|Double|Integer|DateTimeOffset|Boolean)Attribute/any$")
_VALUE = re.compile(r"^(\w+)/OData\.CSC\.(\w+)Attribute/Value$")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ODataError(400, f"Invalid filter: unexpected character at position {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None:
        return op == "ne"
    try:
        return {"eq": left == right, "ne": left != right, "gt": left > right, "ge": left >= right,
                "lt": left < right, "le": left <= right}[op]
    except TypeError:
        return False


class _Parser:
    """Recursive descent over the token list; builds a predicate `fn(product) -> bool`."""

    def __init__(self, text: str, product_field: Callable[[dict, str], Any]):
        self.toks = _tokens(text)
        self.i = 0
        self.field = product_field

    def peek(self, value: str | None = None) -> tuple[str, str] | None:
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        if value is not None and (tok is None or tok[1] != value):
            return None
        return tok

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            want = value or kind
            got = tok[1] if tok else "end of filter"
            raise ODataError(400, f"Invalid filter: expected {want!r} but found {got!r}")
        self.i += 1
        return tok

    def parse(self) -> Callable[[dict], bool]:
        fn = self.expr(None)
        if self.peek() is not None:
            raise ODataError(400, f"Invalid filter: unexpected {self.peek()[1]!r}")
        return fn

    def expr(self, scope):
        left = self.conj(scope)
        while self.peek("or"):
            self.take()
            right = self.conj(scope)
            left = (lambda a, b: lambda x: a(x) or b(x))(left, right)
        return left

    def conj(self, scope):
        left = self.unary(scope)
        while self.peek("and"):
            self.take()
            right = self.unary(scope)
            left = (lambda a, b: lambda x: a(x) and b(x))(left, right)
        return left

    def unary(self, scope):
        if self.peek("not"):
            self.take()
            inner = self.unary(scope)
            return lambda x: not inner(x)
        return self.primary(scope)

    def primary(self, scope):
        if self.peek("("):
            self.take("(")
            fn = self.expr(scope)
            self.take(")")
            return fn
        kind, ident = self.take(kind="ident")
        if ident in ("contains", "startswith", "endswith") and self.peek("("):
            self.take("(")
            _, path = self.take(kind="ident")
            self.take(",")
            needle = self.string()
            self.take(")")
            if path not in ("Name", "Id"):
                raise ODataError(400, f"Invalid filter: {ident}() is not supported on {path}")
            test = {"contains": lambda v: needle in v, "startswith": lambda v: v.startswith(needle),
                    "endswith": lambda v: v.endswith(needle)}[ident]
            return lambda p: test(str(self.field(p, path)))
        if ident == "OData.CSC.Intersects":
            return self.intersects()
        m = _ANY.match(ident)
        if m:
            return self.any(m.group(1))
        return self.comparison(ident, scope)

    def string(self) -> str:
        _, raw = self.take(kind="str")
        return raw[1:-1].replace("''", "'")

    def literal(self) -> Any:
        kind, raw = self.take()
        if kind == "str":
            return raw[1:-1].replace("''", "'")
        if kind == "dt":
            return _parse_dt(raw)
        if kind == "num":
            return float(raw) if re.search(r"[.eE]", raw) else int(raw)
        if kind == "ident" and raw in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[raw]
        raise ODataError(400, f"Invalid filter: expected a literal but found {raw!r}")

    def intersects(self):
        self.take("(")
        self.take("area")
        self.take("=")
        _, raw = self.take(kind="geo")
        self.take(")")
        body = raw[len("geography'"):-1]
        srid, _, geom_text = body.partition(";")
        if srid.strip().upper() != "SRID=4326" or not geom_text:
            raise ODataError(400, "Invalid geography: only SRID=4326 is supported")
        kind = geom_text.strip().split("(")[0].strip().upper()
        if kind not in ("POLYGON", "POINT"):
            raise ODataError(400, f"Invalid geography: {kind} is not supported")
        try:
            area = shapely_wkt.loads(geom_text)
        except Exception as exc:  # noqa: BLE001 - any WKT problem is the client's
            raise ODataError(400, f"Invalid geography: {exc}") from None
        if kind == "POLYGON" and list(area.exterior.coords)[0] != list(area.exterior.coords)[-1]:
            raise ODataError(400, "Invalid geography: the polygon ring is not closed")
        return lambda p: self.field(p, "__footprint__") is not None and self.field(p, "__footprint__").intersects(area)

    def any(self, att_type: str):
        self.take("(")
        _, var = self.take(kind="ident")
        self.take(":")
        inner = self.expr((var, att_type))
        self.take(")")
        wanted = f"#OData.CSC.{att_type}Attribute"
        return lambda p: any(inner(a) for a in p.get("Attributes") or [] if a.get("@odata.type") == wanted)

    def comparison(self, path: str, scope):
        _, op = self.take(kind="ident")
        if op not in _OPS:
            raise ODataError(400, f"Invalid filter: unknown operator {op!r}")
        value = self.literal()
        if scope is not None:
            var, att_type = scope
            if path == f"{var}/Name":
                return lambda a: _compare(op, a.get("Name"), value)
            m = _VALUE.match(path)
            if m and m.group(1) == var:
                if m.group(2) != att_type:
                    raise ODataError(
                        400, f"Invalid filter: attribute type mismatch ({att_type}Attribute/any with "
                             f"{m.group(2)}Attribute/Value)")
                if att_type == "DateTimeOffset":
                    return lambda a: _compare(op, _parse_dt(a["Value"]) if a.get("Value") else None, value)
                return lambda a: _compare(op, a.get("Value"), value)
            raise ODataError(400, f"Invalid filter: unknown attribute path {path!r}")
        if path not in _FIELDS:
            raise ODataError(400, f"Invalid filter: unknown field {path!r}")
        if path in _DATE_FIELDS:
            if not isinstance(value, datetime):
                raise ODataError(400, f"Invalid filter: {path} needs a DateTimeOffset literal")
            return lambda p: _compare(op, _parse_dt(self.field(p, path)), value)
        return lambda p: _compare(op, self.field(p, path), value)


def _field(product: dict, path: str) -> Any:
    if path == "__footprint__":
        return product.get("__shape__")
    if path == "Collection/Name":
        return product.get("__collection__")
    if "/" in path:
        a, b = path.split("/", 1)
        return (product.get(a) or {}).get(b)
    return product.get(path)


def compile_filter(text: str) -> Callable[[dict], bool]:
    return _Parser(text, _field).parse()


# --- server ------------------------------------------------------------------------------------------

def collection_of(name: str) -> str:
    for prefix, coll in (("S1", "SENTINEL-1"), ("S2", "SENTINEL-2"), ("S3", "SENTINEL-3"), ("S5P", "SENTINEL-5P")):
        if name.startswith(prefix):
            return coll
    return "OTHER"


class FakeCdseCatalogue:
    """The fake catalogue. `url` is the OData base URL to put in INGESTER_CDSE_CATALOGUE_URL."""

    def __init__(self, products: Iterable[dict] = (), *, max_top: int = 1000, max_skip: int = 10000):
        self.max_top = max_top
        self.max_skip = max_skip
        self.next_link_key: str | None = "@odata.nextLink"
        self.ignore_filter = False
        self.link_resource = "Products"  # where next links point (another name: a broken link, 404)
        self.requests: list[dict[str, Any]] = []  # {"path", "params", "url", "status"}
        self.latency = 0.0  # seconds each answer takes (a remote service's round trip)
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most answered at once
        self._products: list[dict] = []
        self._serialized: dict[tuple[str, bool], str] = {}
        self._cache: dict[tuple[str, str], list[dict]] = {}
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.add(products)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # setup
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/odata/v1"

    def add(self, products: Iterable[dict]) -> None:
        with self._lock:
            for product in products:
                p = copy.deepcopy(product)
                geo = p.get("GeoFootprint")
                p["__shape__"] = shape(geo) if geo else None
                p["__collection__"] = collection_of(p["Name"])
                self._products.append(p)
            self._cache.clear()

    def set_online(self, product_id: str, online: bool) -> None:
        """A product goes offline (long-term archive) or comes back online (restored after an order)."""
        with self._lock:
            for product in self._products:
                if product["Id"] == product_id:
                    product["Online"] = online
            self._serialized = {k: v for k, v in self._serialized.items() if k[0] != product_id}
            self._cache.clear()

    def fail_next(self, count: int, status: int = 429, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._failures.extend([(status, headers)] * count)

    def __enter__(self) -> FakeCdseCatalogue:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def product_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/Products")]

    # protocol
    def _public(self, product: dict, attributes: bool) -> str:
        key = (product["Id"], attributes)
        text = self._serialized.get(key)
        if text is None:
            public = {k: v for k, v in product.items() if not k.startswith("__") and k != "Assets"}
            if not attributes:
                public.pop("Attributes", None)
            text = json.dumps(public)
            self._serialized[key] = text
        return text

    def _matching(self, flt: str, orderby: str) -> list[dict]:
        key = (flt if not self.ignore_filter else "", orderby)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        rows = list(self._products)
        if flt and not self.ignore_filter:
            predicate = compile_filter(flt)
            rows = [p for p in rows if predicate(p)]
        if orderby:
            m = re.fullmatch(r"\s*(ContentDate/Start|ContentDate/End|PublicationDate|ModificationDate)"
                             r"(?:\s+(asc|desc))?\s*", orderby)
            if not m:
                raise ODataError(400, f"Invalid $orderby: {orderby!r}")
            field, direction = m.group(1), m.group(2) or "asc"
            rows.sort(key=lambda p: p["Id"])
            rows.sort(key=lambda p: _parse_dt(_field(p, field)), reverse=direction == "desc")
        else:  # no stable order without $orderby
            rows.sort(key=lambda p: hashlib.md5(p["Id"].encode()).hexdigest())
        with self._lock:
            self._cache[key] = rows
        return rows

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            status, headers = failure
            body = {"detail": {"ErrorMessage": "Too Many Requests" if status == 429 else "Service Unavailable",
                               "ErrorCode": status}}
            return status, headers, json.dumps(body).encode()
        entity = re.fullmatch(r".*/odata/v1/Products\(([^)/]+)\)", path)
        if entity:  # one product by Id, as it is now (e.g. `Online` after a restore)
            with self._lock:
                found = next((p for p in self._products if p["Id"] == entity.group(1)), None)
            if found is None:
                raise ODataError(404, f"Product {entity.group(1)} not found")
            public = {k: v for k, v in found.items() if not k.startswith("__") and k != "Assets"}
            if "Attributes" not in [e.strip() for v in query.get("$expand", []) for e in v.split(",")]:
                public.pop("Attributes", None)
            return 200, {}, json.dumps({"@odata.context": "$metadata#Products/$entity", **public}).encode()
        if not path.endswith("/odata/v1/Products"):
            raise ODataError(404, f"Unknown resource {path}")
        one = {k: v[-1] for k, v in query.items()}
        problems = []
        for name, default, ceiling in (("$top", 20, self.max_top), ("$skip", 0, self.max_skip)):
            raw = one.get(name, str(default))
            if not re.fullmatch(r"\d+", raw):
                problems.append({"type": "int_parsing", "loc": ["query", name],
                                 "msg": "Input should be a valid integer", "input": raw})
            elif int(raw) > ceiling:
                problems.append({"type": "less_than_equal", "loc": ["query", name],
                                 "msg": f"Input should be less than or equal to {ceiling}", "input": raw,
                                 "ctx": {"le": ceiling}})
        if problems:
            raise ODataError(422, problems[0]["msg"], {"detail": problems})
        top, skip = int(one.get("$top", "20")), int(one.get("$skip", "0"))
        rows = self._matching(one.get("$filter", ""), one.get("$orderby", ""))
        expand = [e.strip() for v in query.get("$expand", []) for e in v.split(",")]
        page = rows[skip: skip + top]
        parts = [f'"@odata.context":"$metadata#Products{"(Attributes())" if "Attributes" in expand else ""}"']
        if one.get("$count", "").lower() == "true":
            parts.append(f'"@odata.count":{len(rows)}')
        parts.append('"value":[' + ",".join(self._public(p, "Attributes" in expand) for p in page) + "]")
        if self.next_link_key and skip + top < len(rows) and skip + top <= self.max_skip:
            params = [(k, x) for k, v in query.items() if k != "$skip" for x in v] + [("$skip", str(skip + top))]
            link = f"{self.url}/{self.link_resource}?{urlencode(params)}"
            parts.append(f"{json.dumps(self.next_link_key)}:{json.dumps(link)}")
        return 200, {}, ("{" + ",".join(parts) + "}").encode()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query, keep_blank_values=True)
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    status, headers, body = fake.answer(parsed.path, query)
                except ODataError as exc:
                    status, headers, body = exc.status, {}, json.dumps(exc.body).encode()
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                fake.requests.append({"path": parsed.path, "params": {k: v[-1] for k, v in query.items()},
                                      "query": query, "url": f"http://127.0.0.1:{fake._server.server_address[1]}"
                                      f"{self.path}", "status": status})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        return Handler


# --- products: real ones, and synthetic ones built from them -------------------------------------------

@functools.lru_cache(maxsize=1)
def _real_s2_text() -> str:
    return (TESTDATA / "cdse" / "cop_dataspace_search.json").read_text()


def real_s2_products() -> list[dict]:
    """The two S2 L1C products of cop_dataspace_search.json (checksums, attributes, assets)."""
    return json.loads(_real_s2_text())["value"]


def real_aux_products() -> list[dict]:
    """The 47 S1 auxiliary products of the CDSETool pages (null footprints)."""
    out: list[dict] = []
    for i in range(1, 6):
        out += json.loads((TESTDATA / "cdse" / "cdsetool" / f"odata_page_{i}.json").read_text())["value"]
    return out


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _set_attr(product: dict, name: str, value: Any, kind: str) -> None:
    atts = product.setdefault("Attributes", [])
    atts[:] = [a for a in atts if a["Name"] != name]
    atts.append({"@odata.type": f"#OData.CSC.{kind}Attribute", "Name": name, "Value": value, "ValueType": kind})


def _with_geometry(product: dict, geometry: Any) -> None:
    if geometry is None:
        product["Footprint"] = product["GeoFootprint"] = None
        return
    geom = shape(geometry) if isinstance(geometry, dict) else geometry
    product["GeoFootprint"] = json.loads(json.dumps(mapping(geom)))
    product["Footprint"] = f"geography'SRID=4326;{geom.wkt}'"


def s2_product(*, tile: str = "32UNG", sensing: datetime, relative_orbit: int = 108, baseline: str = "0510",
               generation: datetime | None = None, cloud: float = 12.5, geometry: Any, mission: str = "S2A",
               level: str = "L1C", online: bool = True, orbit: int = 34139, pid: str | None = None) -> dict:
    """A Sentinel-2 product shaped like the real answer (template: cop_dataspace_search.json)."""
    product = copy.deepcopy(real_s2_products()[0])
    product.pop("Assets", None)
    generation = generation or sensing + timedelta(hours=2)
    name = (f"{mission}_MSI{level}_{sensing:%Y%m%dT%H%M%S}_N{baseline}_R{relative_orbit:03d}_T{tile}_"
            f"{generation:%Y%m%dT%H%M%S}.SAFE")
    product.update({
        "Id": pid or str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "Name": name, "Online": online,
        "ContentDate": {"Start": _stamp(sensing), "End": _stamp(sensing)},
        "PublicationDate": _stamp(generation + timedelta(hours=1)),
        "S3Path": f"/eodata/Sentinel-2/MSI/{level}/{sensing:%Y/%m/%d}/{name}",
    })
    for c in product["Checksum"]:
        c["Value"] = hashlib.md5(name.encode()).hexdigest() if c["Algorithm"] == "MD5" else \
            hashlib.sha256(name.encode()).hexdigest()
    _with_geometry(product, geometry)
    product_type = "S2MSI1C" if level == "L1C" else "S2MSI2A"
    for att, value, kind in (("tileId", tile, "String"), ("cloudCover", cloud, "Double"),
                             ("orbitNumber", orbit, "Integer"), ("relativeOrbitNumber", relative_orbit, "Integer"),
                             ("productType", product_type, "String"), ("processingLevel", product_type, "String"),
                             ("platformSerialIdentifier", mission[-1], "String"),
                             ("processorVersion", f"{baseline[:2]}.{baseline[2:]}", "String"),
                             ("beginningDateTime", _stamp(sensing), "DateTimeOffset")):
        _set_attr(product, att, value, kind)
    return product


def s1_product(name: str, *, sensing: datetime, geometry: Any, pid: str | None = None,
               relative_orbit: int = 44, orbit: int | None = None, direction: str = "ASCENDING",
               polarisation: str = "VV&VH", mode: str = "IW", product_type: str = "SLC", slice_number: int = 17,
               online: bool = True, size: int = 4_400_000_000, published: datetime | None = None) -> dict:
    """A Sentinel-1 product shaped like the real answer (attribute names and types of attributes.json)."""
    product = copy.deepcopy(real_s2_products()[0])
    product.pop("Assets", None)
    safe = name if name.endswith(".SAFE") else name + ".SAFE"
    end = sensing + timedelta(seconds=27)
    published = published or sensing + timedelta(hours=1)
    product.update({
        "Id": pid or str(uuid.uuid5(uuid.NAMESPACE_URL, safe)), "Name": safe, "Online": online,
        "ContentLength": size, "ContentDate": {"Start": _stamp(sensing), "End": _stamp(end)},
        "PublicationDate": _stamp(published),
        "S3Path": f"/eodata/Sentinel-1/SAR/{product_type}/{sensing:%Y/%m/%d}/{safe}", "Attributes": [],
    })
    for c in product["Checksum"]:
        c["Value"] = hashlib.md5(safe.encode()).hexdigest() if c["Algorithm"] == "MD5" else \
            hashlib.sha256(safe.encode()).hexdigest()
    _with_geometry(product, geometry)
    orbit = orbit if orbit is not None else int(safe[49:55])
    for att, value, kind in (("productType", product_type, "String"), ("polarisationChannels", polarisation, "String"),
                             ("operationalMode", mode, "String"), ("swathIdentifier", mode, "String"),
                             ("relativeOrbitNumber", relative_orbit, "Integer"), ("orbitNumber", orbit, "Integer"),
                             ("orbitDirection", direction, "String"), ("sliceNumber", slice_number, "Integer"),
                             ("platformSerialIdentifier", safe[2], "String"),
                             ("beginningDateTime", _stamp(sensing), "DateTimeOffset")):
        _set_attr(product, att, value, kind)
    return product
