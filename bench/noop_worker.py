"""The no-op worker of `bench.workflow` (`noop_worker:noop`): a module of its own, found on the path of
the worker processes of whichever checkout is measured."""

from __future__ import annotations

from ingester.jobs import JobResult


def noop(job: object, settings: object) -> JobResult:
    return JobResult("done")
