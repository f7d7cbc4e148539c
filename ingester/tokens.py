"""Access tokens handed by the coordinator to its workers: one login per run.

The coordinator (the process that holds the AOI's lock) is the only one that logs in to a service
with the account's password (`http.TokenManager`, shared by everything the process does, the
pre-flight check included). Workers never see the password: a job carries a short-lived access token
(`AccessToken`, in `SceneJob.tokens`), and when that token expires or is refused (401), the worker
asks the coordinator for a fresh one through its executor's channel (`TokenChannel`); the coordinator
refreshes with the refresh token as needed and logs in again only when the refresh fails.

When the identity server refuses the account itself (`CredentialsRefused`: wrong password, disabled
account), the coordinator remembers it: no further login is tried in the run (a lock-out risk), every
request for a token fails at once, and the run stops (exit 1).

In a worker, `job_tokens` makes the job's tokens the current ones for the duration of the job;
`handed_token(service)` is what a provider uses then (None outside a job: library use, `ingester tiles`,
where the process's own `TokenManager` serves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from ingester.errors import AuthError, CredentialsRefused, IngesterError, RateLimited, Unavailable


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
    """What `http.Service` needs of a token manager, for a worker: the job's token, renewed through
    the channel when it is about to expire or has been refused (`invalidate`)."""

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


_current: dict[str, HandedToken] = {}
_handed: set[str] = set()  # services the current job carries a token for
_active = False


@contextlib.contextmanager
def job_tokens(tokens: dict[str, AccessToken], channel: TokenChannel | None) -> Iterator[None]:
    """Make the job's tokens (and the channel to renew them) the current ones while the job runs."""
    global _active, _handed
    previous, was_active, was_handed = dict(_current), _active, _handed
    _current.clear()
    for service in set(tokens) | {"cdse", "oneatlas"}:
        _current[service] = HandedToken(service, tokens.get(service), channel)
    _active, _handed = True, set(tokens)
    try:
        yield
    finally:
        _current.clear()
        _current.update(previous)
        _active, _handed = was_active, was_handed


def handed_token(service: str) -> HandedToken | None:
    """The current job's token holder for `service` (None outside a job run by an executor)."""
    return _current.get(service) if _active else None


def job_carries(service: str) -> bool:
    """Whether the current job was handed a token for `service` (its coordinator holds an account)."""
    return _active and service in _handed


def worker_settings(settings):  # noqa: ANN001, ANN201 - config.Settings (imported lazily: no cycle)
    """The settings workers get: without the CDSE password and the OneAtlas API key (they use the tokens
    handed to them)."""
    import dataclasses as _dc

    secrets = {k: "" for k in ("cdse_password", "oneatlas_api_key") if getattr(settings, k, "")}
    return _dc.replace(settings, **secrets) if secrets else settings


class TokenSource:
    """The coordinator's side: issues access tokens from its process's token managers, remembers a
    refusal of the account (no further login in the run)."""

    def __init__(self, managers: Mapping[str, Callable[[], Any]]):
        self._factories = dict(managers)  # service → () -> http.TokenManager (AuthError without credentials)
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
