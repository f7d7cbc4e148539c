"""The run loop: one coordinator per AOI owns the store, hands job descriptions to an executor and
writes each result in one transaction.

Crash safety: the AOI's lock (pid, host, start, heartbeat) stops a second run at once (exit 3);
a lock whose process is dead, or whose heartbeat is older than `lease_seconds`, is taken over.
A claimed job carries a lease (run id + expiry renewed by the heartbeat); when a run takes the
lock, the jobs still leased by an earlier run are put back in the queue (attempt `abandoned`).

Waiting: a job that is not ready yet (backed off after a failure, or deferred by its worker until
a later time) is waited for only when it is due within `settings.max_wait` seconds. When nothing
runs and every remaining job waits longer, the run ends: what could run now has run, and the report's
`deferred` lists the jobs a later run (cron) picks up once due (the CLI's exit 5).

Tokens: the coordinator holds the run's only login to CDSE (`tokens.TokenSource` over the process's
token manager, the one the pre-flight check logged in with); scene jobs carry a short-lived access
token and workers ask the coordinator for a fresh one (`ingester.tokens`). Workers get the settings
without the password. When CDSE refuses the account, the run stops at once (exit 1), its jobs back in
the queue: no job retries a refused login.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ingester.config import Settings
from ingester.errors import AuthError, CredentialsRefused, IngesterError, IngesterWarning, LockedError, StoreError
from ingester.executor import Executor, ExecutorBroken, LocalExecutor
from ingester.graph.engines import steps_folder, stop_recorded_steps
from ingester.ingest import aoi_storage, check_run_storage, graph_dirs
from ingester.integrity import missing_files, missing_text
from ingester.jobs import JobResult, SceneJob, TileJob
from ingester.payload import Layer
from ingester.records import index_outputs
from ingester.scenes import Scene
from ingester.storage import resolve_storage_uri
from ingester.store import Store, host_name, monotonic_now, now_text, pid_alive
from ingester.tokens import AccessToken, TokenSource, worker_settings
from ingester.wording import plural
from ingester.workflow import (
    PENDING,
    Policy,
    apply_outcome,
    attempt_result,
    deferred,
    explain_stuck,
    stuck_tiles,
    summary,
    unfinished,
)
from ingester.workflow import release_ready as workflow_release_ready


class StepsKilledWarning(IngesterWarning):
    """A run killed graph steps that an earlier, dead run had left running."""


class MissingFilesWarning(IngesterWarning):
    """Indexed files of the AOI are missing from storage."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


# --- the AOI lock --------------------------------------------------------------------------------

def lock_holder(store: Store, aoi: str, stale_after: float) -> str | None:
    """A description of the live run holding the AOI's lock, or None (free or stale)."""
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
    return f"pid {row.lock_pid} on host {row.lock_host} since {row.lock_started} (run {row.lock_run})"


def check_lock(store: Store, aoi: str, stale_after: float) -> None:
    holder = lock_holder(store, aoi, stale_after)
    if holder:
        raise LockedError(f"AOI {aoi!r} is locked by another run: {holder}")


def acquire_lock(store: Store, aoi: str, run_id: str, stale_after: float) -> None:
    """Take the AOI's lock (inside a transaction); re-queue what a dead run left leased."""
    with store.transaction():
        check_lock(store, aoi, stale_after)
        row = store.aoi(aoi)
        if row is None:
            raise StoreError(f"no AOI named {aoi!r}")
        store.execute("UPDATE aoi SET lock_run = ?, lock_pid = ?, lock_host = ?, lock_started = ?, "
                      "lock_heartbeat = ? WHERE id = ?",
                      (run_id, os.getpid(), host_name(), now_text(), monotonic_now(), row.id))
        requeue_abandoned(store, row.id, run_id)


def release_lock(store: Store, aoi: str, run_id: str) -> None:
    with store.transaction():
        store.execute("UPDATE aoi SET lock_run = NULL, lock_pid = NULL, lock_host = NULL, lock_started = NULL, "
                      "lock_heartbeat = NULL WHERE name = ? AND lock_run = ?", (aoi, run_id))


