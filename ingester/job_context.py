"""What the executor gives a job besides its description and the settings: the tokens handed with it
(and the channel to the coordinator that renews them), and where its downloads report their progress.

Workers are called as `fn(job, settings)` (a stable contract for custom workers), so the context is set
around that one call (`running`, a context variable: it never outlives the call, and threads the job
starts do not see it). A worker function reads it once, at its start (`current()`), and passes the
objects it makes from it on (`http.Clients`, a progress reporter).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

from ingester.http.tokens import JobTokens


@dataclasses.dataclass(frozen=True)
class JobContext:
    """`tokens`: the job's handed tokens (None: not run by an executor, e.g. library use);
    `progress_events`: the queue of the coordinator's download display (None: nothing is drawn)."""

    tokens: JobTokens | None = None
    progress_events: Any = None


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("ingester_job_context", default=None)


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    """`context` is the current one while the worker function runs."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current() -> JobContext:
    """The context of the job being run (an empty one outside a job)."""
    return _current.get() or JobContext()


__all__ = ["JobContext", "current", "running"]
