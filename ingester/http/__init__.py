"""The HTTP layer, one module per concern:

- `session`: one `requests.Session` per remote service (`Service`): timeouts, retries of 429/5xx and
  dropped connections honouring `Retry-After`, a concurrency cap, no implicit ~/.netrc, a bearer token
  sent only to the service's own origins (scheme, host, port), also across redirects;
- `tokens`: who logs in (`TokenManager`: password and refresh grants; `StaticToken`) and the tokens a
  run's coordinator hands to its workers (`AccessToken`, `TokenSource`, `JobTokens`, `HandedToken`);
- `clients`: the services and token managers of one command, run or job (`Clients`), passed to what
  needs them;
- `checksums`: `Expected`, `Verified`, MD5/BLAKE3 of files and streams, STAC multihashes;
- `transfer`: `download`, streamed to a `.part`, resumed with `Range`, verified, then moved into place;
- `messages`: the server's message of an error answer, connection failure reasons, URLs for messages.

The names below are re-exported here and loaded on first use (importing `ingester.http.tokens` must not
load `requests`: job descriptions carry tokens and `ingester status` starts fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names, for type checkers
    from ingester.http.checksums import (
        BackgroundHasher,
        Expected,
        Verified,
        check,
        digest_file,
        hash_file,
        new_hasher,
        parse_multihash,
        verify_file,
        verify_multihash,
    )
    from ingester.http.clients import Clients
    from ingester.http.messages import connection_reason, server_message, short_url
    from ingester.http.session import (
        MAX_RETRY_AFTER,
        RETRY_STATUSES,
        USER_AGENT,
        NoNetrcAuth,
        Service,
        TokenHolder,
        new_session,
        origin,
        retry_after_seconds,
    )
    from ingester.http.tokens import (
        AccessToken,
        HandedToken,
        JobTokens,
        StaticToken,
        TokenChannel,
        TokenManager,
        TokenSource,
        worker_settings,
    )
    from ingester.http.transfer import TransferProgress, download

_EXPORTS = {
    "session": ("MAX_RETRY_AFTER", "NoNetrcAuth", "RETRY_STATUSES", "Service", "TokenHolder", "USER_AGENT",
                "new_session", "origin", "retry_after_seconds"),
    "tokens": ("AccessToken", "HandedToken", "JobTokens", "StaticToken", "TokenChannel", "TokenManager",
               "TokenSource", "worker_settings"),
    "clients": ("Clients",),
    "checksums": ("BackgroundHasher", "Expected", "Verified", "check", "digest_file", "hash_file", "new_hasher",
                  "parse_multihash", "verify_file", "verify_multihash"),
    "transfer": ("TransferProgress", "download"),
    "messages": ("connection_reason", "server_message", "short_url"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["AccessToken", "BackgroundHasher", "Clients", "Expected", "HandedToken", "JobTokens",
           "MAX_RETRY_AFTER", "NoNetrcAuth", "RETRY_STATUSES", "Service", "StaticToken", "TokenChannel",
           "TokenHolder", "TokenManager", "TokenSource", "TransferProgress", "USER_AGENT", "Verified", "check",
           "connection_reason", "digest_file", "download", "hash_file", "new_hasher", "new_session", "origin",
           "parse_multihash", "retry_after_seconds", "server_message", "short_url", "verify_file",
           "verify_multihash", "worker_settings"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ingester.http' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ingester.http.{module}"), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
