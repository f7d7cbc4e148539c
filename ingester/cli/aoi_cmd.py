"""`ingester aoi` (ingest an area and run its jobs) and `ingester run` (resume an AOI's pending work)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ingester.cli import app
from ingester.cli.common import (
    UI,
    DbOption,
    JsonOption,
    QuietOption,
    command,
    print_json,
    real_number,
    settings,
    whole_number,
)
from ingester.errors import EXIT_DEFERRED, EXIT_JOBS_FAILED
from ingester.wording import plural

if TYPE_CHECKING:  # the heavy modules (coordinator, payload, shapely) load inside the commands
    from ingester.config import Settings
    from ingester.coordinator import RunReport
    from ingester.ingest import Plan
    from ingester.ordering import Permission
    from ingester.preflight import Report, Work
    from ingester.store import Store

WorkersOption = typer.Option(None, "--workers", "-w", min=1, parser=whole_number(1),
                             help="Worker processes (default: the CPU count); "
                             "never more than the jobs the run can run, at most $INGESTER_MAX_WORKERS (32).")
SceneWorkerOption = typer.Option(
    None, "--scene-worker", help="Advanced: import path `module:function` of the scene worker "
    "(default: $INGESTER_SCENE_WORKER or ingester.providers.worker:run_scene_job).")
MaxWaitOption = typer.Option(
    None, "--max-wait", min=0, parser=real_number(0),
    help="Seconds the run waits for a job that is not ready yet (backed off after a "
    "failure, or deferred: offline product, order in progress); a job due later is left for a later run "
    "and the run ends with exit 5 (default: $INGESTER_MAX_WAIT or 60).")
TileWorkerOption = typer.Option(
    None, "--tile-worker", help="Advanced: import path `module:function` of the tile worker "
    "(default: $INGESTER_TILE_WORKER or ingester.graph.worker:run_tile_job).")


def run_settings(db: str | None, workers: int | None, scene_worker: str | None, tile_worker: str | None,
                 max_wait: float | None = None) -> Settings:
    return settings(db=db, workers=workers, scene_worker=scene_worker, tile_worker=tile_worker, max_wait=max_wait)


def check_download_settings(s: Settings) -> None:
    """Provider settings are checked before anything is written: a typo (INGESTER_PROVIDERS=locl) or
    missing credentials are a ConfigError (exit 2), not FAILED jobs. Imported here, not at the top,
    so that `ingester status` does not load the providers."""
    from ingester.providers import check_settings

    check_settings(s)


def run_with_progress(ui: UI, store: Store, aoi: str, s: Settings, run_id: str | None = None,
                      lock: bool = True) -> RunReport:
    """Run the AOI. On an interactive terminal, a live display: the run's line (jobs and attempts
    finished, all downloads' bytes, throughput and time remaining) and one bar per download running
    in the worker processes; nothing of it otherwise (cron, pipes, --quiet)."""
    from ingester.coordinator import run_aoi

    if not ui.interactive:
        return run_aoi(store, aoi, s, s.workers, run_id, lock=lock)
    from ingester.providers.progress import RunDisplay

    with RunDisplay(ui.err) as display:
        display.status(f"{aoi}: running")
        return run_aoi(store, aoi, s, s.workers, run_id, lock=lock,
                       progress=lambda text: display.status(f"{aoi}: {text}"), downloads=display.queue)


OUTCOME_ORDER = ("done", "deferred", "temporary", "error", "fatal")


def run_counts(report: RunReport) -> str:
    """`27 jobs, 38 attempts in this run (27 done, 8 temporary, 3 error)`: a job runs once per attempt."""
    text = f"{plural(report.jobs, 'job')}, {plural(report.attempts, 'attempt')} in this run"
    order = [*OUTCOME_ORDER, *sorted(set(report.outcomes) - set(OUTCOME_ORDER))]
    parts = [f"{report.outcomes[o]} {o}" for o in order if report.outcomes.get(o)]
    return text + (f" ({', '.join(parts)})" if parts else "")


MISSING_SHOWN = 10  # jobs listed with their missing outputs; the rest are counted


def render_missing_outputs(ui: UI, report: RunReport) -> None:
    """Warn (always: it explains a FAILED/RETRY) about the jobs whose graph did not produce declared outputs."""
    items = report.missing_outputs
    for item in items[:MISSING_SHOWN]:
        what = f"tile {item['tile']} of scene {item['scene']}" if item["kind"] == "tile" else f"scene {item['scene']}"
        ui.warn(f"{what} ({item['kind']} id {item['id']}): declared outputs not produced: "
                f"{', '.join(item['outputs'])} (job now {item['status']})")
    if len(items) > MISSING_SHOWN:
        ui.warn(f"… and {len(items) - MISSING_SHOWN} more jobs with outputs not produced "
                f"(`ingester history --{items[0]['kind']} ID` shows each job's message)")


def render_report(ui: UI, report: RunReport, as_json: bool, extra: dict | None = None) -> None:
    """Print the run summary (stderr text, or JSON on stdout); exit 4 when jobs ended FAILED/RETRY,
    else 5 when jobs wait to be tried again later (deferred or backed off beyond --max-wait)."""
    from ingester.workflow import deferred_text, summary_text

    if as_json:
        print_json({**(extra or {}), "aoi": report.aoi, "run_id": report.run_id, "jobs": report.jobs,
                    "attempts": report.attempts, "executed": report.executed, "outcomes": report.outcomes,
                    "workers": report.workers, "summary": report.summary, "unfinished": report.unfinished,
                    "missing_outputs": report.missing_outputs, "deferred": report.deferred})
    else:
        ui.info(f"AOI {report.aoi}: {run_counts(report)}; AOI status {report.summary['status']}")
        ui.info(summary_text(report.summary))
        if report.waiting:
            ui.info(deferred_text(report.deferred))
    render_missing_outputs(ui, report)
    if report.stuck:
        ui.error(report.stuck)
    if report.waiting:
        d = report.deferred
        behind = f"; {d['tiles_waiting']} tile(s) wait for them" if d.get("tiles_waiting") else ""
        ui.warn(f"finished what could run now; {report.waiting} job(s) deferred until {d['next_try']} or later"
                f"{behind}: run again then (`ingester run {report.aoi}`, e.g. from cron); "
                f"`ingester status {report.aoi}` says why each waits")
    if report.failed:
        u = {k: v for k, v in report.unfinished.items() if k != "tile_stuck"}
        if not any(u.values()):
            raise typer.Exit(EXIT_JOBS_FAILED)
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in u.items() if v)
        hints = []
        for status, then in (("retry", f"then `ingester retry {report.aoi}`"),
                             ("failed", f"then after fixing the cause `ingester retry --force {report.aoi}`")):
            kinds = [k for k in ("scene", "tile") if u.get(f"{k}_{status}")]
            if kinds:
                lists = " and ".join(f"`ingester list {k}s {report.aoi} --status {status.upper()}`" for k in kinds)
                hints.append(f"{lists} and `ingester history --{kinds[0]} ID`, {then}")
        ui.error(f"some jobs did not finish: {counts} (see {'; '.join(hints)})")
        raise typer.Exit(EXIT_JOBS_FAILED)
    if report.waiting:
        raise typer.Exit(EXIT_DEFERRED)


def render_checks(ui: UI, report: Report) -> None:
    """One aligned row per check (status, name, detail); failed rows in capitals, shown even with --quiet."""
    for check in report.checks:
        bad = check.status in ("failed", "unavailable")
        line = f"{check.status.upper() if bad else check.status:<11} {check.name:<12} {check.detail}"
        if bad:
            ui.always(line)
        else:
            ui.info(line)


def render_dry_run(ui: UI, plan: Plan, work: Work, report: Report, as_json: bool) -> None:
    """What `aoi` would do; exit 2 (1) when a check failed (a service did not answer)."""
    from ingester.preflight import size_text

    total, unknown = work.announced
    graphs = sorted({name for (name, _scene) in work.graphs})
    new_tiles = sum(len(sc.tiles) for sc in plan.scenes)
    if as_json:
        print_json({"dry_run": True, "ingest": {"scenes": len(plan.scenes), "tiles": new_tiles,
                                                "skipped": len(plan.skipped), "source": plan.source},
                    "download": {"products": len(work.downloads), "bytes": total, "without_size": unknown},
                    "process": {"scene_jobs": work.scene_jobs, "tile_jobs": work.tile_jobs, "graphs": graphs},
                    "checks": report.to_json(), "exit_code": report.exit_code})
    else:
        for scene_id, reason in plan.skipped:
            ui.info(f"would skip {scene_id}: {reason}")
        ui.info(f"Dry run, nothing written: would ingest {plural(len(plan.scenes), 'scene')} and "
                f"{plural(new_tiles, 'tile')} from the "
                f"{plan.source}")
        ui.info(f"would download {plural(len(work.downloads), 'product')}, {size_text(total)} announced"
                + (f" ({unknown} without an announced size)" if unknown else ""))
        ui.info(f"would process {plural(work.scene_jobs, 'scene job')} and {plural(work.tile_jobs, 'tile job')} "
                f"(graphs: {', '.join(graphs) or 'none'})")
        render_checks(ui, report)
    if report.failed:
        raise typer.Exit(report.exit_code)


@app.command("check")
@command
def check_command(
    payload: Path = typer.Argument(..., help="Payload file, as for `ingester aoi`."),
    scenes: Path | None = typer.Option(None, "--scenes", help="Check for these scenes (as `aoi --scenes`)."),
    tiles: Path | None = typer.Option(None, "--tiles", help="Check for these scenes and tiles (as `aoi --tiles`)."),
    workers: int | None = WorkersOption,
    db: str | None = DbOption,
    create_layers: bool = typer.Option(False, "--create-layers", help="As for `aoi`: missing layers would be "
                                       "created (else they are an input error)."),
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Run the pre-flight checks of `ingester aoi` alone, writing nothing: settings, CDSE credentials (one
    token request), the engines the graphs need (gpt, docker, commands), storage and work folder writable,
    free disk space against the announced sizes of the products to download.

    One line per check (ok, failed, unavailable, skipped). Exit 2 when a check fails (1 when a service
    did not answer), naming it."""
    from ingester.ingest import prepare
    from ingester.payload import load_payload
    from ingester.preflight import pending_work, plan_work, run_checks
    from ingester.store import Store

    ui = UI(quiet)
    s = run_settings(db, workers, None, None)
    loaded = load_payload(payload)
    scenes_file, tiles_file = (str(scenes) if scenes else None), (str(tiles) if tiles else None)
    pending = None
    if Path(s.db).is_file():
        with Store(s.db, create=False) as store:
            plan = prepare(store, loaded, s, scenes_file, tiles_file, create_layers)
            pending = pending_work(store, loaded.name, s)
    else:
        with Store(":memory:") as empty:
            plan = prepare(empty, loaded, s, scenes_file, tiles_file, create_layers)
    work = plan_work(loaded.name, plan.scenes, loaded.storage_uri, (str(Path(loaded.path).parent),), s, pending)
    report = run_checks(work, s, s.workers or os.cpu_count() or 1)
    failed = [c.name for c in report.failed]
    if as_json:
        print_json({"payload": str(payload), "aoi": loaded.name, "checks": report.to_json(), "ok": not failed,
                    "exit_code": report.exit_code})
    else:
        render_checks(ui, report)
    if failed:
        if not as_json:
            ui.error(f"check failed: {', '.join(failed)}")
        raise typer.Exit(report.exit_code)


