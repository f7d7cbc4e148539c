"""Monitoring and repair: status, aois, list scenes|tiles, retry, fail, refresh, remove, history, dot.
Parse, call `ingester.app`, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ingester.cli import app
from ingester.cli.aoi_cmd import (
    ExecutorOption,
    MaxWaitOption,
    SceneWorkerOption,
    SchedulerOption,
    SharedStorageOption,
    TileWorkerOption,
    WorkersOption,
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
    print_json_stream,
    refuse_output_over_inputs,
    settings,
    whole_number,
)
from ingester.errors import InputError
from ingester.wording import one_line, plural, status_label

if TYPE_CHECKING:
    from ingester.app import RetryReport

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
    from ingester.app import reads
    from ingester.workflow import deferred_text, summary_text

    if map_path is not None:
        from ingester.cli.views_cmd import MAP_SUFFIXES, check_map_output

        if not aoi:
            raise InputError("--map needs an AOI: `ingester status AOI --map PATH`")
        check_map_output("status --map", map_path, MAP_SUFFIXES)
    s = settings(db=db)
    with reads.reading(s) as store:
        summaries = reads.status(store, aoi, s.lease_seconds)
    if as_json:
        print_json(summaries[0] if aoi else summaries)
    else:
        if not summaries:
            typer.echo("no AOI in the store")
        for i, item in enumerate(summaries):
            if i:
                typer.echo("")
            typer.echo(f"AOI {item['aoi']} ({status_label(item['status'], item['failed_jobs'])})")
            if item["running"]:
                run = item["running"]
                typer.echo(f"Running: run {run['run']}, pid {run['pid']} on host {run['host']} since {run['since']}")
            typer.echo(summary_text(item))
            if item["deferred"]["total"]:
                typer.echo(deferred_text(item["deferred"]))
    if map_path is not None:
        from ingester.cli.views_cmd import write_map
        from ingester.views.source import open_view

        drawn = write_map(open_view(summaries[0]["aoi"], None, s.db), map_path, "status")
        UI().info(f"status map of {summaries[0]['aoi']}: {plural(drawn, 'footprint')}, coloured by status → "
                  f"{map_path}")


@app.command("aois")
@command
def aois_command(db: str | None = DbOption, as_json: bool = JsonOption) -> None:
    """The AOIs of the store, with their status and counts."""
    from ingester.app import reads

    with reads.reading(settings(db=db)) as store:
        rows = reads.aois(store)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        label = status_label(r["status"], r["failed_jobs"])
        typer.echo(f"{r['aoi']}\t{label}\t{r['scenes']} scenes\t{r['tiles']} tiles"
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
    from ingester.app import reads

    wanted = _status(status)
    with reads.reading(settings(db=db)) as store:
        rows = reads.scenes(store, aoi, wanted)
        if as_json:
            print_json_stream({**r.to_json(), "aoi": aoi} for r in rows)
            return
        out = sys.stdout
        out.write("id\tstatus\tdate\tsource_id\tmessage\n")
        for r in rows:
            out.write(f"{r.id}\t{r.status}\t{r.date}\t{r.source_id}\t{one_line(r.message)}".rstrip() + "\n")


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
    from ingester.app import reads
    from ingester.geometry import GeometryError, from_wkt, to_geojson

    wanted = _status(status)
    with reads.reading(settings(db=db)) as store:
        rows = reads.tiles(store, aoi, wanted, with_wkt=geojson)
        if geojson:
            def feature(r, wkt):  # noqa: ANN001, ANN202
                try:
                    geometry = to_geojson(from_wkt(wkt))
                except GeometryError:
                    geometry = None
                return {"type": "Feature", "id": r.id, "geometry": geometry, "properties": {**r.to_json(), "aoi": aoi}}

            print_json_stream((feature(r, wkt) for r, wkt in rows), head='{\n  "type": "FeatureCollection",\n'
                              '  "features": ', level=1, tail="\n}")
            return
        if as_json:
            print_json_stream({**r.to_json(), "aoi": aoi} for r, _wkt in rows)
            return
        out = sys.stdout
        out.write("id\tstatus\tdate\tscene\ttile\tprevious\treference\tmessage\n")
        for r, _wkt in rows:
            out.write(f"{r.id}\t{r.status}\t{r.date}\t{r.scene_source_id}\t{r.source_id}\t"
                      f"{r.prev or '-'}\t{r.ref or '-'}\t{one_line(r.message)}".rstrip() + "\n")


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
    executor: str | None = ExecutorOption,
    scheduler: str | None = SchedulerOption,
    shared_storage: bool = SharedStorageOption,
) -> None:
    """RETRY → PENDING (with a fresh retry budget), then run the AOI. DONE work is never redone. A job
    waiting for a later try (deferred, or backed off) is made due now.

    With --force, FAILED jobs come back too (fix the cause first): a scene → PENDING and its FAILED
    tiles → NEW; a tile → NEW, released when its scene and previous are DONE. All changes are made in
    one transaction: either every job is retried or none."""
    from ingester.app import AoiSession

    ui = UI(quiet)
    s = run_settings(db, workers, scene_worker, tile_worker, max_wait, executor, scheduler, shared_storage)
    with AoiSession(s, aoi, scene=scene, tile=tile, runs=True) as session:
        render_retry(ui, session.retry(force))
        report = run_with_progress(ui, session)
    render_report(ui, report, as_json)


def render_retry(ui: UI, r: RetryReport) -> None:
    if r.kind is not None:
        if r.made_due:
            ui.info(f"{r.kind} {r.job_id}: PENDING and waiting for a later try: due now")
        elif r.force:
            ui.info(f"{r.kind} {r.job_id}: back in the queue ({r.revived} job(s))")
        else:
            ui.info(f"{r.kind} {r.job_id}: RETRY → PENDING")
        return
    if r.force:
        ui.info(f"{r.revived} jobs of {r.aoi}: FAILED/RETRY → back in the queue")
    else:
        ui.info(f"{r.retried} jobs of {r.aoi}: RETRY → PENDING")
    if r.made_due:
        ui.info(f"{r.made_due} waiting job(s) of {r.aoi} (deferred or backed off): due now")


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
    from ingester.app import AoiSession

    with AoiSession(settings(db=db), scene=scene, tile=tile, aoi_allowed=False) as session:
        report = session.fail(message, force)
    if as_json:
        print_json(report.to_json())
    else:
        UI(quiet).info(f"{report.kind} {report.row.id} of {report.aoi}: FAILED")


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
    from ingester.app import AoiSession

    with AoiSession(settings(db=db), scene=scene, aoi_allowed=False) as session:
        report = session.refresh()
    if as_json:
        print_json(report.to_json())
        return
    result = report.result
    changed = "; ".join(f"{k}: {json.dumps(v[0])} → {json.dumps(v[1])}" for k, v in result.changes.items())
    UI(quiet).info(f"scene {scene} ({result.source_id}) of {report.aoi}, {result.status}: "
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
    from ingester.app import AoiSession

    with AoiSession(settings(db=db), scene=scene, aoi_allowed=False) as session:
        report = session.remove()
    if as_json:
        print_json(report.to_json())
        return
    result = report.result
    relinked = f"; {len(result.relinked)} tile(s) of other scenes re-linked" if result.relinked else ""
    UI(quiet).info(f"scene {scene} ({result.source_id}, {result.status}) removed from {report.aoi} with its "
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
    (run, pid@host, and the Dask worker that ran it), message, log file."""
    from ingester.app import reads

    with reads.reading(settings(db=db)) as store:
        h = reads.history(store, scene, tile)
    if as_json:
        print_json(h.to_json())
        return
    for a in h.attempts:
        took = "running" if a["finished_at"] is None else _duration_text(a["duration_s"])
        typer.echo(f"attempt {a['attempt']}\t{a['started_at']}\t{took}\t{a['result']}\t"
                   f"run {a['run_id']} pid {a['pid']}@{a['host']}{' on ' + a['ran_on'] if a['ran_on'] else ''}\t"
                   f"{one_line(a['message'])}\t{a['log_path']}".rstrip())


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
    from ingester.app import reads
    from ingester.fileio import atomic_write_text

    s = settings(db=db)
    refuse_output_over_inputs(output, {"store": s.db})
    check_output_file(output)
    with reads.reading(s) as store:
        text = reads.dot(store, aoi)
    if output:
        atomic_write_text(output, text)
    if as_json:
        print_json({"aoi": aoi, "dot": text, **({"output": str(output)} if output else {})})
    elif not output:
        typer.echo(text, nl=False)
