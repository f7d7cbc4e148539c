"""Which credentials the OneAtlas search and the delivered-product download take: the bearer token of
the API-key grant, or HTTP Basic with the user `APIKEY` and the API key as password.

Airbus's developer documentation names the bearer token as the authentication of every product API;
the original system sent Basic `APIKEY:<key>` (the user name Airbus documents for Basic access with an
API key) to the search and to the delivered zip instead. A server may take either, so for these two
services (never the order API, which is bearer-only as documented):

- The bearer token is sent first. An answer refusing it (see `refuses_credentials`) is followed by the
  same request once more with Basic `APIKEY:<key>`, unless the server's challenge names only schemes
  other than Basic (RFC 9110 §11.6.1: then the token itself was refused, e.g. expired).
- The scheme that worked is remembered per service and origin (`SchemeMemory`) for the life of the
  command's clients (in a run, of each worker process, across its jobs): later requests use it directly.
- When Basic is refused too, or there is no key to send, the bearer token may simply have expired:
  unless the challenge names only Basic, it is renewed once and sent again. Refused again, the
  request fails naming every refusal.
- The key is looked up where the request is made, never carried by a job (a job description crosses
  a scheduler): in a worker, from its own settings, its environment (`INGESTER_ONEATLAS_API_KEY`,
  `ingester.toml`) or its `~/.netrc` entry for the authentication host. A worker without a key fails
  the request with a message saying that the service wants Basic auth and the worker needs the key.
- Basic credentials go only where the bearer token may go (`Service.is_trusted`: the service's exact
  origins, or https on port 443 of a OneAtlas host), also across redirects.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import requests

from ingester.config import redact_url
from ingester.errors import ConfigError, HTTPError
from ingester.http.messages import server_message
from ingester.http.session import Service, origin

BEARER = "bearer"
BASIC = "basic"
BASIC_USER = "APIKEY"

# a quoted string, or a token with its `=value` when it is an auth-param (RFC 9110 §11.2)
_CHALLENGE_PART = re.compile(r'"(?:[^"\\]|\\.)*"|([^\s=,"]+)(\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^\s,"]*))?')
# words of a 403 answer that is about the credentials sent (not about the account's rights)
_CREDENTIAL_WORDS = ("authenticat", "authorization header", "unauthorized", "not authorized", "token",
                     "credential", "api key", "apikey", "basic", "bearer")


def challenge_schemes(header: str) -> set[str]:
    """The auth schemes a `WWW-Authenticate` value offers, lower case: `Bearer realm="x",
    error="invalid_token", Basic realm="y"` → {"bearer", "basic"}."""
    return {m.group(1).lower() for m in _CHALLENGE_PART.finditer(header or "") if m.group(1) and not m.group(2)}


def refuses_credentials(response: requests.Response) -> bool:
    """Whether an answer refuses the credentials sent (so that others may be tried): 401, which means
    exactly that (RFC 9110 §15.5.2); or a 403 that says so: a `WWW-Authenticate` challenge other than
    `insufficient_scope` (RFC 6750 §3.1: a valid token without the rights, the same with any scheme),
    or, without one, an error text about the authentication, the Authorization header, the token or
    the credentials. Any other 403 is about the account's rights (RFC 9110 §15.5.4): never retried."""
    if response.status_code == 401:
        return True
    if response.status_code != 403:
        return False
    challenge = response.headers.get("WWW-Authenticate", "")
    if challenge:
        return "insufficient_scope" not in challenge.lower()
    text = server_message(response).lower()
    return any(word in text for word in _CREDENTIAL_WORDS)


def basic_header(key: str) -> str:
    return "Basic " + base64.b64encode(f"{BASIC_USER}:{key}".encode()).decode("ascii")


class _BasicHook:
    """The session's auth: adds Basic `APIKEY:<key>` to a request of the current thread's Basic attempt
    when its URL is trusted (each redirect hop is checked), and nothing otherwise. Being the session's
    auth also keeps `requests` from taking Basic credentials from ~/.netrc by itself."""

    def __init__(self, service: Service):
        self.service = service
        self.local = threading.local()

    def __repr__(self) -> str:  # never show the key
        return "_BasicHook(***)"

    def __call__(self, request: Any) -> Any:
        key = getattr(self.local, "key", None)
        if key and self.service.is_trusted(request.url):
            request.headers["Authorization"] = basic_header(key)
        return request


