"""One vocabulary for a job's failure, from the worker to the workflow: `classify(exc)` turns any
exception a job meets into its *outcome* (docs/workflow.md, "Which failure gives which outcome").

Both workers (`providers.worker` for scene jobs, `graph.worker` for tile jobs and scene graphs) and
the executor (a worker that raises) report failures through it, so that one exception gives one
outcome wherever it happens:

- `deferred`: waits for something outside until a time (`Deferred`, with its `retry_at`);
- `temporary`: may pass by itself: a provider rate-limited or unavailable, a broken archive (a
  broken download), an HTTP failure without answer or with 408, 429 or 5xx, a connection or timeout
  error, a file-system error of a kind that passes (EIO, EAGAIN, EBUSY, ETIMEDOUT, connection
  resets, …), a storage error caused by one of those, a graph step that timed out or said so;
- `fatal`: will never succeed: invalid input met by a job (a scene name that cannot be stored), a
  step that said `FATAL ERROR:`;
- `error`: anything else (settings or a graph to fix, a product no provider has, another HTTP status,
  an unsafe archive, a full disk or a permission refused, a bug), with the place in the code when
  the exception is not one of the tool's.
"""

from __future__ import annotations

import dataclasses
import errno
import traceback
from typing import Any

from ingester.errors import (
    Deferred,
    HTTPError,
    IngesterError,
    Outcome,
    ProcessingError,
    ProviderError,
    StorageError,
)

# OS errors that may pass by themselves (I/O hiccups, busy resources, network file systems, sockets)
TRANSIENT_ERRNOS = frozenset({
    errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECANCELED, errno.ECONNABORTED,
    errno.ECONNRESET, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET,
    errno.EPIPE, errno.ENOMEM, errno.ESTALE,
})


@dataclasses.dataclass(frozen=True)
class Failure:
    outcome: Outcome
    message: str
    retry_at: float | None = None  # `deferred`: when to try again (epoch seconds)


def _transient(exc: BaseException) -> bool:
    """Connection and timeout errors, requests' errors, and OS errors of a transient kind."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if _is_requests_error(exc):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def _is_requests_error(exc: BaseException) -> bool:
    requests = _requests()
    return requests is not None and isinstance(exc, requests.RequestException)


def _requests() -> Any:
    try:
        import requests
    except ImportError:  # pragma: no cover - a dependency; kept optional for the classification alone
        return None
    return requests


def _cause(exc: BaseException) -> BaseException | None:
    """What an exception was raised from (`raise … from exc`) or while handling (`… from None` keeps it)."""
    return exc.__cause__ or exc.__context__


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of a job that failed with `exc` (see the module docstring)."""
    if isinstance(exc, ProviderError):
        if isinstance(exc, Deferred):
            return "deferred"
        return "temporary" if exc.temporary or exc.outcome == "temporary" else exc.outcome
    if isinstance(exc, ProcessingError):
        return exc.outcome
    if isinstance(exc, HTTPError):
        return "temporary" if exc.status is None or exc.status in (408, 429) or exc.status >= 500 else "error"
    if isinstance(exc, StorageError):
        cause = _cause(exc)
        return "temporary" if cause is not None and _transient(cause) else "error"
    if isinstance(exc, IngesterError):  # its class says (a broken archive: temporary, an unsafe one: error, …)
        return exc.outcome
    if _transient(exc):
        return "temporary"
    return "error"


def describe(exc: BaseException) -> str:
    """The message of a failure: the tool's own errors say what happened; others name their type (and,
    when unexpected, the place in the code)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, IngesterError):
        return message
    if isinstance(exc, OSError) and not _is_requests_error(exc):
        return os_error(exc, with_path=True)
    if _transient(exc):
        return f"{type(exc).__name__}: {message}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"unexpected {type(exc).__name__}: {message}{where}"


def os_error(exc: OSError, with_path: bool = False) -> str:
    """`PermissionError: Permission denied` (with `with_path`, then `: <the file>` when it is known)."""
    text = f"{type(exc).__name__}: {exc.strerror or exc}"
    return text + (f": {exc.filename}" if with_path and exc.filename and exc.strerror else "")


def classify(exc: BaseException) -> Failure:
    """The outcome, message and (deferred) time to try again of a job that failed with `exc`."""
    outcome = outcome_of(exc)
    return Failure(outcome, describe(exc), exc.retry_at if isinstance(exc, Deferred) else None)


def failure_result(exc: BaseException, log_path: str = "", message: str | None = None, **details: Any):  # noqa: ANN201
    """The `JobResult` of a job that failed with `exc` (its message, or the one given)."""
    from ingester.jobs import JobResult

    failure = classify(exc)
    return JobResult(failure.outcome, failure.message if message is None else message, log_path=log_path,
                     details=dict(details), retry_at=failure.retry_at)
