"""HTTP layer: one `requests.Session` per remote service, with timeouts, retries on 429/5xx that
honour `Retry-After`, clear errors carrying the server's message, a per-service concurrency cap and
an OAuth2 token manager (password grant once, refresh-token grant before expiry).
"""

from __future__ import annotations

import email.utils
import http.client
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import urlparse

import requests

from ingester import __version__
from ingester.config import redact_url
from ingester.errors import AuthError, CredentialsRefused, HTTPError, RateLimited, Unavailable

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"ingester/{__version__}"
MAX_RETRY_AFTER = 300.0


def retry_after_seconds(response: requests.Response | None, default: float) -> float:
    """Seconds to wait from a `Retry-After` header (seconds or HTTP date), else `default`."""
    if response is None:
        return default
    value = response.headers.get("Retry-After")
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


def server_message(response: requests.Response) -> str:
    """The most useful text of an error answer: OData/OAuth error fields, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip().replace("\n", " ")
        return text[:300]
    if isinstance(body, dict):
        for key in ("detail", "error_description", "message", "error", "Message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("Message") or value.get("ErrorMessage") or value
            elif isinstance(value, list) and value and isinstance(value[0], dict) and "msg" in value[0]:
                # validation errors: [{"loc": ["query", "$skip"], "msg": "Input should be …"}, …]
                value = "; ".join(
                    f"{'.'.join(str(p) for p in v.get('loc', [])[1:]) or 'request'}: {v.get('msg')}" for v in value
                )
            if value:
                return str(value)[:300]
    return str(body)[:300]


class TokenHolder(Protocol):
    """What a `Service` needs of a token: the current bearer token, and a way to say it was refused."""

    def access_token(self) -> str: ...

    def invalidate(self) -> None: ...


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the port made explicit; None when it has none."""
    try:
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        host = (parsed.hostname or "").lower()
        port = parsed.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return None
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


class NoNetrcAuth:
    """Session auth that adds nothing. Without it, `requests` replaces our bearer header with Basic
    auth from a ~/.netrc entry for the host (sending the password where only a token should go)."""

    def __call__(self, request):
        return request