class SchemeMemory:
    """Which scheme worked, per origin, for one service (thread-safe). Kept by the outermost `Clients`
    (`Clients.lasting`), so that a worker's later jobs, whose sessions carry other tokens, use it too."""

    def __init__(self) -> None:
        self._schemes: dict[tuple[str, str, int] | None, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemeMemory({len(self._schemes)} origin(s))"

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._schemes.get(origin(url))

    def learn(self, url: str, scheme: str) -> None:
        with self._lock:
            self._schemes[origin(url)] = scheme


class KeyFallbackService(Service):
    """A `Service` whose authenticated requests (`auth=True`) go with the bearer token, or with Basic
    `APIKEY:<key>` where the server refuses the token (see the module docstring). `api_key` returns
    the key where the request is made ("" without one), `no_key_hint` what to set then, and `memory`
    where the scheme that worked is kept (the service's own without one)."""

    def __init__(self, name: str, base_url: str, *, api_key: Callable[[], str], no_key_hint: str,
                 memory: SchemeMemory | None = None, **kwargs: Any):
        super().__init__(name, base_url, **kwargs)
        self.api_key = api_key
        self.no_key_hint = no_key_hint
        self.memory = memory if memory is not None else SchemeMemory()
        self._hook = _BasicHook(self)
        self.session.auth = self._hook

    def scheme(self, url: str) -> str | None:
        """The scheme that worked for the URL's origin in this service, if any yet."""
        return self.memory.get(url)

    def _learn(self, url: str, scheme: str) -> None:
        self.memory.learn(url, scheme)

    def request(self, method: str, path: str, *, auth: bool = False, stream: bool = False,
                ok_statuses: Iterable[int] = (), **kwargs: Any) -> requests.Response:
        if not auth or self.token is None:
            return super().request(method, path, auth=auth, stream=stream, ok_statuses=ok_statuses, **kwargs)
        url = self.url(path)
        ok = frozenset(ok_statuses)
        known = self.scheme(url)
        if known == BEARER:  # as any bearer service: a 401 renews the token once
            return super().request(method, url, auth=True, stream=stream, ok_statuses=ok, **kwargs)
        if known == BASIC:
            key = self._key()
            if not key:
                raise self._no_key(method, url, "it took only HTTP Basic auth so far in this process")
            response = self._attempt(method, url, key, stream, ok, kwargs)
            if self._refused(response, ok):
                raise self._failure(method, url, response, "refused HTTP Basic auth with the API key "
                                                           f"({self._describe(response)})")
            return response
        # not known yet: the bearer token first
        response = self._attempt(method, url, None, stream, ok, kwargs)
        if not self._refused(response, ok):
            self._learn(url, BEARER)
            return response
        refusal = self._describe(response)
        schemes = challenge_schemes(response.headers.get("WWW-Authenticate", ""))
        basic_wanted = not schemes or BASIC in schemes
        bearer_taken = not schemes or BEARER in schemes
        response.close()
        key = self._key() if basic_wanted else ""
        if key:
            response = self._attempt(method, url, key, stream, ok, kwargs)
            if not self._refused(response, ok):
                self._learn(url, BASIC)
                return response
            refusal += f"; HTTP Basic auth with the API key: {self._describe(response)}"
            if not bearer_taken:
                raise self._failure(method, url, response, f"refused the bearer token and the API key ({refusal})")
            response.close()
        if bearer_taken:  # the token may have expired meanwhile: renewed, it is sent once more
            self.token.invalidate()
            response = self._attempt(method, url, None, stream, ok, kwargs)
            if not self._refused(response, ok):
                self._learn(url, BEARER)
                return response
            refusal += f"; the renewed bearer token: {self._describe(response)}"
            if key or not basic_wanted:
                raise self._failure(method, url, response, f"refused every credential it was sent ({refusal})")
            response.close()
        raise self._no_key(method, url, f"it refused the bearer token ({refusal})")

    # -- helpers ---------------------------------------------------------------------------------
    def _attempt(self, method: str, url: str, key: str | None, stream: bool, ok: frozenset[int],
                 kwargs: dict[str, Any]) -> requests.Response:
        """One request (with the base class's retries of 429/5xx) with the bearer token (`key` None) or
        Basic. A refusal of the credentials is returned; another 401/403 raises HTTPError."""
        statuses = ok | {401, 403}
        if key is None:
            response = super().request(method, url, auth=True, stream=stream, ok_statuses=statuses, **kwargs)
        else:
            self._hook.local.key = key
            try:
                response = super().request(method, url, auth=False, stream=stream, ok_statuses=statuses, **kwargs)
            finally:
                self._hook.local.key = None
        if response.status_code in (401, 403) and response.status_code not in ok \
                and not refuses_credentials(response):
            raise self._failure(method, url, response, "")
        return response

    @staticmethod
    def _refused(response: requests.Response, ok: frozenset[int]) -> bool:
        return response.status_code not in ok and response.status_code >= 400 and refuses_credentials(response)

    def _key(self) -> str:
        try:
            return self.api_key() or ""
        except ConfigError:  # an unusable ~/.netrc: no key here (the hint says where to put one)
            return ""

    @staticmethod
    def _describe(response: requests.Response) -> str:
        return f"{response.status_code}: {server_message(response)}"

    def _failure(self, method: str, url: str, response: requests.Response, what: str) -> HTTPError:
        """The HTTPError for a refused request (or any other error answer: a 403 about the rights)."""
        status = response.status_code
        if not refuses_credentials(response):
            what = f"answered {self._describe(response)}"
        response.close()
        return HTTPError(f"{self.name}: {method} {_short(url)} {what}", status, url)

    def _no_key(self, method: str, url: str, why: str) -> HTTPError:
        return HTTPError(f"{self.name}: {method} {_short(url)} wants HTTP Basic auth with the OneAtlas API key (user "
                         f"{BASIC_USER}): {why}; this worker has no API key (a job never carries it): "
                         f"{self.no_key_hint}", 401, url)


def _short(url: str, limit: int = 160) -> str:
    url = redact_url(url)
    return url if len(url) <= limit else url[:limit] + "…"


__all__ = ["KeyFallbackService", "SchemeMemory", "challenge_schemes", "refuses_credentials", "basic_header",
           "BEARER", "BASIC", "BASIC_USER"]
