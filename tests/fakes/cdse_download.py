"""A fake CDSE token + download service on 127.0.0.1 that speaks the real protocol
(docs/providers.md, "CDSE", "Tokens").

- `POST /token` (Keycloak, form-encoded): `grant_type=password` (username, password, client_id
  cdse-public) or `grant_type=refresh_token`; answers access_token, expires_in, refresh_token,
  refresh_expires_in; 401 `{"error": "invalid_grant", ...}` on bad credentials.
- `GET /odata/v1/Products(<uuid>)/$value` with `Authorization: Bearer <token>`: the zip, `Range`
  requests answered 206 + Content-Range; 401 for a missing, unknown or revoked token; 404 for an
  unknown product; 429 + Retry-After beyond `quota` concurrent downloads (4, as for general users).
- `GET /odata/v1/Products(<uuid>)` (no token needed): the catalogue's entry of the product (Id, Name,
  ContentLength, Online, Checksum), 404 for an unknown one.

Offline products (`offline`): the catalogue says `Online: false` and a download is refused; as CDSE
documents it, only an order through the Data Workspace brings such a product back online (a download
request does not), which a test plays by removing the id from `offline`. `refuse_offline` refuses the
download as offline while the catalogue still says online (the two hosts disagree for a while).

Two instances make the two hosts: a "catalogue" one redirects `$value` (301) to the "zipper" one,
as the real catalogue does; `redirect_to` can also point at a foreign host. Knobs for failures: drop
the connection after N bytes, corrupt the body, answer 429 with Retry-After, answer 401 once.
Counters: logins, refreshes, every grant asked for (`grants`: grant type and whether it was
granted), requests, max concurrent downloads, Authorization headers seen. `change_password_after = N`:
the account's password changes once N downloads have finished (sessions end: tokens revoked).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_VALUE = re.compile(r"^/odata/v1/Products\(([0-9a-fA-F-]+)\)/\$value$")
_ENTITY = re.compile(r"^/odata/v1/Products\(([0-9a-fA-F-]+)\)$")


class FakeCdse:
    def __init__(self, host: str = "127.0.0.1", *, username: str = "alice@example.com",
                 password: str = "s3cret-Pa55", quota: int = 4, expires_in: int = 600,
                 refresh_expires_in: int = 3600, chunk: int = 64 * 1024, delay: float = 0.0):
        self.host = host
        self.username = username
        self.password = password
        self.quota = quota
        self.expires_in = expires_in
        self.refresh_expires_in = refresh_expires_in
        self.chunk = chunk
        self.delay = delay  # seconds per chunk: slow streams make downloads overlap
        self.products: dict[str, bytes] = {}
        self.redirect_to: str | None = None  # base URL (scheme://host:port) to redirect $value to
        self.lock = threading.Lock()
        self.tokens: dict[str, bool] = {}  # access token -> valid
        self.refresh_tokens: set[str] = set()
        self.logins = 0
        self.refreshes = 0
        self.grants: list[tuple[str, bool]] = []  # (grant_type, granted), in order
        self.change_password_after: int | None = None
        self.finished = 0  # downloads served to the end
        self.requests: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.rejected_quota = 0
        self.drop_after: list[int] = []  # per download, in order: bytes sent before closing
        self.bytes_sent = 0  # bytes of product bodies handed to the sockets so far
        self.corrupt_next = 0  # number of downloads whose body gets one flipped byte
        self.throttle_next: list[int] = []  # Retry-After values for the next answers (429)
        self.unauthorized_next = 0  # answer 401 to the next N authorised downloads
        self.ignore_range = False  # answer 200 with the whole body to Range requests
        self.fail_next: list[int] = []  # statuses (e.g. 503) for the next authorised downloads
        self.fail_after_drop: list[int] = []  # becomes fail_next when a connection is dropped
        self.revoke_on_drop = False  # the access token expires when a connection is dropped
        self.offline: set[str] = set()
        self.refuse_offline: set[str] = set()
        self.names: dict[str, str] = {}  # product id → Name (default: "<id>.SAFE")
        self.entities_from: FakeCdse | None = None  # a catalogue host answering about another fake's products
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeCdse:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    @property
    def odata(self) -> str:
        return f"{self.base}/odata/v1"

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    def add_product(self, data: bytes, product_id: str | None = None) -> str:
        product_id = product_id or str(uuidlib.uuid4())
        self.products[product_id] = data
        return product_id

    def entity(self, product_id: str) -> dict[str, Any] | None:
        """The catalogue entry of a product, as `GET Products(<id>)` answers it."""
        from tests.fakes.products import checksums

        source = self.entities_from or self
        data = source.products.get(product_id)
        if data is None:
            return None
        return {"@odata.context": "$metadata#Products/$entity", "@odata.mediaContentType": "application/octet-stream",
                "Id": product_id, "Name": source.names.get(product_id, f"{product_id}.SAFE"),
                "ContentType": "application/octet-stream", "ContentLength": len(data),
                "Online": product_id not in source.offline, "EvictionDate": "9999-12-31T23:59:59.999999Z",
                "Checksum": checksums(data), "S3Path": f"/eodata/fake/{product_id}"}

    def revoke_tokens(self) -> None:
        """Access tokens expire on the server side (the client still believes them valid)."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = False

    def issued_tokens(self) -> list[str]:
        return list(self.tokens) + list(self.refresh_tokens)

    # --- handler -----------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                fake.requests.append({"method": "POST", "path": self.path, "host": self.headers.get("Host"),
                                      "authorization": self.headers.get("Authorization")})
                if self.path != "/token":
                    return self._send(404, b'{"detail": "not found"}')
                if form.get("client_id") != "cdse-public":
                    return self._send(401, b'{"error": "unauthorized_client"}')
                grant = form.get("grant_type")
                with fake.lock:
                    if grant == "password":
                        if form.get("username") != fake.username or form.get("password") != fake.password:
                            fake.grants.append((grant, False))
                            return self._send(401, b'{"error": "invalid_grant", '
                                                   b'"error_description": "Invalid user credentials"}')
                        fake.logins += 1
                    elif grant == "refresh_token":
                        if form.get("refresh_token") not in fake.refresh_tokens:
                            fake.grants.append((grant, False))
                            return self._send(400, b'{"error": "invalid_grant", '
                                                   b'"error_description": "Token is not active"}')
                        fake.refreshes += 1
                    else:
                        return self._send(400, b'{"error": "unsupported_grant_type"}')
                    fake.grants.append((str(grant), True))
                    access = "acc-" + uuidlib.uuid4().hex
                    refresh = "ref-" + uuidlib.uuid4().hex
                    fake.tokens[access] = True
                    fake.refresh_tokens.add(refresh)
                body = (f'{{"access_token": "{access}", "expires_in": {fake.expires_in}, '
                        f'"refresh_expires_in": {fake.refresh_expires_in}, "refresh_token": "{refresh}", '
                        f'"token_type": "Bearer", "not-before-policy": 0, "scope": "AUDIENCE_PUBLIC"}}')
                self._send(200, body.encode())

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                fake.requests.append({"method": "GET", "path": self.path, "host": self.headers.get("Host"),
                                      "authorization": auth, "range": self.headers.get("Range")})
                entity = _ENTITY.match(self.path.split("?", 1)[0])
                if entity:
                    import json

                    found = fake.entity(entity.group(1))
                    if found is None:
                        return self._send(404, b'{"detail": {"message": "Product not found"}}')
                    return self._send(200, json.dumps(found).encode())
                match = _VALUE.match(self.path)
                if not match:
                    return self._send(404, b'{"detail": "Not found"}')
                if fake.redirect_to:
                    return self._send(301, b"", {"Location": fake.redirect_to + self.path})
                token = auth[7:] if auth and auth.startswith("Bearer ") else None
                with fake.lock:
                    valid = bool(token) and fake.tokens.get(token, False)
                    if valid and fake.unauthorized_next:
                        fake.unauthorized_next -= 1
                        valid = False
                if not valid:
                    return self._send(401, b'{"detail": "Expired signature!"}' if token else
                                      b'{"detail": "Not authenticated"}')
                product_id = match.group(1)
                if product_id not in fake.products:
                    return self._send(404, b'{"detail": {"message": "Product not found"}}')
                if product_id in fake.offline or product_id in fake.refuse_offline:
                    return self._send(422, b'{"detail": {"message": "Product is offline: it is not online '
                                           b'and must be ordered first"}}')
                with fake.lock:
                    if fake.fail_next:
                        status = fake.fail_next.pop(0)
                        return self._send(status, b'{"detail": "Service Unavailable"}')
                    if fake.throttle_next:
                        wait = fake.throttle_next.pop(0)
                        return self._send(429, b'{"detail": "Too Many Requests"}', {"Retry-After": str(wait)})
                    if fake.active >= fake.quota:
                        fake.rejected_quota += 1
                        return self._send(429, b'{"detail": "Max number of concurrent connections (4) '
                                               b'reached"}', {"Retry-After": "1"})
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                    drop = fake.drop_after.pop(0) if fake.drop_after else None
                    corrupt = fake.corrupt_next > 0
                    fake.corrupt_next -= 1 if corrupt else 0
                self.counted = True
                try:
                    self._serve(fake.products[product_id], drop, corrupt)
                finally:
                    self._uncount()

            def _uncount(self) -> None:
                """A download stops counting when its last block is handed to the socket (the client may
                read it and start the next download before this thread runs again)."""
                if getattr(self, "counted", False):
                    self.counted = False
                    with fake.lock:
                        fake.active -= 1

            def _serve(self, data: bytes, drop: int | None, corrupt: bool) -> None:
                if corrupt:
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                start = 0
                rng = self.headers.get("Range")
                status = 200
                if rng and not fake.ignore_range:
                    m = re.match(r"bytes=(\d+)-$", rng)
                    if not m:
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    start = int(m.group(1))
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                sent = 0
                pos = start
                while pos < len(data):
                    block = data[pos:pos + fake.chunk]
                    if drop is not None and sent + len(block) > drop:
                        self.wfile.write(block[: max(0, drop - sent)])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        if fake.revoke_on_drop:
                            fake.revoke_tokens()
                        with fake.lock:
                            fake.fail_next, fake.fail_after_drop = fake.fail_after_drop, []
                        return
                    if pos + len(block) >= len(data):
                        self._uncount()
                    self.wfile.write(block)
                    sent += len(block)
                    pos += len(block)
                    with fake.lock:
                        fake.bytes_sent += len(block)
                    if fake.delay:
                        time.sleep(fake.delay)
                with fake.lock:
                    fake.finished += 1
                    if fake.change_password_after is not None and fake.finished >= fake.change_password_after:
                        fake.change_password_after = None
                        fake.password += "-changed"
                        fake.refresh_tokens.clear()
                        for token in fake.tokens:
                            fake.tokens[token] = False

        return Handler
