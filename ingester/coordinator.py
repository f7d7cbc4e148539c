"""The run loop: one coordinator per AOI owns the store, hands job descriptions to an executor and
writes the results in batches, one transaction per batch.

Crash safety: the AOI's lock (`ingester.locks`: pid, host, start, heartbeat) stops a second run at
once (exit 3); a lock whose process is dead, or whose heartbeat is older than `lease_seconds`, is
taken over. A claimed job carries a lease (run id + expiry renewed by the heartbeat); when a run
takes the lock, the jobs still leased by an earlier run are put back in the queue (attempt `abandoned`).

The executor is anything with `submit(worker path, job) -> Future[JobResult]` (a local process pool,
later a Dask cluster). The coordinator never waits on one future in turn: every future reports its
completion to one queue, and each turn of the loop writes every result that arrived (and claims the
next jobs) in one transaction. Claims walk an index of the ready jobs (the store's `CLAIM_SQL`), so
the bookkeeping of a job costs the same at a thousand and at hundreds of thousands of jobs.

Waiting: a job that is not ready yet (backed off after a failure, or deferred by its worker until
a later time) is waited for only when it is due within `settings.max_wait` seconds. When nothing
runs and every remaining job waits longer, the run ends: what could run now has run, and the report's
`deferred` lists the jobs a later run (cron) picks up once due (the CLI's exit 5).

Tokens: the coordinator holds the run's only login to CDSE (`http.tokens.TokenSource` over the token
manager of the run's `Clients`, the one the pre-flight check logged in with when the caller passes the
same clients); scene jobs carry a short-lived access token and workers ask the coordinator for a fresh
one (`ingester.http.tokens`). Workers get the settings
without the password. When CDSE refuses the account, the run stops at once (exit 1), its jobs back in
the queue: no job retries a refused login.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ingester.aoi_config import aoi_storage, check_run_storage, graph_dirs
from ingester.config import Settings
from ingester.errors import AuthError, CredentialsRefused, IngesterError, IngesterWarning
from ingester.executor import Executor, ExecutorBroken, LocalExecutor
from ingester.graph.engines import steps_folder, stop_recorded_steps
from ingester.http.clients import Clients
from ingester.http.tokens import AccessToken, TokenSource, worker_settings
from ingester.integrity import missing_files, missing_text
from ingester.jobs import JobResult, SceneJob, TileJob
from ingester.locks import (  # noqa: F401 - the lock's functions, also reachable from here
    acquire_lock,
    check_lock,
    lock_holder,
    release_lock,
    requeue_abandoned,
)
from ingester.payload import Layer
from ingester.records import index_outputs
from ingester.scenes import Scene, Tile
from ingester.storage import resolve_storage_uri
from ingester.store import Store, host_name, monotonic_now, now_text
from ingester.store.reads import JobTiles
from ingester.wording import plural
from ingester.workflow import (
    PENDING,
    Policy,
    apply_outcome,
    attempt_result,
    deferred,
    explain_stuck,
    finish_all,
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
    """The executor `settings.executor` names: a local process pool, or a Dask cluster."""
    if settings.executor == "dask":
        from ingester.dask_executor import DaskExecutor

        return DaskExecutor(workers, settings, settings.dask_scheduler)
    return LocalExecutor(workers, settings)


def check_executor(storage: str, settings: Settings) -> None:
    """A Dask run needs `distributed`, and storage its workers see: ConfigError (exit 2) otherwise."""
    if settings.executor == "dask":
        from ingester.dask_executor import check_shared_storage, require_distributed
        from ingester.errors import ConfigError

        require_distributed()
        if unshared := check_shared_storage({storage}, settings):
            raise ConfigError(unshared)


def run_token_source(settings: Settings, clients: Clients) -> TokenSource:
    """The run's tokens: CDSE's when CDSE is among the providers, OneAtlas's when it is (logged in lazily,
    or already by the pre-flight check on the same `clients`: one token manager per service). Without
    credentials, a worker that asks gets the login's own message ("cdse: no credentials: set …")."""
    from ingester import oneatlas
    from ingester.providers import cdse
    from ingester.providers.chain import provider_order

    factories: dict[str, Any] = {}
    try:
        order = provider_order(settings)
        if "cdse" in order:
            factories["cdse"] = lambda: cdse.login_manager(settings, clients)
        if "oneatlas" in order:
            factories["oneatlas"] = lambda: oneatlas.login_manager(settings, clients)
    except (IngesterError, AuthError):
        pass  # a settings problem is reported by the checks before the run
    return TokenSource(factories)