@app.command("aoi")
@command
def aoi_command(
    payload: Path = typer.Argument(..., help="Payload file (GeoJSON AOI + period + constellation + graphs + layers)."),
    scenes: Path | None = typer.Option(None, "--scenes", help="Ingest exactly these scenes (tiles are computed)."),
    tiles: Path | None = typer.Option(None, "--tiles", help="Ingest these scenes with their tiles as given."),
    workers: int | None = WorkersOption,
    db: str | None = DbOption,
    create_layers: bool = typer.Option(
        False, "--create-layers", help="Create the payload's missing layers, each in the data format its tile "
        "graph indexes it in (else float32,0,0,1)."),
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
    scene_worker: str | None = SceneWorkerOption,
    tile_worker: str | None = TileWorkerOption,
    max_wait: float | None = MaxWaitOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be ingested, downloaded (count, "
                                 "announced bytes) and processed, and the pre-flight checks; write nothing, "
                                 "download nothing (exit 2 when a check fails)."),
    order: bool = typer.Option(
        False, "--order", help="Allow this run to order the OneAtlas products it needs (they cost credits; also the "
        "payload parameter \"order\": \"true\"). Without it nothing is ordered: such a scene ends RETRY/FAILED "
        "saying so. What may be ordered is priced first; `run` and `retry` keep the latest `aoi`'s permission."),
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0, metavar="N", parser=real_number(0),
        help="With --order: refuse the whole ingestion (exit 2, nothing "
        "written or ordered) when the estimated price of what it may order exceeds N (the account's unit, e.g. "
        "credits); default: the payload's maxCost, else no limit."),
) -> None:
    """Ingest an area: scenes (searched, or from --scenes/--tiles) → records, scenes and tiles in the store,
    then run one download job per scene and one processing job per tile until no job can progress.

    Without a file the catalogue is searched. Scenes already in the AOI are skipped; re-running is safe.
    Pre-flight checks (credentials, engines, storage, disk space: `ingester check`) run before anything
    is written. OneAtlas products are ordered only with --order (or the payload's order), within
    --max-cost. Exit 4 when some jobs ended FAILED or RETRY, or some tiles can never be released, else 5
    when some jobs are deferred (run again later: orders being processed, offline products)."""
    from ingester.coordinator import check_lock, new_run_id
    from ingester.ingest import commit, prepare
    from ingester.ordering import permission
    from ingester.payload import load_payload
    from ingester.preflight import pending_work, plan_work, preflight, run_checks
    from ingester.store import Store

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait)
    loaded = load_payload(payload)
    allowed = permission(loaded, order, max_cost)
    check_download_settings(s)
    scenes_file, tiles_file = (str(scenes) if scenes else None), (str(tiles) if tiles else None)
    run_id = new_run_id()
    store: Store | None = None
    pending = None
    if Path(s.db).is_file():
        store = Store(s.db, create=False)
        try:
            if not dry_run:
                check_lock(store, loaded.name, s.lease_seconds)
            plan = prepare(store, loaded, s, scenes_file, tiles_file, create_layers)
            pending = pending_work(store, loaded.name, s)
            approve_orders(ui, plan, allowed, s, store)
        except BaseException:
            store.close()
            raise
    else:  # no store yet: the input is validated against an empty one, the file is created only then
        with Store(":memory:") as empty:
            plan = prepare(empty, loaded, s, scenes_file, tiles_file, create_layers)
        approve_orders(ui, plan, allowed, s, None)
    work = plan_work(loaded.name, plan.scenes, loaded.storage_uri, (str(Path(loaded.path).parent),), s, pending)
    if dry_run:
        if store is not None:
            store.close()
        render_dry_run(ui, plan, work, run_checks(work, s, s.workers or os.cpu_count() or 1), as_json)
        return
    try:
        preflight(work, s, s.workers or os.cpu_count() or 1)
    except BaseException:
        if store is not None:
            store.close()
        raise
    if store is None:
        store = Store(s.db)
    with store:
        result = commit(store, plan, run_id, create_layers, s.lease_seconds)
        for scene_id, reason in result.skipped:
            ui.info(f"skipped {scene_id}: {reason}")
        ui.info(f"Ingestion of {plural(result.scenes, 'scene')} and {plural(result.tiles, 'tile')} from the "
                f"{plan.source} "
                f"(records: {result.records_created} created, {result.records_reused} reused)")
        report = run_with_progress(ui, store, loaded.name, s, run_id, lock=False)
        extra = {"ingested": {"scenes": result.scenes, "tiles": result.tiles, "skipped": len(result.skipped),
                              "records_created": result.records_created, "records_reused": result.records_reused}}
        render_report(ui, report, as_json, extra)


