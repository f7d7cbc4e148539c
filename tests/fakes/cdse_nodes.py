"""A fake CDSE OData `Nodes` service on 127.0.0.1, and builders of S1 test products (annotations,
SAFE folders, zips) from the fixtures.

The fake speaks the real URL form (docs/bursts.md, "Annotation sources"): listing
`GET /odata/v1/Products(<uuid>)/Nodes(<name>.SAFE)/Nodes(annotation)/Nodes` (no quotes, no auth) answers
`{"result": [{"Id", "Name", "ContentLength", "ChildrenNumber", "Nodes": {"uri"}}, …]}`; a file is
`…/Nodes(<file>)/$value` with `Authorization: Bearer <token>` (401 without a valid one); unknown
products answer 404 with an OData error body. `POST /token` is a Keycloak-like password/refresh grant.

Products are derived from the real annotation fixtures: `shift_annotation` moves every time by whole
repeat cycles and adds 175 to the absolute orbit per 12 days, as docs/bursts.md, "Test fixtures", describes.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

IW2_2023 = "s1a-iw2-slc-vv-20230108t135251-20230108t135316-046693-0598d3-005.xml"
IW2_2022 = "s1a-iw2-slc-vv-20221016t015044-20221016t015109-045461-056fc0-005.xml"
EW1_2021 = "s1a-ew1-slc-hh-20210403t122536-20210403t122628-037286-046484-001.xml"
SCENES = {
    IW2_2023: "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76",
    IW2_2022: "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681",
    EW1_2021: "S1A_EW_SLC__1SDH_20210403T122536_20210403T122630_037286_046484_8152",
}
TAGS = {
    IW2_2023: {"orbitDirection": "DESCENDING", "relativeOrbit": "71"},
    IW2_2022: {"orbitDirection": "ASCENDING", "relativeOrbit": "64"},
    EW1_2021: {"orbitDirection": "DESCENDING", "relativeOrbit": "114"},
}

_TIME = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?")
_ABSOLUTE = re.compile(rb'<burstId absolute="\d+">')
_ORBIT = re.compile(rb"<absoluteOrbitNumber>(\d+)</absoluteOrbitNumber>")


def shift_annotation(data: bytes, cycles: int) -> bytes:
    """The annotation as acquired `cycles` × 12 days later: times shifted, absolute orbit + 175 × cycles."""
    delta = timedelta(days=12 * cycles)

    def move(match: re.Match[bytes]) -> bytes:
        value = datetime.fromisoformat(match.group(1).decode()) + delta
        return value.strftime("%Y-%m-%dT%H:%M:%S").encode() + (match.group(2) or b"")

    data = _TIME.sub(move, data)
    # The relative burstId names a place and stays; the absolute id of a derived product is not known
    # from the annotation alone, so its attribute is dropped (the computed one is then used).
    data = _ABSOLUTE.sub(b"<burstId>", data)
    return _ORBIT.sub(lambda m: b"<absoluteOrbitNumber>%d</absoluteOrbitNumber>" % (int(m.group(1)) + 175 * cycles),
                      data)


def shift_name(name: str, cycles: int) -> str:
    """A product or annotation name moved by `cycles` repeat cycles (dates, absolute orbit)."""
    delta = timedelta(days=12 * cycles)

    def move_date(match: re.Match[str]) -> str:
        raw = match.group(0)
        upper = raw.upper()
        value = datetime.strptime(upper, "%Y%m%dT%H%M%S") + delta
        out = value.strftime("%Y%m%dT%H%M%S")
        return out if raw == upper else out.lower()

    name = re.sub(r"\d{8}[Tt]\d{6}", move_date, name)
    return re.sub(r"(?<=[_-])(\d{6})(?=[_-])", lambda m: f"{int(m.group(1)) + 175 * cycles:06d}", name)


@dataclass
class Product:
    """A product the fake knows: its SAFE name, catalogue uuid, annotation files (name → bytes)."""

    scene_id: str
    uuid: str
    annotations: dict[str, bytes]
    date: datetime
    tags: dict[str, str] = field(default_factory=dict)


def make_product(testdata: Path, fixture: str, cycles: int = 0, uuid: str | None = None) -> Product:
    """A product built from one real annotation fixture, moved by `cycles` × 12 days."""
    data = (testdata / "s1" / fixture).read_bytes()
    scene_id = shift_name(SCENES[fixture], cycles)
    name = shift_name(fixture, cycles)
    if cycles:
        data = shift_annotation(data, cycles)
    date = datetime.strptime(scene_id[17:32], "%Y%m%dT%H%M%S")
    tags = dict(TAGS[fixture])
    tags["orbit"] = str(int(scene_id[49:55]))
    return Product(scene_id, uuid or f"00000000-0000-4000-8000-{abs(hash(scene_id)) % 10**12:012d}",
                   {name: data}, date, tags)


def product_scene(product: Product, aoi: str = "test", wkt: str | None = None):
    """The `Scene` a catalogue search would give for the product."""
    from datetime import UTC

    from ingester.scenes import Scene

    return Scene(
        source_id=product.scene_id, aoi=aoi, date=product.date.replace(tzinfo=UTC),
        wkt=wkt or "POLYGON ((-119 33, -116 33, -116 35.5, -119 35.5, -119 33))",
        tags={"constellation": "SENTINEL1", "productType": "SLC", **product.tags, "uuid": product.uuid},
        graph_name="S1Preprocessing", is_retriable=True, metadata={"uuid": product.uuid},
    )


class FakeCdseNodes:
    """Threaded HTTP server on 127.0.0.1: the Nodes API plus a token endpoint. Use as a context manager."""

    def __init__(self, products: list[Product] = (), *, require_auth: bool = True,
                 username: str = "user@example.com", password: str = "secret"):
        self.products = {p.uuid: p for p in products}
        self.require_auth = require_auth
        self.username, self.password = username, password
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.fail_next: list[int] = []  # statuses to answer before serving normally
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/odata/v1"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def add(self, product: Product) -> None:
        self.products[product.uuid] = product

    def value_requests(self) -> list[str]:
        return [p for m, p, _h in self.requests if p.endswith("/$value")]

    def __enter__(self) -> FakeCdseNodes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self
        listing = re.compile(r"^/odata/v1/Products\(([^)]+)\)/Nodes\(([^)]+)\.SAFE\)/Nodes\(annotation\)/Nodes$")
        value = re.compile(
            r"^/odata/v1/Products\(([^)]+)\)/Nodes\(([^)]+)\.SAFE\)/Nodes\(annotation\)/Nodes\(([^)]+)\)/\$value$")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._send(status, json.dumps({"detail": message}).encode())

            def _record(self) -> str:
                path = unquote(self.path.split("?", 1)[0])
                with fake._lock:
                    fake.requests.append((self.command, path, dict(self.headers)))
                    failure = fake.fail_next.pop(0) if fake.fail_next else None
                if failure:
                    self._error(failure, "Service temporarily unavailable")
                    return ""
                return path

            def do_POST(self) -> None:  # noqa: N802
                path = self._record()
                if not path:
                    return
                if path != "/token":
                    return self._error(404, "not found")
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if form.get("grant_type") == "password" and (form.get("username"), form.get("password")) != (
                        fake.username, fake.password):
                    return self._send(401, json.dumps({"error": "invalid_grant",
                                                       "error_description": "Invalid user credentials"}).encode())
                token = f"token-{len(fake.tokens) + 1}"
                fake.tokens.add(token)
                body = {"access_token": token, "expires_in": 600, "refresh_token": f"refresh-{token}",
                        "refresh_expires_in": 3600, "token_type": "Bearer"}
                self._send(200, json.dumps(body).encode())

            def do_GET(self) -> None:  # noqa: N802
                path = self._record()
                if not path:
                    return
                m = listing.match(path)
                if m:
                    product = fake.products.get(m.group(1))
                    if product is None or product.scene_id != m.group(2):
                        return self._error(404, f"Product {m.group(1)} not found")
                    base = f"{fake.url}/Products({product.uuid})/Nodes({product.scene_id}.SAFE)/Nodes(annotation)"
                    entries = [{"Id": "calibration", "Name": "calibration", "ContentLength": 0, "ChildrenNumber": 6,
                                "Nodes": {"uri": f"{base}/Nodes(calibration)/Nodes"}},
                               {"Id": "rfi", "Name": "rfi", "ContentLength": 0, "ChildrenNumber": 3,
                                "Nodes": {"uri": f"{base}/Nodes(rfi)/Nodes"}}]
                    for name, data in sorted(product.annotations.items()):
                        entries.append({"Id": name, "Name": name, "ContentLength": len(data), "ChildrenNumber": 0,
                                        "Nodes": {"uri": f"{base}/Nodes({name})/Nodes"}})
                    return self._send(200, json.dumps({"result": entries}).encode())
                m = value.match(path)
                if m:
                    auth = self.headers.get("Authorization", "")
                    if fake.require_auth and (not auth.startswith("Bearer ") or auth[7:] not in fake.tokens):
                        return self._error(401, "Expired signature or invalid token")
                    product = fake.products.get(m.group(1))
                    if product is None or m.group(3) not in product.annotations:
                        return self._error(404, "Node not found")
                    return self._send(200, product.annotations[m.group(3)], "application/octet-stream")
                self._error(404, "not found")

        return Handler


def write_safe(root, scene_id: str, annotations: dict[str, bytes]):
    safe = root / f"{scene_id}.SAFE"
    (safe / "annotation" / "calibration").mkdir(parents=True)
    (safe / "annotation" / "rfi").mkdir()
    (safe / "manifest.safe").write_text("<manifest/>")
    for name, data in annotations.items():
        (safe / "annotation" / name).write_bytes(data)
        (safe / "annotation" / "calibration" / f"calibration-{name}").write_text("<calibration/>")
        (safe / "annotation" / "rfi" / f"rfi-{name}").write_text("<rfi/>")
    return safe


def write_zip(path, scene_id: str, annotations: dict[str, bytes], padding: int = 0):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{scene_id}.SAFE/manifest.safe", "<manifest/>")
        if padding:  # an incompressible "measurement" that a ranged reader must not fetch
            archive.writestr(f"{scene_id}.SAFE/measurement/s1a-iw2-slc-vv.tiff", os.urandom(padding),
                             compress_type=zipfile.ZIP_STORED)
        for name, data in annotations.items():
            archive.writestr(f"{scene_id}.SAFE/annotation/{name}", data)
            archive.writestr(f"{scene_id}.SAFE/annotation/calibration/calibration-{name}", "<calibration/>")
    return path