class Service:
    """A remote service: base URL, session, retry policy, concurrency cap, optional token."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_concurrency: int | None = None,
        token: TokenHolder | None = None,
        trusted_hosts: Iterable[str] = (),
        trusted_domains: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.token = token
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.auth = NoNetrcAuth()  # credentials come from settings/netrc explicitly, never implicitly
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        origins = {origin(self.base_url)}
        origins.update(origin(h if "://" in h else f"https://{h}") for h in trusted_hosts)
        self.trusted_origins = {o for o in origins if o is not None}
        self.trusted_domains = {d.lower().strip(".") for d in trusted_domains if d.strip(".")}
        self.requests_sent = 0

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def is_trusted(self, url: str) -> bool:
        """Whether credentials may be sent to this URL. Trust is an origin, (scheme, host, port), never a
        host alone: another port of the same host is another server (anyone may listen there), and
        plain http would show the token to the network. Trusted: the base URL's origin, the origins of
        `trusted_hosts` (a bare host name means https on port 443), and https on port 443 of a host
        under one of `trusted_domains` (e.g. dataspace.copernicus.eu for CDSE's catalogue, zipper
        and download hosts). Sharing a parent domain is not enough: a bucket on s3.amazonaws.com must
        not receive the token meant for another bucket there."""
        target = origin(url)
        if target is None:
            return False
        if target in self.trusted_origins:
            return True
        scheme, host, port = target
        return scheme == "https" and port == 443 and any(host == d or host.endswith("." + d)
                                                         for d in self.trusted_domains)

    def request(self, method: str, path: str, *, auth: bool = False, stream: bool = False,
                ok_statuses: Iterable[int] = (), **kwargs: Any) -> requests.Response:
        """Send a request; retry 429/5xx/connection errors with backoff; raise HTTPError on failure.

        With `auth`, the bearer token is sent, re-attached on redirects to the service's own origins
        only, and a 401 refreshes the token once. Statuses in `ok_statuses` are returned as is.
        """
        url = self.url(path)
        kwargs.setdefault("timeout", self.timeout)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            response: requests.Response | None = None
            try:
                if self._slots:
                    self._slots.acquire()
                try:
                    response = self._send(method, url, auth=auth, stream=stream, **kwargs)
                finally:
                    if self._slots:
                        self._slots.release()
            except requests.RequestException as exc:
                if attempt > self.retries:
                    raise HTTPError(f"{self.name}: {method} {_short(url)}: no response after {attempt} requests "
                                    f"({connection_reason(exc)})", None, url) from None
                self.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            status = response.status_code
            if status < 400 or status in ok_statuses:
                return response
            if status == 401 and auth and self.token and not refreshed:
                refreshed = True
                self.token.invalidate()
                continue
            if status in RETRY_STATUSES and attempt <= self.retries:
                wait = retry_after_seconds(response, self.backoff * 2 ** (attempt - 1))
                response.close()
                self.sleep(wait)
                continue
            message = server_message(response)
            response.close()
            tries = f" after {attempt} requests" if attempt > 1 else ""
            raise HTTPError(f"{self.name}: {method} {_short(url)} answered {status}{tries}: {message}", status, url)

    def _send(self, method: str, url: str, *, auth: bool, stream: bool, **kwargs: Any) -> requests.Response:
        """One request, following redirects by hand so that the token goes to trusted hosts only."""
        headers = dict(kwargs.pop("headers", None) or {})
        for _ in range(10):
            hdrs = dict(headers)
            if auth and self.token and self.is_trusted(url):
                hdrs["Authorization"] = f"Bearer {self.token.access_token()}"
            self.requests_sent += 1
            response = self.session.request(method, url, headers=hdrs, stream=stream,
                                            allow_redirects=False, **kwargs)
            if response.is_redirect and response.headers.get("Location"):
                location = requests.compat.urljoin(url, response.headers["Location"])
                response.close()
                url = location
                if response.status_code == 303:
                    method = "GET"
                continue
            return response
        raise HTTPError(f"{self.name}: too many redirects from {_short(url)}", None, url)

    def get_json(self, path: str, params: Any = None, **kwargs: Any) -> Any:
        response = self.request("GET", path, params=params, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HTTPError(f"{self.name}: GET {_short(response.url)}: answer is not JSON "
                            f"({response.text[:120]!r})", response.status_code, response.url) from None


_CONNECTION_PREFIX = re.compile(r"^(\w+\(host=[^)]*\)|<[^>]*>): ")


def connection_reason(exc: BaseException) -> str:
    """`Type: reason` of a connection failure, without the URL and pool details requests repeats
    (`HTTPConnectionPool(host=…, port=…): Max retries exceeded with url: … (Caused by …)`)."""
    reason: BaseException = exc
    seen = 0
    while seen < 5:  # requests → urllib3 MaxRetryError → the underlying error
        seen += 1
        inner = getattr(reason, "reason", None)
        if isinstance(inner, BaseException):
            reason = inner
            continue
        args = getattr(reason, "args", ())
        if args and isinstance(args[0], BaseException):
            reason = args[0]
            continue
        break
    text = str(reason)
    # urllib3 prefixes the connection: "HTTPConnectionPool(host=…, port=…): …", "<…HTTPConnection object
    # at 0x…>: …", "HTTPConnection(host=…, port=…): …"
    text = _CONNECTION_PREFIX.sub("", text)
    text = text.strip() or type(reason).__name__
    names = dict.fromkeys((type(exc).__name__, type(reason).__name__))
    return f"{': '.join(names)}: {text[:200]}"


def _short(url: str, limit: int = 160) -> str:
    """A URL fit for a message: no password from its user-info part, cut after `limit` characters."""
    url = redact_url(url)
    return url if len(url) <= limit else url[:limit] + "…"


class StaticToken:
    """A bearer token given by the user (e.g. Earthdata, valid 60 days): what `Service` needs of a
    token manager, without refresh."""

    def __init__(self, token: str):
        self._token = token

    def __repr__(self) -> str:  # never show secrets
        return "StaticToken(***)"

    def access_token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        """Nothing to refresh: a refused token fails with the server's message."""


