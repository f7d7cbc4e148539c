"""A fake STAC API on 127.0.0.1 that speaks the item-search protocol (STAC API v1.0.0):

- landing page with `conformsTo` (core, item-search, ogcapi-features, and the query and/or filter
  extensions as configured) and `search` links for GET and POST;
- `GET /collections`, `GET /collections/{id}` (404 `{"code": "NotFoundError", …}` for an unknown id);
- `GET /search` and `POST /search` with `collections`, `ids`, `bbox` or `intersects` (both: 400),
  `datetime` (instant or closed/open interval, inclusive), `limit` (clamped to the maximum), `query`
  (eq, neq, lt, lte, gt, gte, in, startsWith) and CQL2 JSON `filter` (and, or, not, =, <>, <, <=, >, >=,
  in, isNull, s_intersects); results ordered by datetime descending then id, as stac-server does;
- paging by a `next` token: the `next` link of a POST is a POST with `body: {"next": …}` and
  `merge: true` (or, with `merge=False`, the whole body), of a GET a URL with `next=…`;
- files under `/data/…` for asset hrefs, answered as S3 and HTTP servers answer them: `HEAD` (size,
  `Accept-Ranges: bytes`), a single `Range` (`bytes=a-b`, `a-`, `-n`) → 206 with `Content-Range`, a start
  past the end → 416 with `Content-Range: bytes */size`, a malformed or multi-part range → 200 with
  the whole file (S3 does not serve several ranges at once); body bytes served are counted per file.

It records every request, can answer the next requests with given statuses (503, 429, …), and is fed
with real STAC items (tests/data/stac) and items built from them (`landsat_item`, `earth_search_item`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from shapely.geometry import box, mapping, shape

TESTDATA = Path(__file__).resolve().parent.parent / "data"
BASE_CONFORMANCE = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                    "https://api.stacspec.org/v1.0.0/ogcapi-features", "https://api.stacspec.org/v1.0.0/collections"]
QUERY_CONFORMANCE = "https://api.stacspec.org/v1.0.0/item-search#query"
FILTER_CONFORMANCE = ["https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
                      "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
                      "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"]


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The inclusive (first, last) byte of a single-range `Range` header (RFC 9110 §14), "unsatisfiable"
    when it starts past the end (or asks for a zero-length suffix), None when the whole file is sent:
    no header, another unit, a malformed or a multi-part range (S3 ignores those)."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.split("=", 1)[1].strip()
    if "," in spec or "-" not in spec:
        return None
    first, _, last = (part.strip() for part in spec.partition("-"))
    if not first:  # suffix: the last n bytes
        if not last.isdigit():
            return None
        n = int(last)
        return "unsatisfiable" if n == 0 or size == 0 else (max(size - n, 0), size - 1)
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start, end = int(first), int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _prop(item: dict, name: str) -> Any:
    if name in ("id", "collection"):
        return item.get(name)
    return (item.get("properties") or {}).get(name)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None:
        return False
    try:
        return {"=": left == right, "<>": left != right, "<": left < right, "<=": left <= right,
                ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return False


def cql2(expr: Any, item: dict) -> Any:
    """Evaluate a CQL2 JSON expression on an item (the subset of the module docstring)."""
    if isinstance(expr, dict) and "property" in expr:
        return _prop(item, expr["property"])
    if isinstance(expr, dict) and "op" in expr:
        op, args = expr["op"], expr.get("args", [])
        if op == "and":
            return all(cql2(a, item) for a in args)
        if op == "or":
            return any(cql2(a, item) for a in args)
        if op == "not":
            return not cql2(args[0], item)
        if op in ("=", "<>", "<", "<=", ">", ">="):
            return _compare(op, cql2(args[0], item), cql2(args[1], item))
        if op == "in":
            return cql2(args[0], item) in args[1]
        if op == "isNull":
            return cql2(args[0], item) is None
        if op == "s_intersects":
            geom = item.get("geometry")
            return bool(geom) and shape(geom).intersects(shape(args[1]))
        raise BadRequest(f"unsupported CQL2 operator {op!r}")
    return expr


def query_ext(query: dict, item: dict) -> bool:
    ops = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
    for name, conditions in query.items():
        value = _prop(item, name)
        for op, operand in conditions.items():
            if op in ops:
                if not _compare(ops[op], value, operand):
                    return False
            elif op == "in":
                if value not in operand:
                    return False
            elif op == "startsWith":
                if not str(value or "").startswith(operand):
                    return False
            else:
                raise BadRequest(f"unsupported query operator {op!r}")
    return True


class FakeStacApi:
    def __init__(self, items: list[dict], *, query: bool = True, filter_: bool = True, max_limit: int = 10000,
                 merge: bool = True, base: str = "/v1", files: dict[str, bytes] | None = None, post: bool = True):
        self.items = sorted(items, key=lambda i: (-_time(i["properties"]["datetime"]).timestamp(), i["id"]))
        self.conformance = BASE_CONFORMANCE + ([QUERY_CONFORMANCE] if query else []) + (
            FILTER_CONFORMANCE if filter_ else [])
        self.max_limit = max_limit
        self.merge = merge
        self.post = post
        self.base = base.rstrip("/")
        self.files = dict(files or {})  # path under /data/ → content
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.fail_files: list[int | None] = []  # the next requests of files only: a status, or None to serve
        self.honour_ranges = True  # False: answer as a server that ignores Range (200, the whole file)
        self.served: dict[str, int] = {}  # file → body bytes sent
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.base}"

    def file_url(self, path: str) -> str:
        return f"{self.url}/data/{path}"

    def __enter__(self) -> FakeStacApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_HEAD(self) -> None:
                fake._handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    # --- protocol ---------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        record = {"method": method, "path": parsed.path, "query": parse_qs(parsed.query),
                  "body": json.loads(raw) if raw else None, "headers": dict(h.headers)}
        with self.lock:
            self.requests.append(record)
            status = self.fail_next.pop(0) if self.fail_next else None
            if status is None and self.fail_files and "/data/" in parsed.path:
                status = self.fail_files.pop(0)
        record["status"] = status or 0
        if status:
            self._send(h, status, {"code": "ServiceUnavailable", "description": "try again later"},
                       headers={"Retry-After": "0"})
            return
        path = parsed.path[len(self.base):] if parsed.path.startswith(self.base) else None
        try:
            if path is None:
                raise BadRequest("not found", 404)
            if path in ("", "/") and method == "GET":
                return self._send(h, 200, self.landing())
            if path == "/conformance":
                return self._send(h, 200, {"conformsTo": self.conformance})
            if path == "/collections":
                return self._send(h, 200, {"collections": [self.collection(c) for c in self.collection_ids()],
                                           "links": []})
            if path.startswith("/collections/") and path.count("/") == 2:
                cid = path.split("/")[2]
                if cid not in self.collection_ids():
                    raise BadRequest(f"Collection {cid} not found", 404)
                return self._send(h, 200, self.collection(cid))
            if path == "/search":
                if method == "POST" and not self.post:
                    raise BadRequest("Method Not Allowed", 405)
                params = self._params(method, record)
                return self._send(h, 200, self.search(params, method), "application/geo+json")
            if path.startswith("/data/") and method in ("GET", "HEAD"):
                return self._file(h, path[len("/data/"):])
            raise BadRequest("not found", 404)
        except BadRequest as exc:
            code = "NotFoundError" if exc.status == 404 else "BadRequest"
            self._send(h, exc.status, {"code": code, "description": str(exc)})

    def _file(self, h: BaseHTTPRequestHandler, name: str) -> None:
        data = self.files.get(name)
        if data is None:
            raise BadRequest(f"no file {name}", 404)
        size = len(data)
        accept = {"Accept-Ranges": "bytes", "ETag": f'"{hashlib.md5(data).hexdigest()}"'}
        span = byte_range(h.headers.get("Range"), size) if self.honour_ranges else None
        if span == "unsatisfiable":
            return self._send(h, 416, b"", "application/octet-stream", {**accept, "Content-Range": f"bytes */{size}"})
        if span is None:
            body, status, headers = data, 200, accept
        else:
            start, end = span
            body, status = data[start:end + 1], 206
            headers = {**accept, "Content-Range": f"bytes {start}-{end}/{size}"}
        if h.command != "HEAD":
            with self.lock:
                self.served[name] = self.served.get(name, 0) + len(body)
        self._send(h, status, body, "image/tiff", headers)

    def bytes_served(self, prefix: str = "") -> int:
        """Body bytes sent for the files whose name starts with `prefix`."""
        with self.lock:
            return sum(n for name, n in self.served.items() if name.startswith(prefix))

    def _params(self, method: str, record: dict) -> dict[str, Any]:
        if method == "POST":
            if not isinstance(record["body"], dict):
                raise BadRequest("POST /search needs a JSON object body")
            return dict(record["body"])
        out: dict[str, Any] = {}
        for key, values in record["query"].items():
            value = values[-1]
            if key in ("collections", "ids"):
                out[key] = value.split(",")
            elif key == "bbox":
                out[key] = [float(v) for v in value.split(",")]
            elif key in ("intersects", "query", "filter"):
                out[key] = json.loads(value)
            elif key == "limit":
                out[key] = int(value)
            else:
                out[key] = value
        return out

    def landing(self) -> dict:
        return {"type": "Catalog", "id": "fake-stac", "stac_version": "1.0.0", "description": "fake STAC API",
                "conformsTo": self.conformance,
                "links": [{"rel": "self", "href": self.url, "type": "application/json"},
                          {"rel": "root", "href": self.url, "type": "application/json"},
                          {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
                          {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json",
                           "method": "GET"},
                          *([{"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json",
                              "method": "POST"}] if self.post else [])]}

    def collection_ids(self) -> list[str]:
        return sorted({i["collection"] for i in self.items})

    def collection(self, cid: str) -> dict:
        return {"type": "Collection", "id": cid, "stac_version": "1.0.0", "description": cid, "license": "proprietary",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
                "links": [{"rel": "self", "href": f"{self.url}/collections/{cid}"},
                          {"rel": "root", "href": self.url}]}

    def search(self, params: dict[str, Any], method: str) -> dict:
        if "bbox" in params and "intersects" in params:
            raise BadRequest("only one of bbox and intersects may be given")
        limit = int(params.get("limit", 10))
        if limit < 1:
            raise BadRequest("limit must be ≥ 1")
        limit = min(limit, self.max_limit)
        if params.get("filter-lang", "cql2-json") != "cql2-json":
            raise BadRequest("only cql2-json filters are supported")
        area = shape(params["intersects"]) if params.get("intersects") else (
            box(*params["bbox"]) if params.get("bbox") else None)
        low = high = None
        if params.get("datetime"):
            parts = str(params["datetime"]).split("/")
            if len(parts) == 1:
                low = high = _time(parts[0])
            else:
                low = None if parts[0] in ("", "..") else _time(parts[0])
                high = None if parts[1] in ("", "..") else _time(parts[1])
        matched = []
        for item in self.items:
            if params.get("collections") and item["collection"] not in params["collections"]:
                continue
            if params.get("ids") and item["id"] not in params["ids"]:
                continue
            if area is not None and not (item.get("geometry") and shape(item["geometry"]).intersects(area)):
                continue
            when = _time(item["properties"]["datetime"])
            if (low and when < low) or (high and when > high):
                continue
            if params.get("query") and not query_ext(params["query"], item):
                continue
            if params.get("filter") and not cql2(params["filter"], item):
                continue
            matched.append(item)
        offset = int(params.get("next") or 0)
        page = [copy.deepcopy(i) for i in matched[offset:offset + limit]]
        for item in page:
            item.setdefault("links", []).insert(0, {"rel": "self", "type": "application/geo+json",
                                                    "href": f"{self.url}/collections/{item['collection']}/items/"
                                                            f"{item['id']}"})
        links: list[dict[str, Any]] = [{"rel": "root", "href": self.url, "type": "application/json"}]
        if offset + limit < len(matched):
            token = str(offset + limit)
            if method == "POST":
                body = {"next": token} if self.merge else {**{k: v for k, v in params.items() if k != "next"},
                                                           "next": token}
                links.append({"rel": "next", "href": f"{self.url}/search", "type": "application/geo+json",
                              "method": "POST", "body": body, "merge": self.merge})
            else:
                query = {k: (json.dumps(v) if isinstance(v, dict) else ",".join(map(str, v))
                             if isinstance(v, list) else v) for k, v in params.items() if k != "next"}
                links.append({"rel": "next", "href": f"{self.url}/search?{urlencode({**query, 'next': token})}",
                              "type": "application/geo+json", "method": "GET"})
        return {"type": "FeatureCollection", "features": page, "links": links, "numberMatched": len(matched),
                "numberReturned": len(page), "context": {"limit": limit, "matched": len(matched),
                                                         "returned": len(page)}}


# --- items built from real ones --------------------------------------------------------------------

def multihash_sha512(data: bytes) -> str:
    return "1340" + hashlib.sha512(data).hexdigest()


LANDSAT_KEYS = {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16",
                "B7": "swir22", "B8": "pan", "B9": "cirrus", "B10": "lwir11", "B11": "lwir12", "SR_B1": "coastal",
                "SR_B2": "blue", "SR_B3": "green", "SR_B4": "red", "SR_B5": "nir08", "SR_B6": "swir16",
                "SR_B7": "swir22", "ST_B10": "lwir11", "QA_PIXEL": "qa_pixel"}


def landsat_item(folder: Path, *, geometry: dict, datetime_: str, cloud: float, sun: tuple[float, float],
                 platform: str | None = None, collection: str | None = None) -> dict:
    """A USGS landsatlook item (shape of the real landsat-c2l1 / landsat-c2l2-sr items: `platform`,
    `landsat:*`, `view:sun_*`, assets with `alternate.s3.href` and a SHA2-512 `file:checksum`) for a
    scene folder of tests/data/landsat."""
    pid = folder.name
    level2 = "_L2" in pid
    path, row = pid[10:13], pid[13:16]
    rel = f"collection02/level-{2 if level2 else 1}/standard/oli-tirs/{pid[17:21]}/{path}/{row}/{pid}"
    assets: dict[str, dict] = {}
    for file in sorted(folder.iterdir()):
        suffix = file.name[len(pid) + 1:]
        band = suffix.rsplit(".", 1)[0]
        key = LANDSAT_KEYS.get(band, suffix)
        data = file.read_bytes()
        assets[key] = {
            "href": f"https://landsatlook.usgs.gov/data/{rel}/{file.name}",
            "type": "image/vnd.stac.geotiff; cloud-optimized=true" if file.suffix == ".TIF" else "text/plain",
            "roles": ["data"] if file.suffix == ".TIF" else ["metadata"],
            "alternate": {"s3": {"href": f"s3://usgs-landsat/{rel}/{file.name}", "storage:platform": "AWS",
                                 "storage:requester_pays": True}},
            "file:checksum": multihash_sha512(data),
        }
        if file.suffix == ".TIF" and band != "QA_PIXEL":
            assets[key]["eo:bands"] = [{"name": band.split("_")[-1], "common_name": key}]
    sat = platform or ("LANDSAT_9" if pid.startswith("LC09") else "LANDSAT_8")
    item_id = pid + ("_SR" if level2 else "")
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "collection": collection or ("landsat-c2l2-sr" if level2 else "landsat-c2l1"),
        "bbox": list(shape(geometry).bounds), "geometry": geometry,
        "properties": {"datetime": datetime_, "created": "2022-01-15T13:57:09.491Z",
                       "updated": "2022-01-15T13:57:09.491Z", "platform": sat, "instruments": ["OLI", "TIRS"],
                       "eo:cloud_cover": cloud, "landsat:cloud_cover_land": round(cloud * 0.9, 2),
                       "view:off_nadir": 0, "view:sun_azimuth": sun[0], "view:sun_elevation": sun[1],
                       "landsat:wrs_type": "2", "landsat:wrs_path": path, "landsat:wrs_row": row,
                       "landsat:scene_id": f"{pid[:2]}{pid[3]}{path}{row}2022005LGN00",
                       "landsat:collection_category": pid[-2:], "landsat:collection_number": "02",
                       "landsat:correction": pid[5:9], "proj:epsg": 32632},
        "assets": assets, "links": [],
    }


def earth_search_item(item_id: str, *, geometry: dict, datetime_: str, cloud: float, baseline: str,
                      href: callable, offset_applied: bool | None = None, checksums: dict[str, str] | None = None,
                      sizes: dict[str, int] | None = None) -> dict:
    """An Earth Search v1 sentinel-2-l2a item (shape of the real ones: common-name asset keys, COG
    hrefs, `raster:bands` scale 0.0001 / offset −0.1, `s2:*`, `earthsearch:*`, `grid:code`)."""
    names = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
             "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir16": "B11", "swir22": "B12",
             "scl": "SCL"}
    tile = item_id.split("_")[1]
    assets = {}
    for key, band in names.items():
        asset = {"href": href(item_id, band), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                 "roles": ["data", "reflectance"],
                 "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                   "spatial_resolution": 10, "scale": 0.0001, "offset": -0.1}]}
        if band != "SCL":
            asset["eo:bands"] = [{"name": key, "common_name": key}]
        if checksums and band in checksums:
            asset["file:checksum"] = checksums[band]
        if sizes and band in sizes:
            asset["file:size"] = sizes[band]
        assets[key] = asset
    assets["granule_metadata"] = {"href": href(item_id, "granule_metadata.xml"), "type": "application/xml",
                                  "roles": ["metadata"]}
    props = {"created": "2022-01-04T15:42:10.537Z", "platform": "sentinel-2" + item_id[2].lower(),
             "constellation": "sentinel-2", "instruments": ["msi"], "eo:cloud_cover": cloud, "proj:epsg": 32632,
             "mgrs:utm_zone": int(tile[:2]), "mgrs:latitude_band": tile[2], "mgrs:grid_square": tile[3:],
             "grid:code": f"MGRS-{tile}", "view:sun_azimuth": 163.2, "view:sun_elevation": 11.9,
             "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline,
             "s2:product_uri": f"S2{item_id[2]}_MSIL2A_{datetime_[:4]}{datetime_[5:7]}{datetime_[8:10]}T103431_N0"
                               f"{baseline.replace('.', '')}_R108_T{tile}_20220104T113955.SAFE",
             "s2:generation_time": f"{datetime_[:10]}T11:39:55.000000Z", "datetime": datetime_,
             "s2:sequence": item_id.split("_")[3], "updated": "2022-01-04T15:42:10.537Z"}
    if offset_applied is not None:
        props["earthsearch:boa_offset_applied"] = offset_applied
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
            "bbox": list(shape(geometry).bounds), "geometry": geometry, "properties": props, "assets": assets,
            "links": []}


def recorded_page() -> dict:
    """The real Earth Search answer of tests/data/stac/earth_search_search.json."""
    return json.loads((TESTDATA / "stac" / "earth_search_search.json").read_text())


DENMARK_FOOTPRINT = mapping(box(8.99968, 54.88733, 10.76096, 55.89489))