def approve_orders(ui: UI, plan: Plan, allowed: Permission, s: Settings, store: Store | None) -> None:
    """What this ingestion may order, priced before anything is written (ordering.approve: exit 2 above
    the budget); kept with the AOI by `commit`."""
    from ingester.ordering import aoi_order_scenes, approve

    scenes = list(plan.scenes) + (aoi_order_scenes(store, plan.payload.name) if store is not None else [])
    plan.order, costs = approve(scenes, s, allowed)
    if costs is not None:
        budget = f" within the budget of {allowed.max_cost:g}" if allowed.max_cost is not None else " (no budget set)"
        ui.info(f"ordering allowed by {allowed.source}: OneAtlas {costs.text()}{budget}")


@app.command("run")
@command
def run_command(
    aoi: str = typer.Argument(..., help="AOI name (the payload's name)."),
    workers: int | None = WorkersOption,
    db: str | None = DbOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
    scene_worker: str | None = SceneWorkerOption,
    tile_worker: str | None = TileWorkerOption,
    max_wait: float | None = MaxWaitOption,
) -> None:
    """Resume an AOI's pending work (after a crash, a reboot or `ingester retry`) without searching;
    deferred jobs are picked up once due.

    Jobs a dead run left in flight are re-queued. Exit 4 when some jobs ended FAILED or RETRY, or some
    tiles can never be released (a cycle in their links), else 5 when some jobs are deferred (run again
    later)."""
    from ingester.coordinator import check_lock
    from ingester.preflight import pending_work, preflight, work_of
    from ingester.store import Store

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait)
    check_download_settings(s)
    with Store(s.db, create=False) as store:
        store.require_aoi(aoi)
        check_lock(store, aoi, s.lease_seconds)  # a run in progress is exit 3 before any check
        preflight(work_of([], (), {}, pending_work(store, aoi, s)), s, s.workers or os.cpu_count() or 1)
        render_report(ui, run_with_progress(ui, store, aoi, s), as_json)
