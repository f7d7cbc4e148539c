"""The application layer of the commands that only read the store: `status`, `aois`, `list`, `history`,
`dot`, `datasets`, `stac`, `layers list`. They open the store read-only (so that
they work on a read-only file system or an immutable file) and never create it: a missing store is
exit 2 naming the path. Listings stream their rows (`list tiles` on 300,000 tiles holds one row at a
time); the caller keeps the store open while it reads them (`with reading(settings) as store:`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ingester.app.reports import History
from ingester.config import Settings
from ingester.store import Store

if TYPE_CHECKING:
    from ingester.store import LayerRow, SceneRow, TileRow


@contextlib.contextmanager
def reading(settings: Settings | str) -> Iterator[Store]:
    """The store of a read-only command, opened read-only (never created)."""
    db = settings if isinstance(settings, str) else settings.db
    store = Store(db, create=False, readonly=True)
    try:
        yield store
    finally:
        store.close()


def status(store: Store, aoi: str | None = None, stale_after: float = 300.0) -> list[dict[str, Any]]:
    """Per AOI (one, or every AOI): the monitoring summary, the run holding it now (`running`: run id,
    pid, host, start; None when none does, a lock of a dead run or older than `stale_after` seconds
    included) and the jobs waiting for a later try."""
    from ingester.locks import running_run
    from ingester.workflow import deferred, summary

    names = [store.require_aoi(aoi).name] if aoi else store.aoi_names()
    out = []
    for name in names:
        aoi_id = store.require_aoi(name).id
        out.append({**summary(store, aoi_id), "running": running_run(store, name, stale_after),
                    "deferred": deferred(store, aoi_id)})
    return out


def aois(store: Store) -> list[dict[str, Any]]:
    """The AOIs of the store, with their status, counts and lock."""
    from ingester.workflow import FAILED, aoi_status

    rows = []
    for item in store.aoi_overview():
        row = item["aoi"]
        scene_counts = store.status_counts("scene", row.id)
        failed = scene_counts[FAILED] + store.status_counts("tile", row.id)[FAILED]
        rows.append({"aoi": row.name, "status": aoi_status(store, row.id, scene_counts), "failed_jobs": failed,
                     "scenes": item["scenes"],
                     "tiles": item["tiles"],
                     "locked_by": f"pid {row.lock_pid} on {row.lock_host}" if row.lock_run else ""})
    return rows


def scenes(store: Store, aoi: str, status: str | None = None) -> Iterator[SceneRow]:
    """The AOI's scenes, oldest first, one by one."""
    return store.iter_scene_rows(store.require_aoi(aoi).id, status)


def tiles(store: Store, aoi: str, status: str | None = None, with_wkt: bool = False) -> Iterator[tuple[TileRow, str]]:
    """The AOI's tiles, oldest scene first, one by one (with their footprint as WKT when asked)."""
    return store.iter_tile_rows(store.require_aoi(aoi).id, status, with_wkt=with_wkt)


def history(store: Store, scene: int | None, tile: int | None) -> History:
    """Every attempt of one job, with what it led to and how long it took."""
    from ingester.app.session import resolve_target
    from ingester.workflow import attempt_result

    name, kind, job_id = resolve_target(store, None, scene, tile, aoi_allowed=False)
    assert kind is not None and job_id is not None
    attempts = store.attempts(kind, job_id)
    for a in attempts:
        a["result"] = attempt_result(a["outcome"], a["status"], a["message"] or "")
        a["duration_s"] = seconds_between(a["started_at"], a["finished_at"])
    return History(name, kind, job_id, attempts)


def seconds_between(started: str | None, finished: str | None) -> float | None:
    """An attempt's duration in seconds (None while it runs)."""
    from ingester.times import parse_time

    if not started or not finished:
        return None
    try:
        return round(max((parse_time(finished) - parse_time(started)).total_seconds(), 0.0), 3)
    except ValueError:
        return None


def dot(store: Store, aoi: str) -> str:
    from ingester.workflow import dot as dot_text

    return dot_text(store, store.require_aoi(aoi).id)


def layers(store: Store) -> list[LayerRow]:
    return store.layers()

