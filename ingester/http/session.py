"""One remote service: a `requests.Session` built once (User-Agent, no implicit ~/.netrc, a connection
pool sized to the service's concurrency), a timeout on every call, retries of 429/5xx and dropped
connections that honour `Retry-After`, a per-service concurrency cap, and a bearer token sent only to
the service's own origins, also across redirects (followed here, not by `requests`).

Retries live in `Service.request`, not in urllib3's `Retry` mounted on the adapter (the adapter is
mounted with retries off): between two tries the token may have to be renewed (a 401), every redirect
target is checked again before the token is attached, and the waits and the number of requests appear
in the error messages (and are observable in tests through `sleep`).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter

from ingester import __version__
from ingester.errors import HTTPError
from ingester.http.messages import connection_reason, server_message, short_url

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"ingester/{__version__}"
MAX_RETRY_AFTER = 300.0
MAX_REDIRECTS = 10


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

    def __call__(self, request: Any) -> Any:
        return request


def new_session(pool_size: int = 10) -> requests.Session:
    """A session with the tool's User-Agent, no implicit ~/.netrc credentials, and one adapter per
    scheme mounted once: a pool of `pool_size` connections per host, urllib3's own retries off (the
    callers retry, see the module docstring)."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.auth = NoNetrcAuth()  # credentials come from settings/netrc explicitly, never implicitly
    size = max(pool_size, 10)
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0))
    return session


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
        self.session = new_session(max_concurrency or 10)
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        origins = {origin(self.base_url)}
        origins.update(origin(h if "://" in h else f"https://{h}") for h in trusted_hosts)
        self.trusted_origins = {o for o in origins if o is not None}
        self.trusted_domains = {d.lower().strip(".") for d in trusted_domains if d.strip(".")}
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"Service({self.name!r}, {short_url(self.base_url)!r})"

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def backoff_delay(self, attempt: int, ceiling: float | None = None) -> float:
        """The wait before try `attempt + 1`: the backoff doubling from the first retry, at most `ceiling`."""
        delay = self.backoff * 2 ** (attempt - 1)
        return delay if ceiling is None else min(delay, ceiling)

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
                    raise HTTPError(f"{self.name}: {method} {short_url(url)}: no response after {attempt} requests "
                                    f"({connection_reason(exc)})", None, url) from None
                self.sleep(self.backoff_delay(attempt))
                continue
            status = response.status_code
            if status < 400 or status in ok_statuses:
                return response
            if status == 401 and auth and self.token and not refreshed:
                refreshed = True
                self.token.invalidate()
                continue
            if status in RETRY_STATUSES and attempt <= self.retries:
                wait = retry_after_seconds(response, self.backoff_delay(attempt))
                response.close()
                self.sleep(wait)
                continue
            message = server_message(response)
            response.close()
            tries = f" after {attempt} requests" if attempt > 1 else ""
            raise HTTPError(f"{self.name}: {method} {short_url(url)} answered {status}{tries}: {message}", status, url)

    def _send(self, method: str, url: str, *, auth: bool, stream: bool, **kwargs: Any) -> requests.Response:
        """One request, following redirects by hand so that the token goes to trusted hosts only."""
        headers = dict(kwargs.pop("headers", None) or {})
        for _ in range(MAX_REDIRECTS):
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
        raise HTTPError(f"{self.name}: too many redirects from {short_url(url)}", None, url)

    def get_json(self, path: str, params: Any = None, **kwargs: Any) -> Any:
        response = self.request("GET", path, params=params, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HTTPError(f"{self.name}: GET {short_url(response.url)}: answer is not JSON "
                            f"({response.text[:120]!r})", response.status_code, response.url) from None