class TokenManager:
    """OAuth2 tokens for one account, shared by every job of a run (thread-safe).

    Logs in with the password grant once, refreshes with the refresh token shortly before the access
    token expires (a minute before, or a quarter of the token's lifetime when that is shorter), and logs
    in again only when the refresh fails or the refresh token has expired. When the server refuses the
    password grant itself (400/401: wrong password, disabled account) the refusal is kept: every later
    call raises the same `CredentialsRefused` without a request (retrying a wrong password per job
    would lock the account).
    """

    def __init__(self, token_url: str, username: str, password: str, client_id: str = "cdse-public",
                 *, margin: float = 60.0, timeout: float = 30.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.token_url = token_url
        self.client_id = client_id
        self._username = username
        self._password = password
        self.margin = margin
        self.timeout = timeout
        self.session = session or requests.Session()
        if session is None:
            self.session.auth = NoNetrcAuth()
        self.clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_expiry = 0.0
        self._refresh: str | None = None
        self._refresh_expiry = 0.0
        self._access_margin = margin
        self._refresh_margin = margin
        self._refused: CredentialsRefused | None = None
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:  # never show secrets
        return f"TokenManager({self.token_url!r}, user={self._username!r})"

    def invalidate(self) -> None:
        with self._lock:
            self._access_expiry = 0.0

    def access_token(self) -> str:
        return self.current()[0]

    def current(self) -> tuple[str, float]:
        """(access token, its expiry in epoch seconds), refreshed or logged in as needed."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            now = self.clock()
            if not (self._access and now < self._access_expiry - self._access_margin):
                self._renew(now)
            return self._access or "", time.time() + (self._access_expiry - self.clock())

    def _renew(self, now: float) -> None:
        if self._refresh and now < self._refresh_expiry - self._refresh_margin:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                self.refreshes += 1
                return
            except AuthError:
                self._refresh = None
        try:
            self._grant({"grant_type": "password", "username": self._username, "password": self._password})
        except CredentialsRefused as exc:
            self._refused = exc
            raise
        self.logins += 1

    def _grant(self, form: dict[str, str]) -> None:
        """One token request. 400/401 (bad credentials, expired refresh token) raise AuthError; no
        answer, 408/5xx raise Unavailable and 429 RateLimited (they may pass: the job is retried)."""
        form = {**form, "client_id": self.client_id}
        where = f"token endpoint {_short(self.token_url)}"
        try:
            # never follow a redirect: a 307/308 would post the user name and password to its target
            response = self.session.post(self.token_url, data=form, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise Unavailable(f"{where}: no response ({connection_reason(exc)})") from None
        status = response.status_code
        if response.is_redirect:
            target = _short(requests.compat.urljoin(self.token_url, response.headers.get("Location", "")))
            response.close()
            raise AuthError(f"{where} answered a redirect ({status} to {target}); credentials are never sent "
                            "to a redirect target: set the token URL to the endpoint itself")
        if status != 200:
            detail = f"{status}: {server_message(response)}"
            wait = retry_after_seconds(response, 0.0)
            response.close()
            if status == 429:
                limited = RateLimited(f"{where}: too many requests ({detail})")
                limited.retry_after = wait or None  # type: ignore[attr-defined]
                raise limited
            if status == 408 or status >= 500:
                raise Unavailable(f"{where}: unavailable ({detail})")
            if form["grant_type"] == "password" and status in (400, 401):
                raise CredentialsRefused(f"{where} refused the account {self._username!r} ({detail}); no further "
                                         "login is tried in this run (repeated failed logins can lock the account): "
                                         "check INGESTER_CDSE_USERNAME/INGESTER_CDSE_PASSWORD or ~/.netrc")
            raise AuthError(f"{where} refused the {form['grant_type']} grant ({detail})")
        try:
            body = response.json()
            access = body["access_token"]
            if not isinstance(access, str) or not access:
                raise TypeError
            expires = float(body.get("expires_in", 600))
            refresh_expires = float(body.get("refresh_expires_in", 3600))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(f"{where}: the {form['grant_type']} grant answered 200 without a usable token "
                            f"(expected JSON with an access_token; got {response.headers.get('Content-Type') or 'no'} "
                            "content)") from None
        now = self.clock()
        self._access = access
        self._access_expiry = now + expires
        self._access_margin = min(self.margin, expires / 4)
        if body.get("refresh_token"):
            self._refresh = body["refresh_token"]
            self._refresh_expiry = now + refresh_expires
            self._refresh_margin = min(self.margin, refresh_expires / 4)


_managers: dict[tuple[str, str], TokenManager] = {}
_managers_lock = threading.Lock()


def shared_token_manager(token_url: str, username: str, password: str, *, client_id: str = "cdse-public",
                         timeout: float = 30.0) -> TokenManager:
    """The process's one token manager for an account at a token endpoint (created on first use), so
    that every user of a service (downloads, annotation Nodes, …) logs in once per process."""
    key = (token_url, username)
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None or manager._password != password or manager.client_id != client_id:
            manager = TokenManager(token_url, username, password, client_id, timeout=timeout)
            _managers[key] = manager
        return manager


def forget_token_managers() -> None:
    """Drop the process's shared token managers (tests; a new run in the same process)."""
    with _managers_lock:
        _managers.clear()


_services: dict[tuple, Service] = {}
_services_lock = threading.Lock()


def shared_service(key: tuple, make: Callable[[], Service]) -> Service:
    """The process's one `Service` for `key` (built by `make` on first use): one session and one
    connection pool per remote service and configuration, shared by every job of the process."""
    with _services_lock:
        service = _services.get(key)
        if service is None:
            service = _services[key] = make()
        return service


def forget_services() -> None:
    """Close and drop the process's shared services (tests; a new run in the same process)."""
    with _services_lock:
        for service in _services.values():
            service.session.close()
        _services.clear()


# --- transfers: streamed to `<name>.part`, resumed with Range, verified, then moved into place ----

_CHUNK = 4 * 1024 * 1024


class Expected:
    """What a downloaded file must match: size and/or checksums (hex digests, lower case)."""

    __slots__ = ("size", "md5", "blake3")

    def __init__(self, size: int | None = None, md5: str | None = None, blake3: str | None = None):
        self.size = size
        self.md5 = md5.lower() if md5 else None
        self.blake3 = blake3.lower() if blake3 else None

    def __repr__(self) -> str:
        return f"Expected(size={self.size}, md5={self.md5}, blake3={self.blake3})"

    @property
    def algorithm(self) -> str:
        """The checksum to compute while streaming: the published one (BLAKE3 is faster), else BLAKE3."""
        if self.blake3 or not self.md5:
            return "blake3"
        return "md5"

    @property
    def digest(self) -> str | None:
        return self.blake3 if self.algorithm == "blake3" else self.md5


class Verified:
    """A verified file: where it is, its size, and the digest computed while streaming."""

    __slots__ = ("path", "size", "algorithm", "digest", "checked")

    def __init__(self, path: str, size: int, algorithm: str, digest: str, checked: str):
        self.path = path
        self.size = size
        self.algorithm = algorithm
        self.digest = digest
        self.checked = checked  # "blake3", "md5", "size" or "none": what was compared to the catalogue

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "algorithm": self.algorithm, "digest": self.digest, "checked": self.checked}


