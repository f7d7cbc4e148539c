"""HTTP layer: one `requests.Session` per remote service, with timeouts, retries on 429/5xx that
honour `Retry-After`, clear errors carrying the server's message, a per-service concurrency cap and
an OAuth2 token manager (password grant once, refresh-token grant before expiry).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import requests

from ingester import __version__
from ingester.errors import AuthError, HTTPError

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
        token: TokenManager | None = None,
        trusted_hosts: Iterable[str] = (),
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
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        hosts = {urlparse(self.base_url).hostname or ""}
        hosts.update(trusted_hosts)
        self.trusted_hosts = {h for h in hosts if h}
        self.requests_sent = 0

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def is_trusted(self, url: str) -> bool:
        """Whether credentials may be sent to this URL's host: a trusted host, or a sibling host of
        the same service domain (catalogue.… and zipper.dataspace.copernicus.eu). IPs match exactly."""
        host = urlparse(url).hostname or ""
        if host in self.trusted_hosts:
            return True
        for trusted in self.trusted_hosts:
            parts = trusted.split(".")
            if len(parts) >= 3 and not trusted.replace(".", "").isdigit():
                if host.endswith("." + ".".join(parts[1:])):
                    return True
        return False

    def request(self, method: str, path: str, *, auth: bool = False, stream: bool = False,
                ok_statuses: Iterable[int] = (), **kwargs: Any) -> requests.Response:
        """Send a request; retry 429/5xx/connection errors with backoff; raise HTTPError on failure.

        With `auth`, the bearer token is sent, re-attached on redirects to the service's own hosts
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
                    raise HTTPError(f"{self.name}: {method} {_short(url)}: no response after {attempt} tries "
                                    f"({type(exc).__name__}: {exc})", None, url) from None
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
            tries = f" after {attempt} tries" if attempt > 1 else ""
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


def _short(url: str, limit: int = 160) -> str:
    return url if len(url) <= limit else url[:limit] + "…"


class TokenManager:
    """OAuth2 tokens for one account, shared by every job of a run (thread-safe).

    Logs in with the password grant once, refreshes with the refresh token shortly before the access
    token expires, and logs in again only when the refresh fails or the refresh token has expired.
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
        self.clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_expiry = 0.0
        self._refresh: str | None = None
        self._refresh_expiry = 0.0
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:  # never show secrets
        return f"TokenManager({self.token_url!r}, user={self._username!r})"

    def invalidate(self) -> None:
        with self._lock:
            self._access_expiry = 0.0

    def access_token(self) -> str:
        with self._lock:
            now = self.clock()
            if self._access and now < self._access_expiry - self.margin:
                return self._access
            if self._refresh and now < self._refresh_expiry - self.margin:
                try:
                    self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                    self.refreshes += 1
                    return self._access or ""
                except AuthError:
                    self._refresh = None
            self._grant({"grant_type": "password", "username": self._username, "password": self._password})
            self.logins += 1
            return self._access or ""

    def _grant(self, form: dict[str, str]) -> None:
        form = {**form, "client_id": self.client_id}
        try:
            response = self.session.post(self.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AuthError(f"token endpoint {self.token_url}: no response ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise AuthError(f"token endpoint {self.token_url} refused the {form['grant_type']} grant "
                            f"({response.status_code}: {server_message(response)})")
        body = response.json()
        now = self.clock()
        self._access = body["access_token"]
        self._access_expiry = now + float(body.get("expires_in", 600))
        if body.get("refresh_token"):
            self._refresh = body["refresh_token"]
            self._refresh_expiry = now + float(body.get("refresh_expires_in", 3600))