def requeue_abandoned(store: Store, aoi_id: int, run_id: str) -> int:
    """Jobs leased by another (dead) run go back to the queue; their open attempts end `abandoned`."""
    n = 0
    for kind in ("scene", "tile"):
        n += store.execute(f"UPDATE {kind} SET lease_run = NULL, lease_expires = NULL WHERE aoi_id = ? "
                           "AND lease_run IS NOT NULL AND lease_run != ?", (aoi_id, run_id)).rowcount
    store.execute("UPDATE job_attempt SET finished_at = ?, outcome = 'abandoned', status = 'PENDING', "
                  "message = 'the run was interrupted; job re-queued' WHERE aoi_id = ? AND finished_at IS NULL "
                  "AND run_id != ?", (now_text(), aoi_id, run_id))
    return n


# --- the run -------------------------------------------------------------------------------------

def _append_log(path: str, line: str) -> None:
    """End a job's log with what the workflow made of the attempt (the worker cannot know it)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass  # a log on another host, or removed: the store keeps the same words (history)


@dataclasses.dataclass
class RunReport:
    aoi: str
    run_id: str
    executed: int
    summary: dict[str, Any]
    unfinished: dict[str, int]
    worker_deaths: int = 0
    jobs: int = 0  # distinct jobs that ran in this run (`executed` counts their attempts)
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)  # outcome → attempts in this run
    missing_outputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per job of this run
    deferred: dict[str, Any] = dataclasses.field(default_factory=dict)  # workflow.deferred()
    stuck: str = ""  # why NEW tiles can never be released (a cycle in their links), when some are
    workers: int = 0  # worker processes the run used (0: none started)

    @property
    def attempts(self) -> int:
        return self.executed

    @property
    def failed(self) -> bool:
        return any(self.unfinished.values())

    @property
    def waiting(self) -> int:
        """Jobs that wait to be tried again later (a later run picks them up once due)."""
        return int(self.deferred.get("total", 0))


ExecutorFactory = Callable[[int, Settings], Executor]


def default_executor(workers: int, settings: Settings) -> Executor:
    return LocalExecutor(workers, settings)


def run_token_source(settings: Settings) -> TokenSource:
    """The run's tokens: CDSE's when CDSE is among the providers, OneAtlas's when it is (logged in lazily,
    or already by the pre-flight check: the process shares one token manager per service). Without
    credentials, a worker that asks gets the login's own message ("cdse: no credentials: set …")."""
    from ingester import oneatlas
    from ingester.providers import cdse
    from ingester.providers.chain import provider_order

    factories: dict[str, Any] = {}
    try:
        order = provider_order(settings)
        if "cdse" in order:
            factories["cdse"] = lambda: cdse.login_manager(settings)
        if "oneatlas" in order:
            factories["oneatlas"] = lambda: oneatlas.login_manager(settings)
    except (IngesterError, AuthError):
        pass  # a settings problem is reported by the checks before the run
    return TokenSource(factories)