def new_hasher(algorithm: str):
    if algorithm == "blake3":
        from blake3 import blake3

        return blake3(max_threads=1)
    import hashlib

    return hashlib.new(algorithm)


def hash_file(path: str, algorithm: str, hasher: Any = None, limit: int | None = None) -> Any:
    """Feed a file (or its first `limit` bytes) to a hasher; returns the hasher."""
    hasher = hasher or new_hasher(algorithm)
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    return hasher


def check(size: int, algorithm: str, digest: str, expected: Expected, announced: int | None,
          name: str) -> str:
    """Compare what was received with what the catalogue (or the server) announced; returns what was
    checked, raises DownloadError on a mismatch."""
    from ingester.errors import DownloadError

    want_size = expected.size if expected.size is not None else announced
    if want_size is not None and size != want_size:
        raise DownloadError(f"{name}: size mismatch: received {size} bytes, expected {want_size}")
    published = expected.digest
    if published is not None:
        if digest != published:
            raise DownloadError(f"{name}: {algorithm.upper()} checksum mismatch: got {digest}, expected {published}")
        return algorithm
    return "size" if want_size is not None else "none"


class TransferProgress:
    """Progress callbacks of a transfer (no-op); `ingester.providers.progress` draws rich bars."""

    def start(self, name: str, total: int | None, done: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def restart(self) -> None: ...

    def finish(self) -> None: ...


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) of a `Content-Range: bytes start-end/total` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def download(service: Service, url: str, dest: str, *, expected: Expected | None = None, auth: bool = False,
             progress: TransferProgress | None = None, max_resumes: int = 10, max_refetch: int = 2,
             chunk_size: int = _CHUNK, part: str | None = None) -> Verified:
    """Download `url` to `dest` through `<dest>.part`: bounded memory, resumed with `Range` after a
    dropped connection (206 + matching Content-Range, else restart from 0), verified against the
    published checksum or size (else the server's announced size), and renamed only when verified.

    A mismatch deletes the part and fetches again (at most `max_refetch` times) before raising
    DownloadError. HTTP errors surface as HTTPError from `Service.request`. `part` may name a
    partial file kept elsewhere (e.g. across job attempts); an existing one is resumed."""
    import os

    from ingester.errors import DownloadError

    expected = expected or Expected()
    progress = progress or TransferProgress()
    part = part or f"{dest}.part"
    name = os.path.basename(dest)
    last_error: DownloadError | None = None
    for _fetch in range(max_refetch + 1):
        try:
            size, digest, announced = _stream(service, url, part, expected, auth, progress, max_resumes, chunk_size)
            checked = check(size, expected.algorithm, digest, expected, announced, name)
        except DownloadError as exc:
            last_error = exc
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            progress.restart()
            continue
        _move(part, dest)
        progress.finish()
        return Verified(dest, size, expected.algorithm, digest, checked)
    raise DownloadError(f"{last_error} (after {max_refetch + 1} downloads)")


