"""Monitoring and repair: status, aois, list scenes|tiles, retry, fail, refresh, remove, history, dot."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ingester.cli import app
from ingester.cli.aoi_cmd import (
    MaxWaitOption,
    SceneWorkerOption,
    TileWorkerOption,
    WorkersOption,
    check_download_settings,
    render_report,
    run_settings,
    run_with_progress,
)
from ingester.cli.common import (
    UI,
    DbOption,
    JsonOption,
    QuietOption,
    check_output_file,
    command,
    print_json,
    refuse_output_over_inputs,
    settings,
    whole_number,
)
from ingester.errors import InputError
from ingester.wording import plural

if TYPE_CHECKING:
    from ingester.store import Store

# kept here (not imported from the store) so that loading the command line stays light
STATUSES = ("NEW", "PENDING", "DONE", "RETRY", "FAILED")

list_app = typer.Typer(help="List an AOI's scenes or tiles.", no_args_is_help=True)
app.add_typer(list_app, name="list")

StatusOption = typer.Option(None, "--status", "-s", help=f"Only this status ({', '.join(STATUSES)}).")


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in STATUSES:
        raise InputError(f"--status {value!r}: unknown status; known: {', '.join(STATUSES)}")
    return value.upper()


@app.command("status")
@command
def status_command(
    aoi: str | None = typer.Argument(None, help="AOI name (default: every AOI)."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
    map_path: Path | None = typer.Option(None, "--map", help="Also write the AOI's status map here (.png or .html; "
                                         "needs the maps extra), as `ingester map AOI -o PATH` does."),
) -> None:
    """Scenes and tiles per status, root tiles and their date range (one AOI or all), and the jobs
    that wait to be tried again later (deferred or backed off) with their next try and why."""
    from ingester.store import Store
    from ingester.workflow import deferred, deferred_text, summary, summary_text

    if map_path is not None:
        from ingester.cli.views_cmd import MAP_SUFFIXES, check_map_output

        if not aoi:
            raise InputError("--map needs an AOI: `ingester status AOI --map PATH`")
        check_map_output("status --map", map_path, MAP_SUFFIXES)
    s = settings(db=db)
    with Store(s.db, readonly=True) as store:
        names = [store.require_aoi(aoi).name] if aoi else store.aoi_names()
        summaries = []
        for n in names:
            aoi_id = store.require_aoi(n).id
            summaries.append({**summary(store, aoi_id), "deferred": deferred(store, aoi_id)})
    if as_json:
        print_json(summaries[0] if aoi else summaries)
    else:
        if not summaries:
            typer.echo("no AOI in the store")
        for i, item in enumerate(summaries):
            if i:
                typer.echo("")
            typer.echo(f"AOI {item['aoi']} ({item['status']})")
            typer.echo(summary_text(item))
            if item["deferred"]["total"]:
                typer.echo(deferred_text(item["deferred"]))
    if map_path is not None:
        from ingester.cli.views_cmd import write_map
        from ingester.views.source import open_view

        drawn = write_map(open_view(names[0], None, s.db), map_path, "status")
        UI().info(f"status map of {names[0]}: {plural(drawn, 'footprint')}, coloured by status → {map_path}")


@app.command("aois")
@command
def aois_command(db: str | None = DbOption, as_json: bool = JsonOption) -> None:
    """The AOIs of the store, with their status and counts."""
    from ingester.store import Store
    from ingester.workflow import aoi_status

    s = settings(db=db)
    with Store(s.db, readonly=True) as store:
        rows = []
        for name in store.aoi_names():
            row = store.require_aoi(name)
            scenes = store.one("SELECT count(*) FROM scene WHERE aoi_id = ?", (row.id,))
            tiles = store.one("SELECT count(*) FROM tile WHERE aoi_id = ?", (row.id,))
            rows.append({"aoi": name, "status": aoi_status(store, row.id), "scenes": scenes, "tiles": tiles,
                         "locked_by": f"pid {row.lock_pid} on {row.lock_host}" if row.lock_run else ""})
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['aoi']}\t{r['status']}\t{r['scenes']} scenes\t{r['tiles']} tiles"
                   + (f"\tlocked by {r['locked_by']}" if r["locked_by"] else ""))


@list_app.command("scenes")
@command
def list_scenes(
    aoi: str = typer.Argument(..., help="AOI name."),
    status: str | None = StatusOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """The AOI's scenes, oldest first: id, status, date, source id, last message (a header row first;
    --json for scripts)."""
    from ingester.store import Store

    s = settings(db=db)
    wanted = _status(status)
    with Store(s.db, readonly=True) as store:
        rows = store.scene_rows(store.require_aoi(aoi).id, wanted)
    if as_json:
        print_json([{**r.to_json(), "aoi": aoi} for r in rows])
        return
    typer.echo("id\tstatus\tdate\tsource_id\tmessage")
    for r in rows:
        typer.echo(f"{r.id}\t{r.status}\t{r.date}\t{r.source_id}\t{r.message}".rstrip())


@list_app.command("tiles")
@command
def list_tiles(
    aoi: str = typer.Argument(..., help="AOI name."),
    status: str | None = StatusOption,
    geojson: bool = typer.Option(False, "--geojson", help="Print a GeoJSON FeatureCollection of the tiles."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """The AOI's tiles, oldest scene first: id, status, date, scene, tile, previous and reference tile ids,
    last message (a header row first; --json for scripts)."""
    from ingester.geometry import GeometryError, from_wkt, to_geojson
    from ingester.store import Store

    s = settings(db=db)
    wanted = _status(status)
    with Store(s.db, readonly=True) as store:
        aoi_id = store.require_aoi(aoi).id
        rows = store.tile_rows(aoi_id, wanted)
        wkts = {tid: json.loads(data).get("wkt", "") for tid, data in store.execute(
            "SELECT id, data FROM tile WHERE aoi_id = ?", (aoi_id,))} if geojson else {}
    if geojson:
        features = []
        for r in rows:
            try:
                geometry = to_geojson(from_wkt(wkts[r.id]))
            except GeometryError:
                geometry = None
            features.append({"type": "Feature", "id": r.id, "geometry": geometry,
                             "properties": {**r.to_json(), "aoi": aoi}})
        print_json({"type": "FeatureCollection", "features": features})
        return
    if as_json:
        print_json([{**r.to_json(), "aoi": aoi} for r in rows])
        return
    typer.echo("id\tstatus\tdate\tscene\ttile\tprevious\treference\tmessage")
    for r in rows:
        typer.echo(f"{r.id}\t{r.status}\t{r.date}\t{r.scene_source_id}\t{r.source_id}\t"
                   f"{r.prev or '-'}\t{r.ref or '-'}\t{r.message}".rstrip())


def _target(store: Store, aoi: str | None, scene: int | None, tile: int | None,
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


@app.command("retry")
@command
def retry_command(
    aoi: str | None = typer.Argument(None, help="AOI name: retry all its RETRY (with --force also FAILED) jobs."),
    scene: int | None = typer.Option(None, "--scene", parser=whole_number(), help="Retry this scene (store id)."),
    tile: int | None = typer.Option(None, "--tile", parser=whole_number(), help="Retry this tile (store id)."),
    force: bool = typer.Option(False, "--force", help="Also bring back FAILED jobs (a scene with its FAILED tiles, "
                               "re-linked to the chain), with a fresh retry budget."),
    workers: int | None = WorkersOption,
    db: str | None = DbOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
    scene_worker: str | None = SceneWorkerOption,
    tile_worker: str | None = TileWorkerOption,
    max_wait: float | None = MaxWaitOption,
) -> None:
    """RETRY → PENDING (with a fresh retry budget), then run the AOI. DONE work is never redone. A job
    waiting for a later try (deferred, or backed off) is made due now.

    With --force, FAILED jobs come back too (fix the cause first): a scene → PENDING and its FAILED
    tiles → NEW; a tile → NEW, released when its scene and previous are DONE. All changes are made in
    one transaction: either every job is retried or none."""
    from ingester.coordinator import acquire_lock, check_lock, new_run_id, release_lock
    from ingester.preflight import pending_work, preflight, work_of
    from ingester.store import Store
    from ingester.workflow import (
        PENDING,
        RETRY,
        Policy,
        TransitionError,
        force_retry,
        force_retry_aoi,
        make_due,
        set_status,
    )

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait)
    check_download_settings(s)
    with Store(s.db, create=False) as store:
        name, kind, job_id = _target(store, aoi, scene, tile)
        check_lock(store, name, s.lease_seconds)  # a run in progress is exit 3 before any check
        retried = ("PENDING", "RETRY", "FAILED") if force else ("PENDING", "RETRY")
        every = dataclasses.replace(s, max_wait=float("inf"))  # waiting jobs are made due too
        preflight(work_of([], (), {}, pending_work(store, name, every, retried, ("NEW", *retried))), s,
                  s.workers or os.cpu_count() or 1)
        run_id = new_run_id()
        acquire_lock(store, name, run_id, s.lease_seconds)
        try:
            row = store.require_aoi(name)
            policy = Policy(int(row.settings.get("retry_count", 0)), s.retry_backoff, s.max_temporary_retries)
            try:
                with store.transaction():
                    if kind is not None and job_id is not None:
                        if make_due(store, kind, job_id):
                            ui.info(f"{kind} {job_id}: PENDING and waiting for a later try: due now")
                        elif force:
                            n = len(force_retry(store, kind, job_id, policy))
                            ui.info(f"{kind} {job_id}: back in the queue ({n} job(s))")
                        else:
                            set_status(store, kind, job_id, PENDING, policy=policy)
                            ui.info(f"{kind} {job_id}: RETRY → PENDING")
                    elif force:
                        n = force_retry_aoi(store, row.id, policy)
                        ui.info(f"{n} jobs of {name}: FAILED/RETRY → back in the queue")
                    else:
                        n = 0
                        for k in ("scene", "tile"):
                            ids = [r[0] for r in store.execute(
                                f"SELECT id FROM {k} WHERE aoi_id = ? AND status = ? ORDER BY id", (row.id, RETRY))]
                            for i in ids:
                                set_status(store, k, i, PENDING, policy=policy)
                            n += len(ids)
                        ui.info(f"{n} jobs of {name}: RETRY → PENDING")
                    if kind is None:
                        due = make_due(store, "scene", aoi_id=row.id) + make_due(store, "tile", aoi_id=row.id)
                        if due:
                            ui.info(f"{due} waiting job(s) of {name} (deferred or backed off): due now")
            except TransitionError as exc:  # asking to retry a job that cannot be retried: invalid input
                hint = ""
                if not force and kind is not None and "FAILED->" in str(exc):
                    hint = f" (a FAILED {kind} comes back with `ingester retry --force --{kind} {job_id}`)"
                raise InputError(f"{exc}{hint}; nothing was changed") from None
            report = run_with_progress(ui, store, name, s, run_id, lock=False)
        except BaseException:
            release_lock(store, name, run_id)
            raise
    render_report(ui, report, as_json)


@app.command("fail")
@command
def fail_command(
    scene: int | None = typer.Option(None, "--scene", parser=whole_number(),
                                     help="Fail this scene and its tiles (store id)."),
    tile: int | None = typer.Option(None, "--tile", parser=whole_number(),
                                    help="Fail this tile (store id); its children are re-linked."),
    force: bool = typer.Option(False, "--force", help="Fail whatever the current status."),
    message: str = typer.Option("failed by hand", "--message", "-m", help="Message kept with the job."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Set a scene or tile FAILED, with the fail cascade (children re-linked to its previous)."""
    from ingester.coordinator import acquire_lock, new_run_id, release_lock
    from ingester.store import Store
    from ingester.workflow import FAILED, TransitionError, set_status

    s = settings(db=db)
    with Store(s.db, create=False) as store:
        name, kind, job_id = _target(store, None, scene, tile, aoi_allowed=False)
        assert kind is not None and job_id is not None
        run_id = new_run_id()
        acquire_lock(store, name, run_id, s.lease_seconds)
        try:
            set_status(store, kind, job_id, FAILED, message, force=force)
        except TransitionError as exc:
            raise InputError(f"{exc} (--force fails it whatever its status)") from None
        finally:
            release_lock(store, name, run_id)
        row = store.scene_row(job_id) if kind == "scene" else store.tile_row(job_id)
    if as_json:
        print_json({"aoi": name, "kind": kind, **row.to_json()})
    else:
        UI(quiet).info(f"{kind} {job_id} of {name}: FAILED")