class Coordinator:
    def __init__(self, store: Store, aoi: str, settings: Settings, run_id: str | None = None,
                 progress: Callable[[str], None] | None = None):
        self.store = store
        self.aoi = store.require_aoi(aoi)
        self.settings = settings
        self.run_id = run_id or new_run_id()
        self.progress = progress or (lambda _text: None)
        conf = self.aoi.settings
        self.policy = Policy(int(conf.get("retry_count", 0)), settings.retry_backoff,
                             settings.max_temporary_retries, settings.defer_deadline)
        self.instances: dict[str, str] = dict(conf.get("instances") or {})
        self.layers = {k: Layer(v[0], v[1], self.instances.get(k, "")) for k, v in (conf.get("layers") or {}).items()}
        self.graph_config: dict[str, str] = dict(conf.get("graph_config") or {})
        self.storage = aoi_storage(conf, settings)  # fixed when the AOI was created
        self.graph_dirs = graph_dirs(conf)
        self.running: dict[Future[JobResult], tuple[str, int, int, int]] = {}  # → kind, id, attempt, attempt row
        self._scenes: dict[int, Scene] = {}
        self.missing_outputs: list[dict[str, Any]] = []  # jobs whose graph did not produce declared outputs
        self.jobs_run: set[tuple[str, int]] = set()
        self.outcomes: dict[str, int] = {}
        self.tokens = run_token_source(settings)

    def job_tokens(self) -> dict[str, AccessToken]:
        """Tokens a scene job carries: CDSE's, when the run may use CDSE. A token that cannot be had now
        (no credentials, identity server down) is left out: the worker asks when it needs one and gets
        the reason; a refused account stops the run."""
        out = {}
        for service in self.tokens.services():
            try:
                out[service] = self.tokens.issue(service)
            except CredentialsRefused:
                raise
            except IngesterError:
                continue
        return out

    # -- claiming -------------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[tuple[str, int, int, int]]:
        """Lease up to `limit` ready jobs (tiles first: they finish chains), in one transaction."""
        claimed: list[tuple[str, int, int, int]] = []
        now = monotonic_now()
        expires = now + self.settings.lease_seconds
        started = now_text()
        with self.store.transaction():
            for kind, order in (("tile", "(SELECT date_key FROM scene WHERE scene.id = tile.scene_id), id"),
                                ("scene", "date_key, id")):
                if len(claimed) >= limit:
                    break
                rows = self.store.execute(
                    f"SELECT id, attempts FROM {kind} WHERE aoi_id = ? AND status = 'PENDING' AND lease_run IS NULL "
                    f"AND not_before <= ? ORDER BY {order} LIMIT ?", (self.aoi.id, now, limit - len(claimed))
                ).fetchall()
                worker = self.settings.tile_worker if kind == "tile" else self.settings.scene_worker
                for job_id, attempts in rows:
                    attempt = attempts + 1
                    self.store.execute(f"UPDATE {kind} SET lease_run = ?, lease_expires = ?, attempts = ? "
                                       "WHERE id = ?", (self.run_id, expires, attempt, job_id))
                    cur = self.store.execute(
                        "INSERT INTO job_attempt (kind, job_id, aoi_id, attempt, run_id, host, pid, worker, "
                        "started_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (kind, job_id, self.aoi.id, attempt, self.run_id, host_name(), os.getpid(), worker, started))
                    claimed.append((kind, job_id, attempt, int(cur.lastrowid or 0)))
        return claimed

    def _storage(self, scene: Scene) -> str:
        """The AOI's storage (a scene's own storage_uri, checked at ingestion, is the same one)."""
        return resolve_storage_uri(scene.storage_uri, self.storage, self.settings)

    def _workdir(self, kind: str, job_id: int, attempt: int) -> str:
        return str(Path(self.settings.workdir) / self.aoi.name / f"{kind}-{job_id}-{attempt}")

    def scene_job(self, scene_id: int, attempt: int) -> SceneJob:
        from ingester.ordering import with_order_terms

        # the AOI's permission to order (set by the latest `ingester aoi`) travels with the job
        scene = with_order_terms(self.store.scene(scene_id, with_tiles=True), self.aoi.settings)
        return SceneJob(scene_id, attempt, self.aoi.name, scene, self._storage(scene),
                        self._workdir("scene", scene_id, attempt), self.graph_dirs, self.job_tokens())

    def _scene(self, scene_id: int) -> Scene:
        """Scene attributes never change during a run: cache them (tiles of a scene share it)."""
        scene = self._scenes.get(scene_id)
        if scene is None:
            if len(self._scenes) > 4096:
                self._scenes.clear()
            scene = self._scenes[scene_id] = self.store.scene(scene_id)
        return scene

    def tile_job(self, tile_id: int, attempt: int) -> TileJob:
        row = self.store.tile_row(tile_id)
        assert row is not None
        scene = self._scene(row.scene_id)
        tile = self.store.tile(tile_id)

        def linked(link_id: int | None):
            if link_id is None:
                return None, None
            link = self.store.tile_row(link_id)
            return self.store.tile(link_id), self._scene(link.scene_id) if link else None

        previous, previous_scene = linked(row.prev)
        reference, reference_scene = linked(row.ref)
        return TileJob(tile_id, attempt, self.aoi.name, scene, tile, previous, previous_scene, reference,
                       reference_scene, self._storage(scene), self._workdir("tile", tile_id, attempt),
                       dict(self.layers), {**self.graph_config, **scene.graph_config}, self.graph_dirs)

    # -- results --------------------------------------------------------------------------------
    def _write(self, done: list[tuple[tuple[str, int, int, int], JobResult]]) -> None:
        with self.store.transaction():
            for (kind, job_id, attempt, attempt_row), result in done:
                if result.outcome == "done" and kind == "tile" and result.outputs:
                    unknown = [o.layer for o in result.outputs if o.layer not in self.instances]
                    if unknown:
                        result = JobResult("error", f"outputs for layer(s) {', '.join(unknown)} that the payload "
                                           "does not declare", log_path=result.log_path)
                try:
                    with self.store.savepoint():
                        status = apply_outcome(self.store, kind, job_id, result, self.policy)
                        if status == "DONE" and kind == "tile":
                            index_outputs(self.store, job_id, result.outputs, self.instances)
                except Exception as exc:  # no record to index into, a bad output value…: the job fails alone
                    status = self.store.one(f"SELECT status FROM {kind} WHERE id = ?", (job_id,))
                    result = JobResult("error", f"cannot record the result: {exc}", log_path=result.log_path)
                    if status == PENDING:
                        status = apply_outcome(self.store, kind, job_id, result, self.policy)
                self.store.execute("UPDATE job_attempt SET started_at = coalesce(?, started_at), finished_at = ?, "
                                   "outcome = ?, status = ?, message = ?, log_path = ? WHERE id = ?",
                                   (result.details.get("started_at"), result.details.get("finished_at") or now_text(),
                                    result.outcome, status, result.message, result.log_path, attempt_row))
                if result.details.get("missing_outputs"):
                    self._note_missing(kind, job_id, list(result.details["missing_outputs"]), status)
                self.jobs_run.add((kind, job_id))
                self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1
                if result.log_path:
                    _append_log(result.log_path, f"[ingester] attempt {attempt}: "
                                f"{attempt_result(result.outcome, status, result.message)}")

    def _note_missing(self, kind: str, job_id: int, outputs: list[str], status: str) -> None:
        if kind == "tile":
            tile, scene = self.store.execute("SELECT t.source_id, s.source_id FROM tile t JOIN scene s "
                                             "ON s.id = t.scene_id WHERE t.id = ?", (job_id,)).fetchone()
        else:
            tile, scene = "", self.store.one("SELECT source_id FROM scene WHERE id = ?", (job_id,))
        self.missing_outputs.append({"kind": kind, "id": job_id, "scene": scene, "tile": tile,
                                     "outputs": outputs, "status": status})

    def _heartbeat(self) -> None:
        now = monotonic_now()
        with self.store.transaction():
            self.store.execute("UPDATE aoi SET lock_heartbeat = ? WHERE id = ? AND lock_run = ?",
                               (now, self.aoi.id, self.run_id))
            for kind in ("scene", "tile"):
                self.store.execute(f"UPDATE {kind} SET lease_expires = ? WHERE aoi_id = ? AND lease_run = ?",
                                   (now + self.settings.lease_seconds, self.aoi.id, self.run_id))

    def _next_wakeup(self) -> float | None:
        """Seconds until the earliest backed-off PENDING job becomes ready (None: none waiting)."""
        t = self.store.one(
            "SELECT min(nb) FROM (SELECT min(not_before) AS nb FROM scene WHERE aoi_id = ?1 AND status = 'PENDING' "
            "AND lease_run IS NULL UNION ALL SELECT min(not_before) FROM tile WHERE aoi_id = ?1 "
            "AND status = 'PENDING' AND lease_run IS NULL)", (self.aoi.id,))
        return None if t is None else max(t - monotonic_now(), 0.0)

    def run(self, executor: Executor) -> RunReport:
        """Run jobs until none can progress; the caller holds the AOI's lock."""
        executed = 0
        capacity = max(executor.capacity * 4, 4)  # jobs in flight: keeps workers fed, batches the writes
        beat_every = max(self.settings.lease_seconds / 3, 0.5)
        last_beat = time.monotonic()
        interrupted = True
        if hasattr(executor, "token_source"):
            executor.token_source = self.tokens.issue
        try:
            while True:
                if len(self.running) < capacity:
                    for kind, job_id, attempt, attempt_row in self._claim(capacity - len(self.running)):
                        try:
                            job = self.scene_job(job_id, attempt) if kind == "scene" else self.tile_job(job_id, attempt)
                            worker = self.settings.scene_worker if kind == "scene" else self.settings.tile_worker
                            future = executor.submit(worker, job)
                        except (ExecutorBroken, CredentialsRefused):
                            self.running[Future()] = (kind, job_id, attempt, attempt_row)  # leased: give back
                            raise
                        except Exception as exc:  # a job that cannot even be described fails alone
                            future = Future()
                            future.set_result(JobResult("error", f"cannot build the {kind} job: {exc}"))
                        self.running[future] = (kind, job_id, attempt, attempt_row)
                if not self.running:
                    wake = self._next_wakeup()
                    if wake is None or wake > self.settings.max_wait:
                        if release_ready(self.store, self.aoi.id):
                            continue  # tiles that were ready but never released: run them now
                        break  # nothing left, or only jobs due later than this run waits: a later run
                    time.sleep(min(wake, beat_every) + 0.01)
                else:
                    done, _ = concurrent.futures.wait(list(self.running), timeout=beat_every,
                                                      return_when=concurrent.futures.FIRST_COMPLETED)
                    broken = next((f.exception() for f in done if f.exception() is not None), None)
                    if broken is not None:  # the executor broke down (ExecutorBroken): stop, jobs re-queued
                        raise broken
                    if self.tokens.refused is not None:  # no job is charged for it: all back in the queue
                        raise CredentialsRefused(f"{self.tokens.refused} — the run stopped: no work goes on with a "
                                                 "refused account; its jobs are back in the queue")
                    batch = [(self.running.pop(f), f.result()) for f in done]
                    if batch:
                        self._write(batch)
                        executed += len(batch)
                        self.progress(f"{plural(len(self.jobs_run), 'job')}, {plural(executed, 'attempt')} finished")
                if time.monotonic() - last_beat >= beat_every:
                    self._heartbeat()
                    last_beat = time.monotonic()
            interrupted = False
        finally:
            # interrupted (Ctrl-C, broken executor), even between a claim and its submit: give the
            # leases back so the next run re-queues at once
            if interrupted or self.running:
                with self.store.transaction():
                    requeue_abandoned(self.store, self.aoi.id, "")
        return run_report(self.store, self.aoi.id, self.run_id, executed, worker_deaths=getattr(executor, "deaths", 0),
                          jobs=len(self.jobs_run), outcomes=dict(self.outcomes),
                          missing_outputs=self.missing_outputs, workers=executor.capacity,
                          deferred=deferred(self.store, self.aoi.id))


def release_ready(store: Store, aoi_id: int) -> int:
    """`workflow.release_ready` in its own transaction."""
    with store.transaction():
        return workflow_release_ready(store, aoi_id)


def pool_size(store: Store, aoi_id: int, requested: int, settings: Settings) -> int:
    """Worker processes for a run: as requested (0: the CPU count), at most INGESTER_MAX_WORKERS, and
    never more than the jobs this run can still run (PENDING scenes and tiles, NEW tiles waiting for
    them): a process with nothing to do costs its start-up and its memory for nothing."""
    runnable = store.one("SELECT (SELECT count(*) FROM scene WHERE aoi_id = ?1 AND status = 'PENDING') + "
                         "(SELECT count(*) FROM tile WHERE aoi_id = ?1 AND status IN ('PENDING', 'NEW'))", (aoi_id,))
    return max(1, min(requested or os.cpu_count() or 1, settings.max_workers, runnable))


def run_report(store: Store, aoi_id: int, run_id: str, executed: int = 0, **more: Any) -> RunReport:
    """The end-of-run summary; NEW tiles that no run can release are counted and explained."""
    left = unfinished(store, aoi_id)
    stuck = ""
    if left.get("tile_stuck"):
        ids = stuck_tiles(store, aoi_id)
        stuck = (f"{len(ids)} tiles can never be released: {explain_stuck(store, aoi_id, ids)}; take one out of the "
                 f"chain with `ingester fail --force --tile {ids[0]}` (its children are re-linked to its previous)")
    more.setdefault("deferred", deferred(store, aoi_id))
    return RunReport(store.aoi_name_of(aoi_id), run_id, executed, summary(store, aoi_id), left, stuck=stuck, **more)


def run_aoi(store: Store, aoi: str, settings: Settings, workers: int = 0, run_id: str | None = None,
            executor_factory: ExecutorFactory = default_executor, lock: bool = True,
            progress: Callable[[str], None] | None = None, downloads: Any = None) -> RunReport:
    """Take the AOI's lock (unless the caller already holds it), run, release. `progress` gets the
    run's counts as text; `downloads` (a queue of a providers.progress.RunDisplay) gets the worker
    processes' download progress (the local pool only)."""
    run_id = run_id or new_run_id()
    check_run_storage(aoi, store.require_aoi(aoi).settings, settings)  # exit 2 before the lock is written
    if lock:
        acquire_lock(store, aoi, run_id, settings.lease_seconds)
    steps = steps_folder(settings.workdir, aoi)
    try:
        # the steps a dead run left running on this host (kill -9, OOM): killed before their jobs run again
        for line in stop_recorded_steps(steps):
            warnings.warn(StepsKilledWarning(f"AOI {aoi}: a dead run had left a graph step's processes running: "
                                             f"{line}"), stacklevel=2)
        missing = missing_files(store, aoi, settings)  # storage emptied between runs: say so, `verify` repairs
        if missing:
            warnings.warn(MissingFilesWarning(missing_text(aoi, missing, what="stored")), stacklevel=2)
        coordinator = Coordinator(store, aoi, settings, run_id, progress)
        release_ready(store, coordinator.aoi.id)
        due = store.one("SELECT min(nb) FROM (SELECT min(not_before) AS nb FROM scene WHERE aoi_id = ?1 "
                        "AND status = ?2 UNION ALL SELECT min(not_before) FROM tile WHERE aoi_id = ?1 AND status = ?2)",
                        (coordinator.aoi.id, PENDING))
        if due is None or due > monotonic_now() + settings.max_wait:  # nothing to run now: no worker started
            return run_report(store, coordinator.aoi.id, run_id)
        size = pool_size(store, coordinator.aoi.id, workers or settings.workers, settings)
        if downloads is not None and executor_factory is default_executor:
            executor: Executor = LocalExecutor(size, worker_settings(settings), progress_queue=downloads)
        else:
            executor = executor_factory(size, worker_settings(settings))
        finished = False
        try:
            report = coordinator.run(executor)
            finished = True
            return report
        finally:
            executor.shutdown(wait=finished)
            if not finished:  # SIGTERM, Ctrl-C, a broken pool: the workers are gone, their steps go too
                stop_recorded_steps(steps)
    finally:
        release_lock(store, aoi, run_id)