class Coordinator:
    in_flight_per_worker = 16  # jobs claimed and submitted per worker process at most (larger batches)
    def __init__(self, store: Store, aoi: str, settings: Settings, run_id: str | None = None,
                 progress: Callable[[str], None] | None = None, clients: Clients | None = None):
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
        self._finished: queue.SimpleQueue[Future[JobResult]] = queue.SimpleQueue()  # futures as they end
        self._host, self._pid = host_name(), os.getpid()
        self._workroot = str(Path(settings.workdir) / self.aoi.name)
        self._scenes: dict[int, Scene] = {}
        self._tiles: dict[int, Tile] = {}  # the tiles this run described (see tile_job)
        self._batch_scenes: dict[int, Scene] = {}  # what _prefetch read for the claimed jobs
        self._batch_tiles: JobTiles | None = None
        self.missing_outputs: list[dict[str, Any]] = []  # jobs whose graph did not produce declared outputs
        self._missing_by_job: dict[tuple[str, int], dict[str, Any]] = {}  # the same entries, by (kind, id)
        self.jobs_run: set[tuple[str, int]] = set()
        self.outcomes: dict[str, int] = {}
        self.clients = clients if clients is not None else Clients()  # the run's login (token managers)
        self.tokens = run_token_source(settings, self.clients)

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
        """Lease up to `limit` ready jobs (tiles first: they finish chains), in the caller's transaction
        (or one of its own)."""
        claimed: list[tuple[str, int, int, int]] = []
        if limit <= 0:
            return claimed
        now = monotonic_now()
        expires = now + self.settings.lease_seconds
        started = now_text()
        with self.store.transaction():
            for kind in ("tile", "scene"):
                if len(claimed) >= limit:
                    break
                worker = self.settings.tile_worker if kind == "tile" else self.settings.scene_worker
                for job_id, attempt, attempt_row in self.store.claim(
                        kind, self.aoi.id, self.run_id, limit - len(claimed), now, expires, self._host, self._pid,
                        worker, started):
                    claimed.append((kind, job_id, attempt, attempt_row))
        return claimed

    def _storage(self, scene: Scene) -> str:
        """The AOI's storage (a scene's own storage_uri, checked at ingestion, is the same one)."""
        return resolve_storage_uri(scene.storage_uri, self.storage, self.settings)

    def _workdir(self, kind: str, job_id: int, attempt: int) -> str:
        return os.path.join(self._workroot, f"{kind}-{job_id}-{attempt}")

    def _prefetch(self, claimed: list[tuple[str, int, int, int]]) -> None:
        """Read what the claimed jobs' descriptions need in a few queries for the whole batch (the
        descriptions are then built from it; a job the batch lacks is read alone)."""
        scenes = [job_id for kind, job_id, _attempt, _row in claimed if kind == "scene"]
        tiles = [job_id for kind, job_id, _attempt, _row in claimed if kind == "tile"]
        self._batch_scenes = self.store.scene_models(scenes, with_tiles=True) if scenes else {}
        if len(self._tiles) > 16384:
            self._tiles.clear()
        self._batch_tiles = self.store.jobs_tiles(tiles, known=self._tiles) if tiles else None
        if self._batch_tiles is not None:
            missing = [sid for sid in set(self._batch_tiles.scene_ids.values()) if sid not in self._scenes]
            if len(self._scenes) + len(missing) > 4096:
                self._scenes.clear()
            self._scenes.update(self.store.scene_models(missing))

    def scene_job(self, scene_id: int, attempt: int) -> SceneJob:
        from ingester.ordering import with_order_terms

        # the AOI's permission to order (set by the latest `ingester aoi`) travels with the job
        scene = self._batch_scenes.pop(scene_id, None) or self.store.scene(scene_id, with_tiles=True)
        scene = with_order_terms(scene, self.aoi.settings)
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
        """The job of a tile with its previous and reference. Those are DONE (the release rule), and
        the attributes and links of a tile do not change during a run once its previous is DONE
        (nothing else fails or re-links it: the run holds the lock). So the models of the tiles this run
        describes are kept for the jobs that follow (a tile is the previous of the next acquisition's,
        a chain's root the reference of all of them); the tile of the job itself is always read anew."""
        batch = self._batch_tiles
        if batch is not None and tile_id in batch.links and tile_id in batch.tiles:
            parts = dataclasses.replace(batch, prev=batch.links[tile_id][0], ref=batch.links[tile_id][1])
        else:
            if len(self._tiles) > 16384:
                self._tiles.clear()
            parts = self.store.job_tiles(tile_id, known=self._tiles)
        scene = self._scene(parts.scene_ids[tile_id])
        self._tiles[tile_id] = parts.tiles[tile_id]

        def linked(link_id: int | None):
            if link_id is None:
                return None, None
            if link_id == tile_id:
                return parts.tiles[link_id], scene
            tile = parts.tiles.get(link_id) or self._tiles[link_id]
            self._tiles[link_id] = tile
            return tile, self._scene(parts.scene_ids[link_id])

        previous, previous_scene = linked(parts.prev)
        reference, reference_scene = linked(parts.ref)
        return TileJob(tile_id, attempt, self.aoi.name, scene, parts.tiles[tile_id], previous, previous_scene,
                       reference, reference_scene, self._storage(scene), self._workdir("tile", tile_id, attempt),
                       dict(self.layers), {**self.graph_config, **scene.graph_config}, self.graph_dirs)

    def _submit(self, executor: Executor, claimed: list[tuple[str, int, int, int]]) -> None:
        """Describe and submit claimed jobs; each future reports its end to the completion queue."""
        try:
            self._prefetch(claimed)
        except Exception:  # noqa: BLE001 - each job is then read alone (and fails alone if it cannot be)
            self._batch_scenes, self._batch_tiles = {}, None
        for kind, job_id, attempt, attempt_row in claimed:
            try:
                job = self.scene_job(job_id, attempt) if kind == "scene" else self.tile_job(job_id, attempt)
                worker = self.settings.scene_worker if kind == "scene" else self.settings.tile_worker
                future = executor.submit(worker, job)
            except (ExecutorBroken, CredentialsRefused):
                self.running[Future()] = (kind, job_id, attempt, attempt_row)  # leased: given back
                raise
            except Exception as exc:  # a job that cannot even be described fails alone
                future = Future()
                future.set_result(JobResult("error", f"cannot build the {kind} job: {exc}"))
            self.running[future] = (kind, job_id, attempt, attempt_row)
            future.add_done_callback(self._finished.put)

    # -- results --------------------------------------------------------------------------------
    def _write(self, done: list[tuple[tuple[str, int, int, int], JobResult]]) -> None:
        """Write a batch of results (in the caller's transaction, or one of its own). A result that
        cannot be recorded (no record to index into, a bad output value…) fails its job alone: the batch
        is written at once, and only when one result fails is it written again job by job, each in a
        savepoint of its own."""
        checked = [(job, self._declared(job[0], result)) for job, result in done]
        with self.store.transaction():
            try:
                with self.store.savepoint("batch"):
                    written = self._apply_batch(checked)
            except Exception:  # noqa: BLE001 - written again one by one below: the culprit fails alone
                written = [(job, *self._apply_alone(job[0], job[1], result)) for job, result in checked]
            self.store.finish_attempts([
                (result.details.get("started_at"), result.details.get("finished_at") or now_text(), result.outcome,
                 status, result.message, result.log_path, attempt_row)
                for (_kind, _job_id, _attempt, attempt_row), result, status in written])
            self.store.set_ran_on([(str(result.details["ran_on"]), row)  # the Dask worker that ran it
                                   for (_k, _j, _a, row), result, _s in written if result.details.get("ran_on")])
        for (kind, job_id, attempt, _row), result, status in written:
            self._note_missing(kind, job_id, list(result.details.get("missing_outputs") or ()), status)
            self.jobs_run.add((kind, job_id))
            self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1
            if result.log_path:
                _append_log(result.log_path, f"[ingester] attempt {attempt}: "
                            f"{attempt_result(result.outcome, status, result.message)}")

    def _declared(self, kind: str, result: JobResult) -> JobResult:
        """A tile's outputs must be for layers the payload declares; otherwise the job is an error."""
        if result.outcome == "done" and kind == "tile" and result.outputs:
            unknown = [o.layer for o in result.outputs if o.layer not in self.instances]
            if unknown:
                return JobResult("error", f"outputs for layer(s) {', '.join(unknown)} that the payload "
                                 "does not declare", log_path=result.log_path)
        return result

    def _apply_batch(self, checked: list[tuple[tuple[str, int, int, int], JobResult]]
                     ) -> list[tuple[tuple[str, int, int, int], JobResult, str]]:
        """The results of a batch: the plain `done` ones (no output to index) of each kind at once
        (`workflow.finish_all`), the others one by one."""
        plain: dict[str, list[int]] = {"scene": [], "tile": []}
        statuses: dict[tuple[str, int], str] = {}
        for (kind, job_id, _attempt, _row), result in checked:
            if result.outcome == "done" and not result.outputs:
                plain[kind].append(job_id)
                statuses[(kind, job_id)] = "DONE"
            else:
                statuses[(kind, job_id)] = self._apply(kind, job_id, result)
        for kind, job_ids in plain.items():
            finish_all(self.store, kind, job_ids)
        return [(job, result, statuses[(job[0], job[1])]) for job, result in checked]

    def _apply(self, kind: str, job_id: int, result: JobResult) -> str:
        status = apply_outcome(self.store, kind, job_id, result, self.policy)
        if status == "DONE" and kind == "tile":
            index_outputs(self.store, job_id, result.outputs, self.instances)
        return status

    def _apply_alone(self, kind: str, job_id: int, result: JobResult) -> tuple[JobResult, str]:
        try:
            with self.store.savepoint():
                return result, self._apply(kind, job_id, result)
        except Exception as exc:  # no record to index into, a bad output value…: the job fails alone
            status = self.store.job_status(kind, job_id) or ""
            result = JobResult("error", f"cannot record the result: {exc}", log_path=result.log_path)
            if status == PENDING:
                status = apply_outcome(self.store, kind, job_id, result, self.policy)
            return result, status

    def _note_missing(self, kind: str, job_id: int, outputs: list[str], status: str) -> None:
        """One entry per job however many of its attempts missed outputs in this run: each output named
        once, and the status its last attempt led to (a later attempt updates it)."""
        noted = self._missing_by_job.get((kind, job_id))
        if noted is not None:
            noted["outputs"].extend(o for o in outputs if o not in noted["outputs"])
            noted["status"] = status
            return
        if not outputs:
            return
        scene, tile = self.store.job_names(kind, job_id)
        noted = {"kind": kind, "id": job_id, "scene": scene, "tile": tile, "outputs": list(dict.fromkeys(outputs)),
                 "status": status}
        self._missing_by_job[(kind, job_id)] = noted
        self.missing_outputs.append(noted)

    def _heartbeat(self) -> None:
        with self.store.transaction():
            self.store.beat(self.aoi.id, self.run_id, monotonic_now(), self.settings.lease_seconds)

    def _next_wakeup(self) -> float | None:
        """Seconds until the earliest backed-off PENDING job becomes ready (None: none waiting)."""
        t = self.store.next_try(self.aoi.id)
        return None if t is None else max(t - monotonic_now(), 0.0)

    def _collect(self, timeout: float) -> list[Future[JobResult]]:
        """The futures that finished: waits up to `timeout` for the first, then takes every one that
        has finished meanwhile (one batch, one transaction)."""
        try:
            done = [self._finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self._finished.get_nowait())
            except queue.Empty:
                return done

    def run(self, executor: Executor) -> RunReport:
        """Run jobs until none can progress; the caller holds the AOI's lock."""
        executed = 0
        # jobs in flight: keeps workers fed, batches the writes (a Dask cluster asks for more: a longer round trip)
        capacity = max(executor.capacity * getattr(executor, "in_flight_per_worker", self.in_flight_per_worker), 4)
        beat_every = max(self.settings.lease_seconds / 3, 0.5)
        last_beat = time.monotonic()
        interrupted = True
        if hasattr(executor, "token_source"):
            executor.token_source = self.tokens.issue
        try:
            self._submit(executor, self._claim(capacity))
            while True:
                if not self.running:
                    wake = self._next_wakeup()
                    if wake is None or wake > self.settings.max_wait:
                        if release_ready(self.store, self.aoi.id):
                            self._submit(executor, self._claim(capacity))
                            continue  # tiles that were ready but never released: run them now
                        break  # nothing left, or only jobs due later than this run waits: a later run
                    time.sleep(min(wake, beat_every) + 0.01)
                    self._submit(executor, self._claim(capacity))
                else:
                    done = [f for f in self._collect(beat_every) if f in self.running]
                    broken = next((f.exception() for f in done if f.exception() is not None), None)
                    if broken is not None:  # the executor broke down (ExecutorBroken): stop, jobs re-queued
                        raise broken
                    if self.tokens.refused is not None:  # no job is charged for it: all back in the queue
                        raise CredentialsRefused(f"{self.tokens.refused} — the run stopped: no work goes on with a "
                                                 "refused account; its jobs are back in the queue")
                    batch = [(self.running.pop(f), f.result()) for f in done]
                    if batch:
                        with self.store.transaction():  # the results, and the jobs they make ready, at once
                            self._write(batch)
                            claimed = self._claim(capacity - len(self.running))
                        executed += len(batch)
                        self.progress(f"{plural(len(self.jobs_run), 'job')}, {plural(executed, 'attempt')} "
                                      "finished")
                        self._submit(executor, claimed)
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
    runnable = store.runnable_jobs(aoi_id)
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
            progress: Callable[[str], None] | None = None, downloads: Any = None,
            clients: Clients | None = None) -> RunReport:
    """Run the AOI's jobs. With `lock`, take the AOI's lock first and release it at the end; without,
    the caller holds it (`ingester.app.AoiSession`) and releases it. `progress` gets the run's counts
    as text; `downloads` (a queue of a providers.progress.RunDisplay) gets the worker processes'
    download progress (the local pool only); `clients` hold the run's login (pass those of the
    pre-flight check: one login per run; without them, the run logs in on clients of its own)."""
    if clients is None:
        with Clients() as own:
            return run_aoi(store, aoi, settings, workers, run_id, executor_factory, lock, progress, downloads, own)
    run_id = run_id or new_run_id()
    storage = check_run_storage(aoi, store.require_aoi(aoi).settings, settings)  # exit 2 before the lock is written
    check_executor(storage, settings)
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
        coordinator = Coordinator(store, aoi, settings, run_id, progress, clients)
        release_ready(store, coordinator.aoi.id)
        due = store.next_try(coordinator.aoi.id, leased=True)
        if due is None or due > monotonic_now() + settings.max_wait:  # nothing to run now: no worker started
            return run_report(store, coordinator.aoi.id, run_id)
        size = pool_size(store, coordinator.aoi.id, workers or settings.workers, settings)
        if downloads is not None and executor_factory is default_executor and settings.executor == "local":
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
        if lock:
            release_lock(store, aoi, run_id)
