"""`ingester aoi` (ingest an area and run its jobs), `ingester run` (resume an AOI's pending work) and
`ingester check` (the pre-flight checks alone): parse, call `ingester.app`, render."""

from __future__ import annotations

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
from ingester.wording import plural, status_label

if TYPE_CHECKING:  # the heavy modules (coordinator, payload, shapely) load inside the commands
    from ingester.app import AoiSession, CheckReport, DryRunReport, IngestReport, OrderApproval
    from ingester.config import Settings
    from ingester.coordinator import RunReport
    from ingester.preflight import Report

WorkersOption = typer.Option(None, "--workers", "-w", min=0, parser=whole_number(0),
                             help="Worker processes (default, or 0: the CPU count); "
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


ExecutorOption = typer.Option(
    None, "--executor", help="Where the jobs run: local (a pool of worker processes on this machine) or dask "
    "(a Dask cluster: --scheduler, else a local Dask cluster of --workers processes; needs "
    "`pip install 'ingester[dask]'`) (default: $INGESTER_EXECUTOR or local).")
SchedulerOption = typer.Option(
    None, "--scheduler", metavar="ADDRESS", help="With --executor dask: the Dask scheduler to run the jobs on, "
    "e.g. tcp://10.0.0.5:8786 (default: $INGESTER_DASK_SCHEDULER; empty: a local Dask cluster).")
SharedStorageOption = typer.Option(
    False, "--shared-storage", help="With --executor dask and --scheduler: the storage is a local path that every "
    "Dask worker sees too (a network file system); without it such a run is refused (exit 2) "
    "(default: $INGESTER_SHARED_STORAGE).")


def run_settings(db: str | None, workers: int | None, scene_worker: str | None, tile_worker: str | None,
                 max_wait: float | None = None, executor: str | None = None, scheduler: str | None = None,
                 shared_storage: bool = False) -> Settings:
    s = settings(db=db, workers=workers, scene_worker=scene_worker, tile_worker=tile_worker, max_wait=max_wait,
                 executor=executor, dask_scheduler=scheduler, shared_storage=shared_storage or None)
    from ingester.dask_executor import check_executor_settings, require_distributed

    check_executor_settings(s)
    if s.executor == "dask":  # not installed: exit 2 with the install command, before anything is written
        require_distributed()
    return s


def run_with_progress(ui: UI, session: AoiSession) -> RunReport:
    """Run the session's AOI. On an interactive terminal, a live display: the run's line (jobs and
    attempts finished, all downloads' bytes, throughput and time remaining) and one bar per download
    running in the worker processes; nothing of it otherwise (cron, pipes, --quiet)."""
    if not ui.interactive:
        return session.run()
    from ingester.providers.progress import RunDisplay

    aoi = session.name
    with RunDisplay(ui.err) as display:
        display.status(f"{aoi}: running")
        return session.run(progress=lambda text: display.status(f"{aoi}: {text}"), downloads=display.queue)


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
        ui.info(f"AOI {report.aoi}: {run_counts(report)}; AOI status "
                f"{status_label(report.summary['status'], report.summary['failed_jobs'])}")
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


def render_dry_run(ui: UI, report: DryRunReport, as_json: bool) -> None:
    """What `aoi` would do; exit 2 (1) when a check failed (a service did not answer)."""
    from ingester.preflight import size_text

    work = report.work
    total, unknown = work.announced
    if as_json:
        print_json(report.to_json())
    else:
        for scene_id, reason in report.skipped:
            ui.info(f"would skip {scene_id}: {reason}")
        ui.info(f"Dry run, nothing written: would ingest {plural(report.scenes, 'scene')} and "
                f"{plural(report.tiles, 'tile')} from the {report.source}")
        ui.info(f"would download {plural(len(work.downloads), 'product')}, {size_text(total)} announced"
                + (f" ({unknown} without an announced size)" if unknown else ""))
        ui.info(f"would process {plural(work.scene_jobs, 'scene job')} and {plural(work.tile_jobs, 'tile job')} "
                f"(graphs: {', '.join(report.graphs) or 'none'})")
        render_checks(ui, report.checks)
    if report.checks.failed:
        raise typer.Exit(report.checks.exit_code)


def render_check(ui: UI, report: CheckReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
    else:
        render_checks(ui, report.checks)
    if report.failed:
        if not as_json:
            ui.error(f"check failed: {', '.join(report.failed)}")
        raise typer.Exit(report.checks.exit_code)


def render_ingest(ui: UI, report: IngestReport) -> None:
    for scene_id, reason in report.skipped:
        ui.info(f"skipped {scene_id}: {reason}")
    ui.info(f"Ingestion of {plural(report.scenes, 'scene')} and {plural(report.tiles, 'tile')} from the "
            f"{report.source} "
            f"(records: {report.records_created} created, {report.records_reused} reused)")


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
    executor: str | None = ExecutorOption,
    scheduler: str | None = SchedulerOption,
    shared_storage: bool = SharedStorageOption,
) -> None:
    """Run the pre-flight checks of `ingester aoi` alone, writing nothing: settings, CDSE credentials (one
    token request), the engines the graphs need (gpt, docker, commands), storage and work folder writable,
    free disk space against the announced sizes of the products to download.

    One line per check (ok, failed, unavailable, skipped). Exit 2 when a check fails (1 when a service
    did not answer), naming it."""
    from ingester.app import AoiSession

    s = run_settings(db, workers, None, None, None, executor, scheduler, shared_storage)
    with AoiSession(s, payload=payload, check_lock=False) as session:
        report = session.check(session.plan(_path(scenes), _path(tiles), create_layers))
    render_check(UI(quiet), report, as_json)


def _path(path: Path | None) -> str | None:
    return str(path) if path else None


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
    executor: str | None = ExecutorOption,
    scheduler: str | None = SchedulerOption,
    shared_storage: bool = SharedStorageOption,
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
    from ingester.app import AoiSession

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait, executor, scheduler, shared_storage)
    with AoiSession(s, payload=payload, runs=True, check_lock=not dry_run, order=order, max_cost=max_cost) as session:
        plan = session.plan(_path(scenes), _path(tiles), create_layers)
        render_approval(ui, session.approval)
        if dry_run:
            dry = session.dry_run(plan)
        else:
            ingested = session.ingest(plan, create_layers)
            render_ingest(ui, ingested)
            report = run_with_progress(ui, session)
    if dry_run:
        render_dry_run(ui, dry, as_json)
        return
    render_report(ui, report, as_json, {"ingested": ingested.to_json()})


def render_approval(ui: UI, approval: OrderApproval | None) -> None:
    """What this ingestion may order, as priced before anything was written."""
    if approval is not None:
        budget = f" within the budget of {approval.max_cost:g}" if approval.max_cost is not None else " (no budget set)"
        ui.info(f"ordering allowed by {approval.source}: OneAtlas {approval.estimate}{budget}")


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
    executor: str | None = ExecutorOption,
    scheduler: str | None = SchedulerOption,
    shared_storage: bool = SharedStorageOption,
) -> None:
    """Resume an AOI's pending work (after a crash, a reboot or `ingester retry`) without searching;
    deferred jobs are picked up once due.

    Jobs a dead run left in flight are re-queued. Exit 4 when some jobs ended FAILED or RETRY, or some
    tiles can never be released (a cycle in their links), else 5 when some jobs are deferred (run again
    later)."""
    from ingester.app import AoiSession

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait, executor, scheduler, shared_storage)
    with AoiSession(s, aoi, runs=True) as session:
        report = run_with_progress(ui, session)
    render_report(ui, report, as_json)
