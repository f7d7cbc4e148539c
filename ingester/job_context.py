"""What the executor gives a job besides its description and the settings: the tokens handed with it
(and the channel to the coordinator that renews them), where its downloads report their progress, and
the HTTP clients of the worker process (what outlives one job, e.g. an auth scheme learnt).

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

from ingester.http.clients import Clients
from ingester.http.tokens import JobTokens


@dataclasses.dataclass(frozen=True)
class JobContext:
    """`tokens`: the job's handed tokens (None: not run by an executor, e.g. library use);
    `progress_events`: the queue of the coordinator's download display (None: nothing is drawn);
    `process_clients`: the worker process's `Clients`, parent of the job's own (None: none)."""

    tokens: JobTokens | None = None
    progress_events: Any = None
    process_clients: Clients | None = None

    def job_clients(self) -> Clients:
        """New clients for the job: its handed tokens, the worker process's clients as parent. The
        caller closes them at the job's end."""
        return Clients(self.tokens, parent=self.process_clients)


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
