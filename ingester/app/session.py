"""`AoiSession`: one AOI of the store for the length of a `with` block, and what the commands that
change it do (ingest, run, retry, fail, refresh, remove, verify) and `tiles`, each returning a report.

The session is the one place that decides how the store is opened and that holds the AOI's lock:

- a session of a payload (`aoi`, `check`) opens the store when it exists (writable, checked with
  `PRAGMA quick_check`, never created): the input is validated against it, or against an empty
  in-memory store when there is none; the file is created only by `ingest()`, after every check and
  the pre-flight have passed (bad input never leaves a store behind);
- a session of an AOI or of a job (`run`, `retry`, `fail`, `refresh`, `remove`, `verify`) opens an
  existing store writable (a missing one is exit 2 naming the path);
- a read-only session (`tiles`) opens the store read-only when it exists and never locks;
- a live run holding the AOI is refused when the session opens (exit 3), before any check; the lock
  is taken by the first call that writes (after the pre-flight), held until the block ends, and
  released then, whatever happened.

Read-only commands (status, list, history, …) use `ingester.app.reads`, which opens the store
read-only and never creates it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingester import locks
from ingester.app.reports import (
    CheckReport,
    DryRunReport,
    FailReport,
    IngestReport,
    OrderApproval,
    RefreshReport,
    RemoveReport,
    RetryReport,
    TilesReport,
    VerifyReport,
)
from ingester.config import Settings
from ingester.errors import InputError, StoreError
from ingester.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ingester.coordinator import RunReport
    from ingester.http.clients import Clients
    from ingester.ingest import Plan
    from ingester.ordering import Permission
    from ingester.payload import Payload
    from ingester.preflight import Pending, Work


def resolve_target(store: Store, aoi: str | None, scene: int | None, tile: int | None,
                   aoi_allowed: bool = True) -> tuple[str, str | None, int | None]:
    """(AOI name, kind, id) from exactly one of AOI / --scene / --tile."""
    given = [x for x in (aoi, scene, tile) if x is not None]
    if len(given) != 1:
        choices = "AOI, --scene ID or --tile ID" if aoi_allowed else "--scene ID or --tile ID"
        raise InputError(f"give exactly one of {choices} (ids from `ingester list scenes|tiles AOI`)")
    for option, value in (("--scene", scene), ("--tile", tile)):
        if value is not None and not 0 < value < 2**63:  # store ids are positive 64-bit integers
            raise InputError(f"{option} {value}: no {option[2:]} with this id (ids come from "
                             f"`ingester list {option[2:]}s AOI`)")
    if scene is not None:
        row = store.scene_row(scene)
        if row is None:
            raise InputError(f"--scene {scene}: no scene with this id")
        return store.aoi_name_of(row.aoi_id), "scene", scene
    if tile is not None:
        trow = store.tile_row(tile)
        if trow is None:
            raise InputError(f"--tile {tile}: no tile with this id")
        return store.aoi_name_of(trow.aoi_id), "tile", tile
    assert aoi is not None
    return store.require_aoi(aoi).name, None, None


def check_download_settings(settings: Settings) -> None:
    """Provider settings are checked before anything is written: a typo (INGESTER_PROVIDERS=locl) or
    missing credentials are a ConfigError (exit 2), not FAILED jobs. Imported here, not at the top,
    so that `ingester status` does not load the providers."""
    import ingester.providers

    ingester.providers.check_settings(settings)


class AoiSession:
    """One AOI for the length of a `with` block (see the module docstring).

    `AoiSession(settings, payload=PATH)`: the AOI of a payload (`aoi`, `check`); `AoiSession(settings,
    "AOI")`, `(settings, scene=ID)`, `(settings, tile=ID)`: an AOI of the store, or the AOI of a job.
    `runs`: the session runs jobs, so the download settings are checked before the store is opened;
    `check_lock`: refuse (exit 3) an AOI a live run holds when the session opens (not for a dry run);
    `readonly`: read the store, never write it nor lock (`tiles`). `clients`: the HTTP sessions and
    logins of the command (`http.Clients`): the search, the tiling, the estimate, the pre-flight check and
    the run share them, so a command logs in once; without them the session has its own for its block."""

    def __init__(self, settings: Settings, aoi: str | None = None, *, scene: int | None = None,
                 tile: int | None = None, payload: str | Path | Payload | None = None, aoi_allowed: bool = True,
                 runs: bool = False, check_lock: bool = True, readonly: bool = False, order: bool | None = None,
                 max_cost: float | None = None, clients: Clients | None = None):
        self.settings = settings
        self._given_clients = clients
        self.clients: Clients | None = clients
        self._target = (aoi, scene, tile, aoi_allowed)
        self._payload_arg = payload
        self.payload: Payload | None = None
        self.runs = runs
        self.check_lock = check_lock and not readonly
        self.readonly = readonly
        self.store: Store | None = None
        self.name = ""
        self.kind: str | None = None
        self.job_id: int | None = None
        self.run_id: str | None = None  # while the session holds the AOI's lock
        self._pending: Pending | None = None
        self._preflight_done = False
        self._order = (order, max_cost)  # an ingestion's permission to order (None: not asked)
        self._permission: Permission | None = None
        self.approval: OrderApproval | None = None  # what `plan` priced for ordering, when anything

    # -- the block --------------------------------------------------------------------------------
    def __enter__(self) -> AoiSession:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.run_id is not None and self.store is not None:
                locks.release_lock(self.store, self.name, self.run_id)
        finally:
            self.run_id = None
            self._close()

    def _open(self) -> None:
        if self.clients is None:
            from ingester.http.clients import Clients

            self.clients = Clients()  # the block's (closed with it)
        if self._payload_arg is not None:
            from ingester.payload import Payload, load_payload

            self.payload = (self._payload_arg if isinstance(self._payload_arg, Payload)
                            else load_payload(self._payload_arg))
            self.name = self.payload.name
            if self._order[0] is not None:
                from ingester.ordering import permission

                self._permission = permission(self.payload, bool(self._order[0]), self._order[1])
        if self.runs:
            check_download_settings(self.settings)
        if self.payload is not None:
            if Path(self.settings.db).is_file():  # else: checked against an empty store, created by ingest()
                self.store = Store(self.settings.db, create=False, readonly=self.readonly)
        else:
            self.store = Store(self.settings.db, create=False, readonly=self.readonly)
            self.name, self.kind, self.job_id = resolve_target(self.store, *self._target)
        if self.store is not None and self.check_lock:
            locks.check_lock(self.store, self.name, self.settings.lease_seconds)  # exit 3 before any check

    def _close(self) -> None:
        try:
            if self.store is not None:
                self.store.close()
                self.store = None
        finally:
            if self.clients is not None and self.clients is not self._given_clients:
                self.clients.close()
            self.clients = self._given_clients

    @property
    def workers(self) -> int:
        import os

        return self.settings.workers or os.cpu_count() or 1

    def _writable(self) -> Store:
        if self.readonly or self.store is None:
            raise StoreError("this session cannot change the store")
        return self.store

    def _lock(self, check_storage: bool = False) -> Store:
        """Take the AOI's lock (once); `check_storage`: the AOI's storage must still be the settings'
        (exit 2 before the lock is written)."""
        store = self._writable()
        if self.run_id is None:
            if check_storage:
                from ingester.aoi_config import check_run_storage

                check_run_storage(self.name, store.require_aoi(self.name).settings, self.settings)
            from ingester.coordinator import new_run_id

            run_id = new_run_id()
            locks.acquire_lock(store, self.name, run_id, self.settings.lease_seconds)
            self.run_id = run_id
        return store

    def _policy(self, store: Store) -> Any:
        from ingester.workflow import Policy

        row = store.require_aoi(self.name)
        return Policy(int(row.settings.get("retry_count", 0)), self.settings.retry_backoff,
                      self.settings.max_temporary_retries)

    # -- ingesting a payload ------------------------------------------------------------------------
    def plan(self, scenes_file: str | None = None, tiles_file: str | None = None,
             create_layers: bool = False) -> Plan:
        """Read and check the input (scenes searched, or from a scenes/tiles file; tiles inventoried)
        against the store; nothing is written."""
        from ingester import ingest
        from ingester.preflight import pending_work

        payload = self._require_payload()
        if self.store is not None:
            plan = ingest.prepare(self.store, payload, self.settings, scenes_file, tiles_file, create_layers,
                                  clients=self.clients)
            self._pending = pending_work(self.store, payload.name, self.settings)
        else:  # no store yet: the input is validated against an empty one, the file is created only by ingest()
            with Store(":memory:") as empty:
                plan = ingest.prepare(empty, payload, self.settings, scenes_file, tiles_file, create_layers,
                                      clients=self.clients)
        if self._permission is not None:
            self._approve(plan, self._permission)
        return plan

    def _approve(self, plan: Plan, allowed: Permission) -> None:
        """What this ingestion may order, priced before anything is written (`ordering.approve`: exit 2
        above the budget); kept with the AOI by `ingest`."""
        from ingester.ordering import aoi_order_scenes, approve

        scenes = list(plan.scenes) + (aoi_order_scenes(self.store, plan.payload.name) if self.store is not None
                                      else [])
        plan.order, costs = approve(scenes, self.settings, allowed, self.clients)
        self.approval = None if costs is None else OrderApproval(allowed.source, costs.text(), allowed.max_cost)

    def _require_payload(self) -> Payload:
        if self.payload is None:
            raise ValueError("a session of a payload is needed (AoiSession(settings, payload=...))")
        return self.payload

    def work(self, plan: Plan) -> Work:
        """What the plan makes a run do (downloads, graphs), with the AOI's jobs already waiting."""
        from ingester.preflight import plan_work

        payload = self._require_payload()
        return plan_work(payload.name, plan.scenes, payload.storage_uri, (str(Path(payload.path).parent),),
                         self.settings, self._pending)

    def dry_run(self, plan: Plan) -> DryRunReport:
        """What `ingest` and `run` would do, with the pre-flight checks; nothing written or downloaded."""
        from ingester.preflight import run_checks

        work = self.work(plan)
        return DryRunReport(plan.source, len(plan.scenes), sum(len(sc.tiles) for sc in plan.scenes),
                            list(plan.skipped), work, run_checks(work, self.settings, self.workers, self.clients))

    def check(self, plan: Plan) -> CheckReport:
        """The pre-flight checks alone (`ingester check`)."""
        from ingester.payload import Payload
        from ingester.preflight import run_checks

        payload = self._require_payload()
        given = payload.path if isinstance(self._payload_arg, Payload) else str(self._payload_arg)
        return CheckReport(given, payload.name, run_checks(self.work(plan), self.settings, self.workers,
                                                           self.clients))

    def ingest(self, plan: Plan, create_layers: bool = False) -> IngestReport:
        """Pre-flight (exit 2 naming the failed checks), then one transaction: the AOI, its lock,
        layers, records, scenes, tiles. The store file is created here when it did not exist."""
        from ingester import ingest
        from ingester.coordinator import new_run_id
        from ingester.preflight import preflight

        payload = self._require_payload()
        preflight(self.work(plan), self.settings, self.workers, self.clients)
        self._preflight_done = True
        if self.store is None:
            self.store = Store(self.settings.db)
        run_id = new_run_id()
        result = ingest.commit(self.store, plan, run_id, create_layers, self.settings.lease_seconds)
        self.run_id = run_id  # taken in the ingestion's transaction: held until the block ends
        return IngestReport(payload.name, plan.source, result.scenes, result.tiles, result.records_created,
                            result.records_reused, list(result.skipped))

    # -- running --------------------------------------------------------------------------------------
    def preflight(self, scene_statuses: tuple[str, ...] = ("PENDING",),
                  tile_statuses: tuple[str, ...] = ("NEW", "PENDING"), every: bool = False) -> None:
        """The pre-flight checks of the AOI's jobs in these statuses (`every`: also those waiting for a
        later try); exit 2 (1) naming what failed. Nothing is written."""
        from ingester.preflight import pending_work, preflight, work_of

        store = self._writable()
        settings = dataclasses.replace(self.settings, max_wait=math.inf) if every else self.settings
        preflight(work_of([], (), {}, pending_work(store, self.name, settings, scene_statuses, tile_statuses)),
                  self.settings, self.workers, self.clients)
        self._preflight_done = True

    def run(self, progress: Callable[[str], None] | None = None, downloads: Any = None) -> RunReport:
        """Run the AOI's jobs until none can progress now (after the pre-flight, under the lock).
        `progress` gets the run's counts as text; `downloads` (a queue of a providers.progress.RunDisplay)
        the worker processes' download progress."""
        from ingester import coordinator

        if not self._preflight_done:
            self.preflight()
        store = self._lock(check_storage=True)
        return coordinator.run_aoi(store, self.name, self.settings, self.settings.workers, self.run_id, lock=False,
                                   progress=progress, downloads=downloads, clients=self.clients)

    def retry(self, force: bool = False) -> RetryReport:
        """RETRY jobs (with `force`, FAILED ones too) of the AOI, or the session's job, back in the queue
        with a fresh budget, and waiting ones made due now, in one transaction (all or nothing). The
        run follows with `run()`."""
        from ingester.workflow import (
            PENDING,
            TransitionError,
            force_retry,
            force_retry_aoi,
            make_due,
            note_manual_changes,
            retry_aoi,
            set_status,
        )

        retried_statuses = ("PENDING", "RETRY", "FAILED") if force else ("PENDING", "RETRY")
        self.preflight(retried_statuses, ("NEW", *retried_statuses), every=True)
        store = self._lock(check_storage=True)
        policy = self._policy(store)
        kind, job_id = self.kind, self.job_id
        made_due = revived = retried = 0
        command = "ingester retry" + (" --force" if force else "") + (f" --{kind} {job_id}" if kind else "")
        try:
            with store.transaction():
                aoi_id = store.require_aoi(self.name).id
                before = store.job_statuses(aoi_id)
                if kind is not None and job_id is not None:
                    if make_due(store, kind, job_id):
                        made_due = 1
                    elif force:
                        revived = len(force_retry(store, kind, job_id, policy))
                    else:
                        set_status(store, kind, job_id, PENDING, policy=policy)
                        retried = 1
                else:
                    if force:
                        revived = force_retry_aoi(store, aoi_id, policy)
                    else:
                        retried = retry_aoi(store, aoi_id, policy)
                    made_due = make_due(store, "scene", aoi_id=aoi_id) + make_due(store, "tile", aoi_id=aoi_id)
                assert self.run_id is not None
                note_manual_changes(store, aoi_id, before, self.run_id, f"{command}: back in the queue")
        except TransitionError as exc:  # asking to retry a job that cannot be retried: invalid input
            hint = ""
            if not force and kind is not None and "FAILED->" in str(exc):
                hint = f" (a FAILED {kind} comes back with `ingester retry --force --{kind} {job_id}`)"
            raise InputError(f"{exc}{hint}; nothing was changed") from None
        return RetryReport(self.name, kind, job_id, force, made_due, revived, retried)

    # -- repairs ----------------------------------------------------------------------------------------
    def fail(self, message: str = "failed by hand", force: bool = False) -> FailReport:
        """Set the session's scene or tile FAILED, with the fail cascade (docs/workflow.md, "Fail cascade")."""
        from ingester.workflow import FAILED, TransitionError, note_manual_changes, set_status

        assert self.kind is not None and self.job_id is not None
        store = self._lock()
        assert self.run_id is not None
        try:
            with store.transaction():
                aoi_id = store.require_aoi(self.name).id
                before = store.job_statuses(aoi_id)
                set_status(store, self.kind, self.job_id, FAILED, message, force=force)
                command = f"ingester fail --{self.kind} {self.job_id}" + (" --force" if force else "")
                note_manual_changes(store, aoi_id, before, self.run_id, f"{command}: {message}")
        except TransitionError as exc:
            raise InputError(f"{exc} (--force fails it whatever its status)") from None
        row = store.scene_row(self.job_id) if self.kind == "scene" else store.tile_row(self.job_id)
        assert row is not None
        return FailReport(self.name, self.kind, row)

    def refresh(self) -> RefreshReport:
        """Read the session's scene from the CDSE catalogue again and update it (one transaction)."""
        from ingester.scene_ops import refresh_scene

        assert self.job_id is not None
        return RefreshReport(self.name, refresh_scene(self._lock(), self.job_id, self.settings, self.clients))

    def remove(self) -> RemoveReport:
        """Take the session's scene and its tiles out of the AOI (one transaction); its product kept in
        the work folder for a later attempt goes too."""
        from ingester.providers.cache import forget_product
        from ingester.scene_ops import remove_scene

        assert self.job_id is not None
        result = remove_scene(self._lock(), self.job_id)
        forget_product(self.settings, self.name, result.source_id)
        return RemoveReport(self.name, result)

    def verify(self) -> VerifyReport:
        """Re-check what the AOI stored; set back the jobs of missing or damaged files (under the lock)."""
        from ingester.integrity import set_back, verify

        store = self._lock()
        problems, checked = verify(store, self.name, self.settings)
        reset = (set_back(store, self.name, problems, self.settings, holder=self.run_id) if problems
                 else {"scenes": [], "tiles": []})
        return VerifyReport(self.name, checked, problems, reset)

    # -- the tile step ------------------------------------------------------------------------------------
    def tiles(self, scenes_file: str | Path | None, output: str | Path) -> TilesReport:
        """Scenes (the file's, or searched) → tiles chained onto the AOI's tiles in the store (its scenes
        left out), written atomically to `output`. The same tile step as `ingest` with `--scenes`."""
        from ingester.graph.loader import check_payload_graphs
        from ingester.scenes import read_scenes, write_scenes
        from ingester.tiling import NO_ANNOTATION, tile_step

        payload = self._require_payload()
        check_payload_graphs(payload)
        if scenes_file is not None:
            scenes = read_scenes(scenes_file).scenes
        else:
            from ingester.catalogue import search

            scenes = search(payload, self.settings, clients=self.clients).scenes
        existing = self.store.aoi_tiles(payload.name) if self.store is not None else []
        ingested = self.store.scene_ids_in_aoi(payload.name) if self.store is not None else set()
        fresh = [s for s in scenes if s.source_id not in ingested]
        result = tile_step(payload, fresh, self.settings, existing, self.clients)
        write_scenes(output, result.scenes)
        missing = [sid for sid, reason in result.skipped if reason.startswith(NO_ANNOTATION)]
        return TilesReport(str(output), len(result.scenes), sum(len(s.tiles) for s in result.scenes),
                           sum(1 for s in result.scenes for t in s.tiles if t.previous is not None),
                           list(result.skipped), len(missing), bool(ingested), len(scenes) - len(fresh),
                           len(existing))


def add_layer(settings: Settings, variable: str, instance: str, dformat: str | None = None, unit: str = "",
              bands: Sequence[str] = ()) -> tuple[int, bool]:
    """`ingester layers add`: the names and the data format are checked before the store is opened
    (created when it does not exist yet), so that bad input leaves no store behind. Returns (instance
    id, created)."""
    from ingester.records import add_layer as add
    from ingester.records import check_layer

    check_layer(variable, instance, dformat)
    with Store(settings.db) as store:
        return add(store, variable, instance, dformat, unit, bands)
