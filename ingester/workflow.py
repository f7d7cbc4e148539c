"""The workflow state machine (docs/workflow.md), pure logic over the store, with the original's defects fixed
(docs/original.md, "Known defects").

Statuses: NEW (tile waiting for its scene and previous), PENDING (queued or running), DONE, RETRY
(failed, waiting for a manual retry), FAILED (terminal).

Rules, as implemented here:

- Release: a NEW tile becomes PENDING when its scene is DONE, its previous is null or DONE, *and* its
  reference is null or DONE (docs/original.md, defect 27: the new previous of a re-linked child is checked too). It is
  checked after every change that can make it true: a scene DONE, a tile DONE, a fail cascade.
- One countdown rule (docs/original.md, defect 26): `retry_countdown` starts at the payload's `retry_count` for every
  scene and tile; it is decremented by one on each *automatic* re-run and never below 0; a manual
  retry (`ingester retry`) restores the full budget. Bulk releases never touch it.
- Outcomes (ingester/jobs.py): `done` → DONE (the message is cleared); `temporary` → PENDING again
  after a backoff, at most `max_temporary_retries` times per round (a round ends with an automatic or
  manual re-run), then handled as `error`; `deferred` → PENDING until the worker's `retry_at`, nothing
  consumed, `deferred_since` set at the first deferral: past `defer_deadline` from it, an `error`
  (any other outcome or status change ends the deferral); `fatal` → FAILED;
  `error` → RETRY if the job `is_retriable`, else FAILED; RETRY with countdown > 0 → automatic re-run
  after `retry_backoff × 2^(n-1)` seconds. The last error stays in `message`; every attempt with its
  message is kept in `job_attempt` (the error history).
- Fail cascade (docs/workflow.md, "Fail cascade"): the failed tile's children take its previous; when the tile was
  a root, its earliest child becomes the root and every other child and every tile that referenced
  the failed tile now points to that new root (consistent links for all children).
- Forced changes propagate every error (docs/original.md, defect 28).
- Forced retry (`ingester retry --force`, `force_retry`): FAILED and RETRY jobs go back with a fresh
  budget. A scene → PENDING and its FAILED tiles → NEW; a tile → NEW, then released when ready. A
  revived tile gets back the previous/reference it had before the cascade (`failed_prev`/`failed_ref`;
  when that tile is itself still FAILED, its own earlier link, and so on). Limit: the children the
  cascade re-linked keep their new previous (they may already be processed against it), so a revived
  tile starts a branch of the chain rather than being re-inserted in the middle of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ingester.errors import StoreError
from ingester.store import STATUSES, Store, monotonic_now, now_text
from ingester.times import epoch_text

if TYPE_CHECKING:  # jobs imports the payload model (and shapely): not needed by the status commands
    from ingester.jobs import JobResult

NEW, PENDING, DONE, RETRY, FAILED = STATUSES
# AOI status priority (docs/workflow.md, "AOI status"): the first present wins.
PRIORITY = (RETRY, PENDING, NEW, DONE, FAILED)
COLOURS = {NEW: "gray", PENDING: "blue", DONE: "green", RETRY: "orange", FAILED: "red"}


class TransitionError(StoreError):
    """A status change the transition table does not allow."""


# (current, requested) → action; anything else is refused. Same for scenes and tiles
# (docs/workflow.md, "Transition table").
TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, DONE): "finish",
    (PENDING, RETRY): "retry",  # automatic re-run while the countdown lasts, else RETRY
    (PENDING, FAILED): "fail",
    (RETRY, DONE): "finish",
    (RETRY, PENDING): "manual_retry",
    (RETRY, FAILED): "fail",
}
FORCED: dict[str, str] = {DONE: "finish", PENDING: "manual_retry", FAILED: "fail", RETRY: "set", NEW: "set"}


def action_for(kind: str, job_id: int, current: str, requested: str, force: bool = False) -> str | None:
    """The action of the transition table; None when nothing changes (same status)."""
    if requested not in STATUSES:
        raise TransitionError(f"unknown status {requested!r}; known: {', '.join(STATUSES)}")
    if current == requested:
        return None
    if force:
        return FORCED[requested]
    action = TRANSITIONS.get((current, requested))
    if action is None:
        raise TransitionError(f"cannot update {kind} {job_id} status {current}->{requested}")
    return action


@dataclasses.dataclass
class Policy:
    """Per-AOI retry settings."""

    retry_count: int = 0
    retry_backoff: float = 30.0
    max_temporary_retries: int = 5
    defer_deadline: float = 7 * 86400.0

    def backoff(self, n: int) -> float:
        """Delay before the n-th re-run (n ≥ 1): backoff × 2^(n-1), capped at one hour."""
        return min(self.retry_backoff * (2 ** max(n - 1, 0)), 3600.0) if self.retry_backoff > 0 else 0.0


def _row(store: Store, kind: str, job_id: int) -> dict[str, Any]:
    return store.job(kind, job_id)


def _update(store: Store, kind: str, job_id: int, **values: Any) -> None:
    """Set columns of a job; a status change ends a deferral unless `deferred_since` is given."""
    values["updated_at"] = now_text()
    if "status" in values:
        values.setdefault("deferred_since", None)
    store.update_job(kind, job_id, values)


_CLEAR_LEASE = {"lease_run": None, "lease_expires": None}


# --- release -------------------------------------------------------------------------------------

def release(store: Store, tile_ids: Iterable[int]) -> list[int]:
    """NEW → PENDING for the given tiles that are ready (scene DONE, previous and reference null or DONE)."""
    return store.release_tiles(tile_ids, now_text())


def release_ready(store: Store, aoi_id: int) -> int:
    """Release every NEW tile of the AOI that is ready but was not released (a store edited by hand or
    by an older version, an interrupted cascade): without this it would wait forever. One statement;
    returns how many."""
    return store.release_ready_tiles(aoi_id, now_text())


def _release_after_tile(store: Store, tile_id: int) -> list[int]:
    return store.release_linked([tile_id], now_text())


def _release_scene_tiles(store: Store, scene_id: int) -> list[int]:
    return store.release_scene_tiles([scene_id], now_text())


# --- actions -------------------------------------------------------------------------------------

def _finish(store: Store, kind: str, job_id: int) -> None:
    _update(store, kind, job_id, status=DONE, message="", not_before=0, temporary_count=0, **_CLEAR_LEASE)
    if kind == "scene":
        _release_scene_tiles(store, job_id)
    else:
        _release_after_tile(store, job_id)


def _retry(store: Store, kind: str, row: dict[str, Any], message: str, policy: Policy) -> str:
    countdown = row["retry_countdown"]
    if countdown > 0:
        n = policy.retry_count - countdown + 1
        _update(store, kind, row["id"], status=PENDING, message=message, retry_countdown=countdown - 1,
                temporary_count=0, not_before=monotonic_now() + policy.backoff(n), **_CLEAR_LEASE)
        return PENDING
    _update(store, kind, row["id"], status=RETRY, message=message, **_CLEAR_LEASE)
    return RETRY


def _manual_retry(store: Store, kind: str, row: dict[str, Any], policy: Policy) -> None:
    if kind == "tile":
        scene_status = store.job_status("scene", row["scene_id"])
        if scene_status != DONE:
            raise TransitionError(f"cannot retry tile {row['id']} with scene status {scene_status}")
        for link in ("prev", "ref"):
            if row[link] is not None and row[link] != row["id"]:
                status = store.job_status("tile", row[link])
                if status != DONE:
                    name = "previous" if link == "prev" else "reference"
                    raise TransitionError(f"cannot retry tile {row['id']}: its {name} tile {row[link]} is {status}")
    _update(store, kind, row["id"], status=PENDING, retry_countdown=policy.retry_count, temporary_count=0,
            not_before=0, **_CLEAR_LEASE)


def fail_tile(store: Store, tile_id: int, message: str, force: bool = False) -> list[int]:
    """The fail cascade (docs/workflow.md, "Fail cascade"); returns the tiles released by it."""
    row = _row(store, "tile", tile_id)
    prev, ref = row["prev"], row["ref"]
    if prev is not None and not force:
        statuses = store.tile_and_scene_status(prev)
        if statuses is not None and FAILED in statuses:
            raise TransitionError(f"cannot fail tile {tile_id}: its previous tile {prev} or its scene is FAILED")
    children = store.children(tile_id)
    if not force:
        for child in children:
            status = store.job_status("tile", child)
            if status != NEW:
                raise TransitionError(f"cannot fail tile {tile_id}: child tile {child} status {status}")
    keep = {} if row["status"] == FAILED else {"failed_prev": prev, "failed_ref": ref}
    _update(store, "tile", tile_id, status=FAILED, message=message, prev=None, **keep, **_CLEAR_LEASE)
    now = now_text()
    if prev is None and ref is None and children:
        new_root = children[0]
        store.set_links(new_root, None, None, now)
        for child in children[1:]:
            store.set_links(child, new_root, new_root, now)
        store.move_refs(tile_id, new_root, now, keep=new_root)
    else:
        for child in children:  # never the child's own previous (a failed tile of a cycle A ⇄ B)
            store.set_prev(child, None if prev == child else prev, now)
        store.move_refs(tile_id, ref, now)
    return release(store, children)


def fail_scene(store: Store, scene_id: int, message: str, force: bool = False) -> None:
    """Fail a scene and, with the cascade, every tile of it."""
    tiles = store.tiles_of_scene(scene_id)
    if not force:
        for tid, status in tiles:
            if status != NEW:
                raise TransitionError(f"cannot fail scene {scene_id}: tile {tid} status {status}")
    _update(store, "scene", scene_id, status=FAILED, message=message, **_CLEAR_LEASE)
    for tid, status in tiles:
        if status != FAILED:
            fail_tile(store, tid, f"scene {scene_id} failed: {message}" if message else f"scene {scene_id} failed",
                      force=True)


def set_status(store: Store, kind: str, job_id: int, requested: str, message: str = "",
               force: bool = False, policy: Policy | None = None) -> str | None:
    """Apply one status change per the transition table, in one transaction. Returns the status the
    job ends in, or None when nothing changed (same status)."""
    with store.transaction():
        return _transition(store, kind, _row(store, kind, job_id), requested, message, force, policy or Policy())


def _transition(store: Store, kind: str, row: dict[str, Any], requested: str, message: str, force: bool,
                policy: Policy) -> str | None:
    """`set_status` on a job row already read (inside the caller's transaction)."""
    job_id = row["id"]
    action = action_for(kind, job_id, row["status"], requested, force)
    if action is None:
        return None
    if action == "finish":
        _finish(store, kind, job_id)
        return DONE
    if action == "retry":
        return _retry(store, kind, row, message, policy)
    if action == "manual_retry":
        _manual_retry(store, kind, row, policy)
        return PENDING
    if action == "fail":
        if kind == "tile":
            fail_tile(store, job_id, message, force)
        else:
            fail_scene(store, job_id, message, force)
        return FAILED
    _update(store, kind, job_id, status=requested, message=message, **_CLEAR_LEASE)
    return requested


# --- forced retry ----------------------------------------------------------------------------------

def _alive_link(store: Store, link: int | None, column: str) -> int | None:
    """`link`, or when it is FAILED the link it had before its own cascade, and so on."""
    seen: set[int] = set()
    while link is not None and link not in seen:
        seen.add(link)
        found = store.earlier_link(link, column)
        if found is None:
            return None
        status, earlier = found
        if status != FAILED:
            return link
        link = earlier
    return None


def _revive_tile(store: Store, row: dict[str, Any], policy: Policy) -> None:
    """A FAILED or RETRY tile → NEW with a fresh budget (links restored when it was FAILED)."""
    values: dict[str, Any] = {}
    if row["status"] == FAILED:
        prev = _alive_link(store, row["failed_prev"], "failed_prev")
        ref = row["failed_ref"]
        ref = row["id"] if ref == row["id"] else _alive_link(store, ref, "failed_ref")
        if ref is None and prev is not None:  # a chain needs a reference: the root of its previous
            ref = store.root_of(prev)
        values = {"prev": prev, "ref": ref, "failed_prev": None, "failed_ref": None}
    _update(store, "tile", row["id"], status=NEW, retry_countdown=policy.retry_count, temporary_count=0,
            not_before=0, **values, **_CLEAR_LEASE)


def force_retry(store: Store, kind: str, job_id: int, policy: Policy) -> list[int]:
    """FAILED/RETRY → back in the workflow with a fresh budget (see the module docstring); returns the
    ids of the jobs revived (a scene: itself and its tiles). Call inside a transaction."""
    row = _row(store, kind, job_id)
    if row["status"] not in (FAILED, RETRY):
        raise TransitionError(f"cannot retry {kind} {job_id}: its status is {row['status']}, not FAILED or RETRY")
    if kind == "scene":
        _update(store, "scene", job_id, status=PENDING, message="", retry_countdown=policy.retry_count,
                temporary_count=0, not_before=0, **_CLEAR_LEASE)
        revived = [job_id]
        for tid, _status in store.tiles_of_scene(job_id, (FAILED, RETRY)):
            _revive_tile(store, _row(store, "tile", tid), policy)
            revived.append(tid)
        return revived
    scene_status = store.job_status("scene", row["scene_id"])
    if scene_status == FAILED:
        raise TransitionError(f"cannot retry tile {job_id}: its scene {row['scene_id']} is FAILED "
                              f"(retry the scene: ingester retry --force --scene {row['scene_id']})")
    _revive_tile(store, row, policy)
    release(store, [job_id])
    return [job_id]


def force_retry_aoi(store: Store, aoi_id: int, policy: Policy) -> int:
    """Every FAILED/RETRY scene and tile of the AOI, oldest first, in the caller's transaction."""
    n = 0
    for sid in store.jobs_in_status("scene", aoi_id, (FAILED, RETRY), by="date"):
        n += len(force_retry(store, "scene", sid, policy))
    for tid in store.jobs_in_status("tile", aoi_id, (FAILED, RETRY), by="date"):
        n += len(force_retry(store, "tile", tid, policy))
    return n


def retry_aoi(store: Store, aoi_id: int, policy: Policy) -> int:
    """RETRY → PENDING for every RETRY job of the AOI (scenes, then tiles, by id), each with a fresh
    budget, in the caller's transaction. Returns how many."""
    n = 0
    for kind in ("scene", "tile"):
        ids = store.jobs_in_status(kind, aoi_id, (RETRY,))
        for job_id in ids:
            set_status(store, kind, job_id, PENDING, policy=policy)
        n += len(ids)
    return n


def make_due(store: Store, kind: str, job_id: int | None = None, aoi_id: int | None = None) -> int:
    """PENDING jobs waiting for a later time (deferred or backed off) become due now: one job, or every
    job of an AOI. Returns how many. Nothing else changes (no budget restored, none consumed)."""
    return store.make_due(kind, monotonic_now(), now_text(), job_id=job_id, aoi_id=aoi_id)


# --- what a command changed by hand, in the jobs' history ----------------------------------------------

def note_manual_changes(store: Store, aoi_id: int, before: dict[tuple[str, int], str], run_id: str, message: str,
                        messages: dict[tuple[str, int], str] | None = None) -> int:
    """A `manual` attempt row (`history`: `manual → <status>`) for every job of the AOI whose status a
    command (`fail`, `retry`, `verify`) changed since `before` (`store.job_statuses`), with `message`
    or the job's own in `messages`; a tile merely released by the change (NEW → PENDING, as after any
    job) is not an event. Call inside the command's transaction. Returns how many rows."""
    import os

    from ingester.store import host_name

    host, pid, now, n = host_name(), os.getpid(), now_text(), 0
    for (kind, job_id), status in store.job_statuses(aoi_id).items():
        old = before.get((kind, job_id))
        if old == status or (old == NEW and status == PENDING and (kind, job_id) not in (messages or {})):
            continue
        store.add_attempt(kind, job_id, aoi_id, store.job_attempts(kind, job_id), run_id, host, pid, now, "manual",
                          status, (messages or {}).get((kind, job_id), message))
        n += 1
    return n


# --- rebuilding what storage lost (ingester verify) ------------------------------------------------

def rebuild(store: Store, kind: str, job_id: int, policy: Policy, message: str) -> str:
    """A DONE job whose stored files are missing or damaged goes back into the workflow with a fresh
    budget (call inside a transaction): a scene → PENDING (its download runs again; its DONE tiles stay
    DONE), a tile → NEW, then PENDING at once when its scene, previous and reference are DONE. The
    PENDING tiles that take it as previous or reference wait for it again (NEW). Returns the status."""
    row = _row(store, kind, job_id)
    if row["status"] != DONE:
        raise TransitionError(f"cannot rebuild {kind} {job_id}: its status is {row['status']}, not DONE")
    if kind == "scene":
        set_status(store, "scene", job_id, PENDING, message, force=True, policy=policy)
        _update(store, "scene", job_id, message=message)
        return PENDING
    set_status(store, "tile", job_id, NEW, message, force=True, policy=policy)
    _update(store, "tile", job_id, retry_countdown=policy.retry_count, temporary_count=0, not_before=0)
    store.hold_dependents(job_id, now_text())
    return PENDING if release(store, [job_id]) else NEW


# --- job outcomes --------------------------------------------------------------------------------

# The words of every message about an attempt (run summary, history, job logs): the worker's *outcome*
# (done, temporary, fatal, error; abandoned when a run was interrupted) → the job's *status* after it.
TEMPORARY_EXHAUSTED = "temporary once more after"
_AFTER = {
    PENDING: "re-queued",
    RETRY: "waits for `ingester retry`",
    FAILED: "",
    DONE: "",
}


def attempt_result(outcome: str | None, status: str | None, message: str = "") -> str:
    """`outcome → status (what it means)`, e.g. `error → PENDING (automatic re-run)`; `running` while
    the attempt is not finished."""
    if not outcome:
        return "running"
    if not status:
        return outcome
    meaning = _AFTER.get(status, "")
    if status == PENDING and (outcome in ("error", "fatal") or TEMPORARY_EXHAUSTED in message):
        meaning = "automatic re-run"
    elif status == PENDING and outcome == "deferred":
        meaning = "waits for a later try" if "INGESTER_DEFER_DEADLINE" not in message else "automatic re-run"
    return f"{outcome} → {status}" + (f" ({meaning})" if meaning else "")


def is_retriable(store: Store, kind: str, job_id: int) -> bool:
    return bool(store.job_data(kind, job_id).get("is_retriable", False))


def apply_outcome(store: Store, kind: str, job_id: int, result: JobResult, policy: Policy) -> str:
    """Write a job's result (call inside a transaction); returns the job's new status.

    `temporary` re-queues the job after a backoff (bounded), the others go through `set_status`."""
    row = _row(store, kind, job_id)
    if row["status"] != PENDING:
        raise TransitionError(f"{kind} {job_id} finished while {row['status']}; result ignored")
    outcome = result.outcome
    message = result.message
    if outcome == "deferred":
        now = monotonic_now()
        since = row["deferred_since"] if row["deferred_since"] is not None else now
        if now - since <= policy.defer_deadline:
            retry_at = result.retry_at if result.retry_at is not None else now + policy.retry_backoff
            _update(store, kind, job_id, message=message, not_before=max(float(retry_at), now), deferred_since=since,
                    **_CLEAR_LEASE)
            return PENDING
        outcome = "error"
        message = (f"{message} (still waiting after {duration_text(policy.defer_deadline)}: given up; "
                   "INGESTER_DEFER_DEADLINE sets how long a job may wait)")
    if outcome == "temporary":
        count = row["temporary_count"] + 1
        if count <= policy.max_temporary_retries:
            _update(store, kind, job_id, temporary_count=count, message=message, deferred_since=None,
                    not_before=monotonic_now() + policy.backoff(count), **_CLEAR_LEASE)
            return PENDING
        outcome = "error"
        message = f"{message} ({TEMPORARY_EXHAUSTED} {policy.max_temporary_retries} re-queues: handled as an error)"
    if outcome == "done":
        requested = DONE
    elif outcome == "fatal":
        requested = FAILED
    elif outcome == "error":
        requested = RETRY if bool(json.loads(row["data"] or "{}").get("is_retriable", False)) else FAILED
    else:
        requested = FAILED
        message = f"unknown outcome {outcome!r}: {message}"
    return _transition(store, kind, row, requested, message, False, policy) or requested


def finish_all(store: Store, kind: str, job_ids: list[int]) -> None:
    """The `done` outcome of several PENDING jobs of one kind at once (call inside a transaction): the
    same change as `apply_outcome` for each (PENDING → DONE, then what they make ready is released),
    in three statements. A job that is not PENDING is a TransitionError (the caller writes the
    batch again job by job)."""
    if not job_ids:
        return
    statuses = store.statuses(kind, job_ids)
    for job_id in job_ids:
        if statuses.get(job_id) != PENDING:
            raise TransitionError(f"{kind} {job_id} finished while {statuses.get(job_id)}; result ignored")
    now = now_text()
    store.finish_jobs(kind, job_ids, now)
    if kind == "scene":
        store.release_scene_tiles(job_ids, now)
    else:
        store.release_linked(job_ids, now)


def duration_text(seconds: float) -> str:
    """3600 → '1 h', 90 → '90 s', 172800 → '2 d' (messages)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


# --- views ---------------------------------------------------------------------------------------

def aoi_status(store: Store, aoi_id: int, scenes: dict[str, int] | None = None) -> str:
    """Highest-priority scene status; if DONE, the same over the tiles of its DONE scenes
    (docs/workflow.md, "AOI status")."""
    scenes = scenes if scenes is not None else store.status_counts("scene", aoi_id)
    if not any(scenes.values()):
        return NEW
    status = next(s for s in PRIORITY if scenes[s])
    if status != DONE:
        return status
    tiles = store.status_counts("tile", aoi_id, done_scenes_only=True)
    return next((s for s in PRIORITY if tiles[s]), DONE)


def summary(store: Store, aoi_id: int) -> dict[str, Any]:
    """The monitoring summary (docs/workflow.md, "Monitoring summary"), empty dates shown as empty
    (docs/original.md, defect 30)."""
    scenes = store.status_counts("scene", aoi_id)
    tiles = store.status_counts("tile", aoi_id)
    roots = store.root_tiles(aoi_id)
    # earliest scene with a root tile / latest scene with a leaf tile: walk the scenes by date
    first = store.first_root_date(aoi_id)
    last = store.last_leaf_date(aoi_id)
    return {
        "aoi": store.aoi_name_of(aoi_id),
        "status": aoi_status(store, aoi_id, scenes),
        "failed_jobs": scenes[FAILED] + tiles[FAILED],
        "scenes": {**{k.lower(): v for k, v in scenes.items()}, "total": sum(scenes.values())},
        "tiles": {**{k.lower(): v for k, v in tiles.items()}, "total": sum(tiles.values())},
        "root_tiles": roots,
        "from": first[:10] if first else "",
        "to": last[:10] if last else "",
    }


def summary_text(s: dict[str, Any]) -> str:
    lines = []
    for title, key in (("Scenes", "scenes"), ("Tiles", "tiles")):
        lines.append(f"{title}:")
        for status in ("new", "pending", "done", "retry", "failed"):
            lines.append(f"  {status + ':':<8} {s[key][status]}")
        lines.append(f"  {'Total:':<8} {s[key]['total']}")
    lines += ["", f"Root tiles : {s['root_tiles']}", f"  From: {s['from'] or '-'}", f"  To:   {s['to'] or '-'}"]
    return "\n".join(lines)


def deferred(store: Store, aoi_id: int, limit: int = 100, now: float | None = None) -> dict[str, Any]:
    """Jobs waiting to be tried again later (PENDING, not running, `not_before` in the future: deferred
    by their worker or backed off after a failure), the earliest next try, and up to `limit` of them
    (soonest first). `tiles_waiting`: NEW tiles of the AOI (they wait for these or for other jobs)."""
    now = monotonic_now() if now is None else now
    counts = {kind: store.waiting_count(kind, aoi_id, now) for kind in ("scene", "tile")}
    jobs = []
    if counts["scene"] or counts["tile"]:
        for w in store.waiting_jobs(aoi_id, now, limit):
            job = {"kind": w.kind, "id": w.id, "source_id": w.source_id, "next_try": epoch_text(w.not_before),
                   "deferred_since": epoch_text(w.deferred_since) if w.deferred_since is not None else "",
                   "message": w.message}
            if w.kind == "tile":
                job["scene_source_id"] = w.scene_source_id
            jobs.append(job)
    waiting = store.count_jobs("tile", aoi_id, NEW) if jobs else 0
    return {"scenes": counts["scene"], "tiles": counts["tile"], "total": counts["scene"] + counts["tile"],
            "next_try": jobs[0]["next_try"] if jobs else "", "tiles_waiting": waiting, "jobs": jobs}


def deferred_text(d: dict[str, Any], shown: int = 10) -> str:
    """The deferred jobs of `deferred()` as text lines (empty when none)."""
    if not d["total"]:
        return ""
    lines = [f"Deferred: {d['total']} job(s), next try {d['next_try']}"]
    for job in d["jobs"][:shown]:
        name = job["source_id"] if job["kind"] == "scene" else f"{job['scene_source_id']}/{job['source_id']}"
        lines.append(f"  {job['kind']} {job['id']}\t{name}\tuntil {job['next_try']}\t{job['message']}".rstrip())
    if d["total"] > shown:
        lines.append(f"  … and {d['total'] - shown} more (ingester status AOI --json lists up to 100)")
    return "\n".join(lines)


def unfinished(store: Store, aoi_id: int) -> dict[str, int]:
    """Jobs that ended RETRY or FAILED, and NEW tiles that can never be released (exit 4 when any)."""
    out = {}
    for kind in ("scene", "tile"):
        for status in (RETRY, FAILED):
            out[f"{kind}_{status.lower()}"] = store.count_jobs(kind, aoi_id, status)
    out["tile_stuck"] = len(stuck_tiles(store, aoi_id))
    return out


def _new_tiles(store: Store, aoi_id: int) -> dict[int, tuple[str, list[int]]]:
    """NEW tile id → (its scene's status, the tiles it waits for: previous, reference other than itself)."""
    rows = store.new_tiles(aoi_id)
    return {tid: (scene_status, [x for x in (prev, ref) if x is not None and x != tid])
            for tid, scene_status, prev, ref in rows}


def stuck_tiles(store: Store, aoi_id: int) -> list[int]:
    """NEW tiles that no run can ever release: nothing they wait for (their scene, previous and
    reference, transitively through other NEW tiles) is PENDING or RETRY, so nothing will ever make
    them ready. A cycle in the links (A.previous = B, B.previous = A) is the usual cause."""
    waiting = _new_tiles(store, aoi_id)
    if not waiting:
        return []
    links = {x for _, deps in waiting.values() for x in deps if x not in waiting}
    status = store.tile_statuses(links)
    alive = {tid for tid, (scene_status, deps) in waiting.items()
             if scene_status in (PENDING, RETRY) or any(status.get(d) in (PENDING, RETRY) for d in deps)}
    dependents: dict[int, list[int]] = {}
    for tid, (_scene_status, deps) in waiting.items():
        for d in deps:
            if d in waiting:
                dependents.setdefault(d, []).append(tid)
    queue = list(alive)
    while queue:  # waiting on a NEW tile that will be released is fine too
        for child in dependents.get(queue.pop(), ()):
            if child not in alive:
                alive.add(child)
                queue.append(child)
    return sorted(set(waiting) - alive)


def explain_stuck(store: Store, aoi_id: int, stuck: list[int]) -> str:
    """One line about tiles that can never be released: the cycle they wait in, or what blocks them."""
    waiting = _new_tiles(store, aoi_id)
    start = stuck[0]
    path = [start]
    while True:
        deps = [d for d in waiting.get(path[-1], ("", []))[1] if d in stuck]
        if not deps:
            scene_status, others = waiting.get(path[-1], ("", []))
            blocker = f"its scene, which is {scene_status}" if scene_status != DONE else \
                ", ".join(f"tile {d}" for d in others) or "nothing (release it with `ingester retry --force`)"
            return f"tile {path[0]} waits for " + "".join(f"tile {t}, which waits for " for t in path[1:]) + blocker
        if deps[0] in path:
            cycle = path[path.index(deps[0]):] + [deps[0]]
            return (f"tile {cycle[0]} waits for " + ", which waits for ".join(f"tile {t}" for t in cycle[1:])
                    + " (a cycle in the previous/reference links)")
        path.append(deps[0])


def _quote(text: str) -> str:
    """A Graphviz quoted id; `\\n` sequences in labels are kept (Graphviz reads them as line breaks)."""
    return '"' + text.replace('"', '\\"') + '"'


def dot(store: Store, aoi_id: int) -> str:
    """The AOI as a Graphviz digraph: quoted ids, every scene, `[style=dotted]` edges
    (docs/workflow.md, "Dot export")."""
    name = store.aoi_name_of(aoi_id)
    scenes, tiles = store.dot_rows(aoi_id)
    scene_status = {sid: status for sid, _, status in scenes}
    lines = [f"digraph {_quote(name)} {{"]
    for sid, source_id, status in scenes:
        label = _quote(f"{source_id}\\n(id={sid})")
        lines.append(f"{_quote(f's{sid}')} [label={label} shape=box color={COLOURS[status]}];")
    for tid, _sid, source_id, status, _prev in tiles:
        label = _quote(f"{source_id}\\n(id={tid})")
        lines.append(f"{_quote(f't{tid}')} [label={label} color={COLOURS[status]}];")
    for tid, sid, _source_id, _status, _prev in tiles:
        style = "" if scene_status.get(sid) == DONE else " style=dotted"
        lines.append(f"{_quote(f's{sid}')} -> {_quote(f't{tid}')} [color=gray{style}];")
    for tid, _sid, _source_id, status, prev in tiles:
        if prev is not None:
            style = "" if status == DONE else " [style=dotted]"
            lines.append(f"{_quote(f't{prev}')} -> {_quote(f't{tid}')}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
