"""The AOI lock (docs/workflow.md, "Leases and locks"): one run at a time per AOI.

The lock records the run id, pid, host, start time and a heartbeat. A lock whose process is dead
(same host) or whose heartbeat is older than `stale_after` seconds is taken over; taking it re-queues
what a dead run left leased (its open attempts end `abandoned`). `ingester.app.AoiSession` is the
one place that takes and releases it for a command.
"""

from __future__ import annotations

import os
from typing import Any

from ingester.errors import LockedError, StoreError
from ingester.store import Store, host_name, monotonic_now, now_text, pid_alive


def running_run(store: Store, aoi: str, stale_after: float) -> dict[str, Any] | None:
    """The live run holding the AOI's lock ({"run", "pid", "host", "since"}), or None (free, or a lock
    left by a dead run: taken over by the next one)."""
    row = store.aoi(aoi)
    if row is None or row.lock_run is None:
        return None
    fresh = row.lock_heartbeat is not None and monotonic_now() - row.lock_heartbeat < stale_after
    if row.lock_host == host_name():
        alive = row.lock_pid is not None and pid_alive(row.lock_pid) and fresh
    else:
        alive = fresh
    if not alive:
        return None
    return {"run": row.lock_run, "pid": row.lock_pid, "host": row.lock_host, "since": row.lock_started}


def lock_holder(store: Store, aoi: str, stale_after: float) -> str | None:
    """A description of the live run holding the AOI's lock, or None (free or stale)."""
    run = running_run(store, aoi, stale_after)
    if run is None:
        return None
    return f"pid {run['pid']} on host {run['host']} since {run['since']} (run {run['run']})"


def check_lock(store: Store, aoi: str, stale_after: float) -> None:
    """LockedError (exit 3) when a live run holds the AOI."""
    holder = lock_holder(store, aoi, stale_after)
    if holder:
        raise LockedError(f"AOI {aoi!r} is locked by another run: {holder}")


def acquire_lock(store: Store, aoi: str, run_id: str, stale_after: float) -> None:
    """Take the AOI's lock (joining the caller's transaction, if any); re-queue what a dead run left leased."""
    with store.transaction():
        check_lock(store, aoi, stale_after)
        row = store.aoi(aoi)
        if row is None:
            raise StoreError(f"no AOI named {aoi!r}")
        store.set_lock(row.id, run_id, os.getpid(), host_name(), now_text(), monotonic_now())
        store.requeue_abandoned(row.id, run_id, now_text())


def release_lock(store: Store, aoi: str, run_id: str) -> None:
    with store.transaction():
        store.clear_lock(aoi, run_id)


def requeue_abandoned(store: Store, aoi_id: int, run_id: str) -> int:
    """Jobs leased by another run go back to the queue (call inside a transaction)."""
    return store.requeue_abandoned(aoi_id, run_id, now_text())