@app.command("refresh")
@command
def refresh_command(
    scene: int = typer.Option(..., "--scene", parser=whole_number(),
                              help="The scene to refresh (store id, from `ingester list scenes AOI`)."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Read a scene's product from the CDSE catalogue again (online flag, size, checksums, name) and update
    the store in one transaction; a scene waiting to be tried again (deferred, backed off) is due at once.

    Refused (exit 3) while a run holds the AOI's lock; exit 1 when the catalogue cannot be asked or no
    longer has the product (nothing changed)."""
    from ingester.coordinator import acquire_lock, new_run_id, release_lock
    from ingester.scene_ops import refresh_scene
    from ingester.store import Store

    s = settings(db=db)
    with Store(s.db, create=False) as store:
        name, _kind, _id = _target(store, None, scene, None, aoi_allowed=False)
        run_id = new_run_id()
        acquire_lock(store, name, run_id, s.lease_seconds)
        try:
            result = refresh_scene(store, scene, s)
        finally:
            release_lock(store, name, run_id)
    if as_json:
        print_json({"aoi": name, **result.to_json()})
        return
    ui = UI(quiet)
    changed = "; ".join(f"{k}: {json.dumps(v[0])} → {json.dumps(v[1])}" for k, v in result.changes.items())
    ui.info(f"scene {scene} ({result.source_id}) of {name}, {result.status}: "
            + (changed if changed else "the catalogue says what the store holds")
            + ("; due now (the next `ingester run` tries it)" if result.due_now else ""))


@app.command("remove")
@command
def remove_command(
    scene: int = typer.Option(..., "--scene", parser=whole_number(),
                              help="The scene to remove (store id, from `ingester list scenes AOI`)."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove a scene and its tiles from its AOI, in one transaction. Chains are re-linked as the fail cascade
    does (children take the removed tile's previous; a removed root hands its chain to its earliest child).
    Stored files and indexed datasets are kept. The scene can then be ingested again (`ingester aoi --scenes`).

    Refused (exit 3) while a run holds the AOI's lock."""
    from ingester.coordinator import acquire_lock, new_run_id, release_lock
    from ingester.scene_ops import remove_scene
    from ingester.store import Store

    s = settings(db=db)
    with Store(s.db, create=False) as store:
        name, _kind, _id = _target(store, None, scene, None, aoi_allowed=False)
        run_id = new_run_id()
        acquire_lock(store, name, run_id, s.lease_seconds)
        try:
            result = remove_scene(store, scene)
        finally:
            release_lock(store, name, run_id)
    from ingester.providers.cache import forget_product

    forget_product(s, name, result.source_id)
    if as_json:
        print_json({"aoi": name, **result.to_json()})
        return
    relinked = f"; {len(result.relinked)} tile(s) of other scenes re-linked" if result.relinked else ""
    UI(quiet).info(f"scene {scene} ({result.source_id}, {result.status}) removed from {name} with its "
                   f"{result.tiles} tile(s){relinked}; its stored files and datasets are kept")


@app.command("history")
@command
def history_command(
    scene: int | None = typer.Option(None, "--scene", parser=whole_number(), help="A scene (store id)."),
    tile: int | None = typer.Option(None, "--tile", parser=whole_number(), help="A tile (store id)."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Every attempt of a job: number, start, duration, what it led to (`outcome → status`), where
    (run, pid@host), message, log file."""
    from ingester.store import Store
    from ingester.workflow import attempt_result

    s = settings(db=db)
    with Store(s.db, readonly=True) as store:
        name, kind, job_id = _target(store, None, scene, tile, aoi_allowed=False)
        assert kind is not None and job_id is not None
        attempts = store.attempts(kind, job_id)
    for a in attempts:
        a["result"] = attempt_result(a["outcome"], a["status"], a["message"] or "")
        a["duration_s"] = _seconds(a["started_at"], a["finished_at"])
    if as_json:
        print_json({"aoi": name, "kind": kind, "id": job_id, "attempts": attempts})
        return
    for a in attempts:
        took = "running" if a["finished_at"] is None else _duration_text(a["duration_s"])
        typer.echo(f"attempt {a['attempt']}\t{a['started_at']}\t{took}\t{a['result']}\t"
                   f"run {a['run_id']} pid {a['pid']}@{a['host']}\t{a['message']}\t{a['log_path']}".rstrip())


def _seconds(started: str | None, finished: str | None) -> float | None:
    """An attempt's duration in seconds (None while it runs)."""
    from ingester.times import parse_time

    if not started or not finished:
        return None
    try:
        return round(max((parse_time(finished) - parse_time(started)).total_seconds(), 0.0), 3)
    except ValueError:
        return None


def _duration_text(seconds: float | None) -> str:
    """`0.4 s`, `12 s`, `3 min 05 s`, `2 h 03 min`."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@app.command("dot")
@command
def dot_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
    db: str | None = DbOption,
    as_json: bool = typer.Option(False, "--json", help="Print {\"aoi\": …, \"dot\": the DOT text} (and \"output\" "
                                 "with -o) instead of the DOT text."),
) -> None:
    """The AOI's scenes and tiles as a Graphviz digraph (colours by status)."""
    from ingester.fileio import atomic_write_text
    from ingester.store import Store
    from ingester.workflow import dot

    s = settings(db=db)
    refuse_output_over_inputs(output, {"store": s.db})
    check_output_file(output)
    with Store(s.db, readonly=True) as store:
        text = dot(store, store.require_aoi(aoi).id)
    if output:
        atomic_write_text(output, text)
    if as_json:
        print_json({"aoi": aoi, "dot": text, **({"output": str(output)} if output else {})})
    elif not output:
        typer.echo(text, nl=False)