def _move(src: str, dest: str) -> None:
    import os
    import shutil

    try:
        os.replace(src, dest)
    except OSError:  # another file system: copy to a temporary name beside dest, then rename
        tmp = f"{dest}.moving"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        os.unlink(src)


def _stream(service: Service, url: str, part: str, expected: Expected, auth: bool, progress: TransferProgress,
            max_resumes: int, chunk_size: int) -> tuple[int, str, int | None]:
    """Fill `part` completely (resuming as needed); returns (size, hex digest, announced size)."""
    import os


    algorithm = expected.algorithm
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    hasher = _BackgroundHasher(hash_file(part, algorithm, limit=offset) if offset else new_hasher(algorithm))
    try:
        return _stream_into(service, url, part, expected, auth, progress, max_resumes, chunk_size, offset, hasher)
    finally:
        hasher.close()


def _stream_into(service: Service, url: str, part: str, expected: Expected, auth: bool,
                 progress: TransferProgress, max_resumes: int, chunk_size: int, offset: int,
                 hasher: _BackgroundHasher) -> tuple[int, str, int | None]:
    import os

    from ingester.errors import DownloadError

    algorithm = expected.algorithm
    announced: int | None = expected.size
    ring = _Ring(chunk_size, hasher.depth + 2)
    drops = 0
    started = False
    while True:
        if expected.size is not None and offset == expected.size and offset > 0:
            return offset, hasher.hexdigest(), announced
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = service.request("GET", url, auth=auth, stream=True, headers=headers, ok_statuses=(416,))
        try:
            if response.status_code == 416:  # nothing left to send: the part is complete (or wrong)
                cr = _content_range_start(response.headers.get("Content-Range", "").replace("bytes */", "bytes 0-0/"))
                total = cr[1] if cr else None
                if total is not None and total == offset:
                    return offset, hasher.hexdigest(), total
                offset = 0  # restart from scratch
                hasher.reset(new_hasher(algorithm))
                open(part, "wb").close()
                continue
            if response.status_code not in (200, 206):  # e.g. 202: accepted, product not ready yet
                raise HTTPError(f"{service.name}: GET {_short(url)} answered {response.status_code} instead of the "
                                f"file: {server_message(response)} (not available yet, being restored?)",
                                response.status_code, url)
            if offset and response.status_code == 206:
                cr = _content_range_start(response.headers.get("Content-Range"))
                if cr is None or cr[0] != offset:
                    raise DownloadError(f"{os.path.basename(part)}: server answered Range {offset}- with "
                                        f"Content-Range {response.headers.get('Content-Range')!r}")
                if cr[1] is not None:
                    announced = announced if expected.size is not None else cr[1]
                mode = "ab"
            else:  # 200: the whole body, from the start
                if offset:
                    offset = 0
                    hasher.reset(new_hasher(algorithm))
                    progress.restart()
                length = response.headers.get("Content-Length")
                if expected.size is None and length and length.isdigit() and "Content-Encoding" not in response.headers:
                    announced = int(length)
                mode = "wb"
            if not started:
                progress.start(os.path.basename(part)[:-5], announced, offset)
                started = True
            before = offset
            try:
                with open(part, mode, buffering=0) as out:  # unbuffered: each arrival is written at once
                    sink = _WriteThrough(out, hasher, ring)
                    try:
                        for n in _receive(response, sink):
                            offset += n
                            progress.advance(n)
                    finally:
                        sink.close()
            except (requests.RequestException, OSError, http.client.HTTPException, _urllib3_errors()) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
                    raise
                drops = drops + 1 if offset == before else 1
                if drops > max_resumes:  # no response: temporary; the part is kept for a later attempt
                    raise HTTPError(f"{service.name}: GET {_short(url)}: connection dropped {drops} time(s) in a "
                                    f"row at byte {offset} ({type(exc).__name__})", None, url) from None
                service.sleep(_resume_backoff(service, drops))
                continue
            if announced is not None and offset < announced:  # closed early without an error
                drops = drops + 1 if offset == before else 1
                if drops > max_resumes:
                    raise HTTPError(f"{service.name}: GET {_short(url)}: transfer stops at {offset} of {announced} "
                                    "bytes", None, url)
                service.sleep(_resume_backoff(service, drops))  # a server that closes at once must not be hammered
                continue
            return offset, hasher.hexdigest(), announced
        finally:
            response.close()


