"""Bearer tokens: who logs in, and how a token reaches the requests that need it.

- `TokenManager`: OAuth2 for one account (CDSE's Keycloak): the password grant once, the refresh grant
  shortly before the access token expires, a new login only when the refresh fails; a refusal of the
  account itself is kept (no second login with a wrong password: repeated failures can lock it).
- `StaticToken`: a token given by the user (Earthdata for ASF), never refreshed.

One login per run: the coordinator (the process that holds the AOI's lock) is the only one that logs in
with the account's password, through the `TokenManager` of its `Clients` (shared with the pre-flight
check). Workers never see the password: a scene job carries short-lived access tokens (`AccessToken`,
in `SceneJob.tokens`, issued by the coordinator's `TokenSource`); in the worker, `JobTokens` holds them
with the executor's channel to the coordinator, and `HandedToken` (what a `Service` sees) asks through
that channel for a fresh token when its own expires or is refused (401). A refusal of the account
(`CredentialsRefused`) is remembered by the `TokenSource`: every later request fails at once and the run
stops (exit 1).

Outside a run (`ingester tiles`, library use) there is no channel: the command's `Clients` holds one
`TokenManager` per account, shared by everything the command does.

This module imports no HTTP library at start-up (job descriptions carry `AccessToken`s, and `ingester
status` must start fast); `TokenManager` loads `requests` when it is first built.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ingester.errors import AuthError, CredentialsRefused, IngesterError, RateLimited, Unavailable
from ingester.http.messages import connection_reason, server_message, short_url

if TYPE_CHECKING:
    import requests


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


class CachedAccessToken:
    """An access token kept until shortly before it expires (a minute before, or a quarter of its
    lifetime when that is shorter) and renewed by the subclass's `_renew` (thread-safe). A refusal of the
    credentials themselves is kept: every later call raises the same `CredentialsRefused` without a
    request (retrying a refused password or key per job would lock the account)."""

    token_url: str
    session: requests.Session
    timeout: float
    margin: float
    clock: Callable[[], float]

    def _init_cache(self) -> None:
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_expiry = 0.0
        self._access_margin = self.margin
        self._refused: CredentialsRefused | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._access_expiry = 0.0

    def access_token(self) -> str:
        return self.current()[0]

    def current(self) -> tuple[str, float]:
        """(access token, its expiry in epoch seconds), renewed as needed."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            now = self.clock()
            if not (self._access and now < self._access_expiry - self._access_margin):
                self._renew(now)
            return self._access or "", time.time() + (self._access_expiry - self.clock())

    def _renew(self, now: float) -> None:
        raise NotImplementedError

    def _post_grant(self, form: dict[str, str], where: str, redirect_hint: str) -> tuple[Any, int, str]:
        """POST one grant to `self.token_url` (with `self.session`, `self.timeout`): (the response, 200, "")
        when it is 200, (None, status, "STATUS: the server's words") when the server refused it. No answer,
        408 and 5xx raise Unavailable, 429 RateLimited (they may pass: the job is retried), and a
        redirect AuthError (a 307/308 would post the credentials to its target: never followed)."""
        import requests

        from ingester.http.session import retry_after_seconds

        try:
            response = self.session.post(self.token_url, data=form, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise Unavailable(f"{where}: no response ({connection_reason(exc)})") from None
        status = response.status_code
        if response.is_redirect:
            target = short_url(requests.compat.urljoin(self.token_url, response.headers.get("Location", "")))
            response.close()
            raise AuthError(f"{where} answered a redirect ({status} to {target}); {redirect_hint}")
        if status == 200:
            return response, status, ""
        detail = f"{status}: {server_message(response)}"
        wait = retry_after_seconds(response, 0.0)
        response.close()
        if status == 429:
            limited = RateLimited(f"{where}: too many requests ({detail})")
            limited.retry_after = wait or None  # type: ignore[attr-defined]
            raise limited
        if status == 408 or status >= 500:
            raise Unavailable(f"{where}: unavailable ({detail})")
        return None, status, detail

    def _keep(self, access: str, expires: float, now: float) -> None:
        """Keep a new access token valid for `expires` seconds from `now`."""
        self._access = access
        self._access_expiry = now + expires
        self._access_margin = min(self.margin, expires / 4)


class TokenManager(CachedAccessToken):
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
        if session is None:
            from ingester.http.session import new_session

            session = new_session()
        self.session = session
        self.clock = clock
        self._init_cache()
        self._refresh: str | None = None
        self._refresh_expiry = 0.0
        self._refresh_margin = margin
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:  # never show secrets
        return f"TokenManager({self.token_url!r}, user={self._username!r})"

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
        where = f"token endpoint {short_url(self.token_url)}"
        response, status, detail = self._post_grant(form, where, "credentials are never sent to a redirect "
                                                                  "target: set the token URL to the endpoint itself")
        if response is None:
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
        self._keep(access, expires, now)
        if body.get("refresh_token"):
            self._refresh = body["refresh_token"]
            self._refresh_expiry = now + refresh_expires
            self._refresh_margin = min(self.margin, refresh_expires / 4)


@dataclasses.dataclass(frozen=True)
class AccessToken:
    """A bearer token for one service, valid until `expires_at` (epoch seconds)."""

    service: str
    value: str = dataclasses.field(repr=False)
    expires_at: float
    issued_at: float = 0.0

    def __repr__(self) -> str:  # never show the token
        return f"AccessToken({self.service!r}, expires_at={self.expires_at:.0f})"

    def fresh(self, margin: float = 30.0, now: float | None = None) -> bool:
        """Still valid for a while: at least `margin` seconds, or a quarter of its lifetime if shorter."""
        now = time.time() if now is None else now
        lifetime = self.expires_at - (self.issued_at or now)
        return now < self.expires_at - min(margin, max(lifetime, 0.0) / 4)


class TokenChannel(Protocol):
    """How a worker asks the coordinator for a fresh token (`stale`: the token it holds, refused or expired)."""

    def request(self, service: str, stale: str | None) -> AccessToken: ...


# errors crossing the channel: class name → class (anything else is an AuthError)
_ERRORS: dict[str, type[IngesterError]] = {c.__name__: c for c in (AuthError, CredentialsRefused, Unavailable,
                                                                    RateLimited)}


def error_reply(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


def raise_reply(kind: str, message: str) -> None:
    raise _ERRORS.get(kind, AuthError)(message)


class HandedToken:
    """What a `Service` needs of a token manager, for a worker: the job's token, renewed through the
    channel when it is about to expire or has been refused (`invalidate`)."""

    def __init__(self, service: str, token: AccessToken | None, channel: TokenChannel | None):
        self.service = service
        self._token = token
        self._channel = channel
        self._stale = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HandedToken({self.service!r})"

    def access_token(self) -> str:
        with self._lock:
            if self._token is not None and not self._stale and self._token.fresh():
                return self._token.value
            if self._channel is None:
                raise AuthError(f"{self.service}: the access token handed with the job has expired and no fresh "
                                "one can be asked for")
            self._token = self._channel.request(self.service, self._token.value if self._token else None)
            self._stale = False
            return self._token.value

    def invalidate(self) -> None:
        with self._lock:
            self._stale = True


class JobTokens:
    """The tokens a job was handed and the channel to renew them (the executor makes one per job): a
    worker's `Clients` use them instead of a login. `holder(service)` is the same `HandedToken` for the
    whole job; a service the job carries no token for asks the channel (whose answer says why not)."""

    def __init__(self, tokens: Mapping[str, AccessToken], channel: TokenChannel | None):
        self._tokens = dict(tokens)
        self.channel = channel
        self._holders: dict[str, HandedToken] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JobTokens({sorted(self._tokens)})"

    def carries(self, service: str) -> bool:
        """Whether the job was handed a token for `service` (its coordinator holds an account)."""
        return service in self._tokens

    def services(self) -> list[str]:
        return sorted(self._tokens)

    def holder(self, service: str) -> HandedToken:
        with self._lock:
            holder = self._holders.get(service)
            if holder is None:
                holder = self._holders[service] = HandedToken(service, self._tokens.get(service), self.channel)
            return holder


def worker_settings(settings):  # noqa: ANN001, ANN201 - config.Settings (imported lazily: no cycle)
    """The settings workers get: without the CDSE password and the OneAtlas API key (they use the tokens
    handed to them)."""
    secrets = {k: "" for k in ("cdse_password", "oneatlas_api_key") if getattr(settings, k, "")}
    return dataclasses.replace(settings, **secrets) if secrets else settings


class TokenSource:
    """The coordinator's side: issues access tokens from the run's token managers (made on first use
    by `managers[service]()`), remembers a refusal of the account (no further login in the run)."""

    def __init__(self, managers: Mapping[str, Callable[[], Any]]):
        self._factories = dict(managers)  # service → () -> TokenManager (AuthError without credentials)
        self._managers: dict[str, Any] = {}
        self.refused: CredentialsRefused | None = None
        self._lock = threading.Lock()

    def issue(self, service: str, stale: str | None = None) -> AccessToken:
        """A token with time left (refreshed when `stale` is the current one or it is about to expire)."""
        with self._lock:
            if self.refused is not None:
                raise self.refused
            try:
                manager = self._managers.get(service)
                if manager is None:
                    factory = self._factories.get(service)
                    if factory is None:
                        raise AuthError(f"{service}: not among the providers of this run: no token")
                    manager = self._managers[service] = factory()
                value, expires_at = manager.current()
                if stale is not None and value == stale:
                    manager.invalidate()
                    value, expires_at = manager.current()
            except CredentialsRefused as exc:
                self.refused = exc
                raise
            return AccessToken(service, value, expires_at, time.time())

    def services(self) -> list[str]:
        return list(self._factories)