def _resume_backoff(service: Service, drops: int) -> float:
    """Seconds before the next request of a transfer that was cut `drops` times in a row without a byte
    (1 after progress): the HTTP layer's backoff (INGESTER_HTTP_BACKOFF), doubling, at most 30 s."""
    return min(service.backoff * 2 ** (drops - 1), 30.0)


class _Ring:
    """Reusable receive buffers: no allocation per chunk (a fresh process would otherwise map and
    unmap every 1 MiB block, which costs more than the transfer). With `depth + 2` buffers and a
    hasher queue of `depth`, a buffer is refilled only after the hasher has finished with it."""

    def __init__(self, size: int, count: int):
        self.views = [memoryview(bytearray(size)) for _ in range(count)]
        self.next = 0

    def take(self) -> memoryview:
        view = self.views[self.next % len(self.views)]
        self.next += 1
        return view


class _WriteThrough:
    """Where received bytes go: into the part file as soon as they arrive (one write per read from the
    socket, the file unbuffered), so that a `kill -9` loses only what the kernel had not handed over
    yet and a resume starts near where the transfer stopped; into the checksum a whole ring buffer at
    a time (a hand-off per buffer keeps the hasher thread's overhead low at loopback speed)."""

    def __init__(self, out: Any, hasher: _BackgroundHasher, ring: _Ring):
        self.out = out
        self.hasher = hasher
        self.ring = ring
        self.view = ring.take()
        self.filled = 0

    def free(self) -> memoryview:
        """The part of the current buffer that the next read fills."""
        return self.view[self.filled:]

    def add(self, n: int) -> None:
        """`n` bytes were read into `free()`: write them through, hash the buffer once full."""
        _write_all(self.out, self.view[self.filled:self.filled + n])
        self.filled += n
        if self.filled == len(self.view):
            self.hasher.update(self.view)
            self.view = self.ring.take()
            self.filled = 0

    def add_block(self, block: bytes) -> None:
        """A block read elsewhere (content-encoded or chunked bodies): written and hashed as it is."""
        _write_all(self.out, block)
        self.hasher.update(block)

    def close(self) -> None:
        """Hash what is written but not hashed yet (the transfer ended or was cut)."""
        if self.filled:
            self.hasher.update(self.view[:self.filled])
            self.view = self.ring.take()
            self.filled = 0


def _write_all(out: Any, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written:]


def _receive(response: requests.Response, sink: _WriteThrough) -> Iterator[int]:
    """Read the body as it arrives into `sink`; yields the byte count of each read.

    A plain body (Content-Length or read to the close, no transfer or content encoding) is read from
    http.client's socket file with `readinto1`: one system call, whatever has arrived, straight into
    the ring buffer (http.client's own `readinto` waits until the whole 4 MiB buffer is full, which
    on a slow link is minutes of data that a kill would lose). Other bodies go through urllib3's
    `read1`. An early close ends the iteration: the caller compares the count with the size."""
    fp = getattr(response.raw, "_fp", None)
    sock = getattr(fp, "fp", None)
    if (isinstance(fp, http.client.HTTPResponse) and not fp.chunked and sock is not None
            and hasattr(sock, "readinto1") and not response.headers.get("Content-Encoding")):
        while fp.length is None or fp.length > 0:
            room = sink.free()
            n = sock.readinto1(room if fp.length is None else room[:fp.length])
            if not n:
                return
            if fp.length is not None:
                fp.length -= n  # http.client's count of what is left, as its own readinto keeps it
            sink.add(n)
            yield n
        return
    read = response.raw.read1 if hasattr(response.raw, "read1") else response.raw.read
    while block := read(len(sink.free()) or _CHUNK):
        sink.add_block(block)
        yield len(block)


class _BackgroundHasher:
    """Hashes chunks on a second thread (hashlib and blake3 release the GIL on large buffers), so
    checksumming overlaps the network and disk I/O; a bounded queue keeps memory bounded."""

    def __init__(self, hasher: Any, depth: int = 4):
        import queue

        self.depth = depth
        self._hasher = hasher
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="download-hasher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            block = self._queue.get()
            try:
                if block is None:
                    return
                if self._error is None:  # after a failure, drain the queue so that put() never blocks
                    self._hasher.update(block)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the streaming thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"checksum thread failed: {type(self._error).__name__}: {self._error}") \
                from self._error

    def update(self, block: bytes | memoryview) -> None:
        self._raise()
        self._queue.put(block)

    def reset(self, hasher: Any) -> None:
        self._queue.join()
        self._raise()
        self._hasher = hasher

    def hexdigest(self) -> str:
        self._queue.join()
        self._raise()
        return self._hasher.hexdigest()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _urllib3_errors() -> type[Exception] | tuple[type[Exception], ...]:
    from urllib3.exceptions import HTTPError as Urllib3Error

    return Urllib3Error
