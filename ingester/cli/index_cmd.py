"""`ingester datasets AOI` and `ingester stac AOI`: what was indexed, and a static STAC catalog of it."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ingester.cli import app
from ingester.cli.common import (
    UI,
    DbOption,
    JsonOption,
    QuietOption,
    command,
    print_json,
    refuse_output_over_inputs,
    settings,
)
from ingester.errors import EXIT_JOBS_FAILED
from ingester.wording import plural


def _num(value: float) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:g}"


@app.command("datasets")
@command
def datasets_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List the AOI's indexed datasets: time, layer, tile, data format, real range, stored URI, and whether
    the file is in storage (a header row first; --json for scripts, with the record, variable, instance
    and `missing`). Files are looked for with one listing per tile folder; the missing ones are also
    named on stderr."""
    from ingester.app import reads
    from ingester.index import dataset_listing
    from ingester.integrity import missing_datasets, missing_text
    from ingester.times import format_time, parse_time

    with reads.reading(settings(db=db)) as store:
        missing = missing_datasets(store, aoi) if store.require_aoi(aoi) else []
        rows = dataset_listing(store, aoi, set(missing))
    if missing:
        UI().warn(missing_text(aoi, missing))
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"AOI {aoi}: no dataset indexed yet")
        return
    typer.echo("time\tlayer\ttile\tdformat\treal range\turi\tin storage")
    for row in rows:
        fmt = row["dformat"]
        typer.echo(f"{format_time(parse_time(row['time']).replace(microsecond=0))}\t{row['layer']}\t{row['tile']}\t"
                   f"{fmt['dtype']},{_num(fmt['nodata'])},{_num(fmt['min'])},{_num(fmt['max'])}\t"
                   f"[{_num(row['real_min'])}, {_num(row['real_max'])}]\t{row['uri']}\t"
                   f"{'MISSING' if row['missing'] else 'yes'}")


@app.command("stac")
@command
def stac_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    output: Path = typer.Option(Path("outputs/stac"), "--output", "-o",
                                help="Folder of the catalog; the AOI's Collection goes to <folder>/<AOI>/."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """Write a static STAC catalog of the AOI: one Collection, one Item per tile, one asset per layer.

    Outputs missing from storage get no asset (they are named on stderr)."""
    from ingester.app import reads
    from ingester.index import stac_tiles_from_store, write_stac
    from ingester.integrity import missing_datasets, missing_text

    store_path = settings(db=db).db
    refuse_output_over_inputs(output, {"store": store_path})
    refuse_output_over_inputs(output / aoi, {"store": store_path})
    with reads.reading(store_path) as store:
        store.require_aoi(aoi)
        missing = missing_datasets(store, aoi)
        tiles = stac_tiles_from_store(store, aoi, set(missing))
    if missing:
        UI().warn(missing_text(aoi, missing) + "; left out of the catalog")
    path = write_stac(aoi, tiles, output)
    UI(quiet).info(f"STAC: {len(tiles)} item(s) in {path}")
    typer.echo(str(path))


@app.command("verify")
@command
def verify_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Re-check what the AOI keeps in storage: every indexed output of its DONE tiles (size and BLAKE3
    recorded when stored), and the product zip of its DONE scenes where the graphs keep it (size and
    checksum against its verification record and the catalogue; a product the tile graph deletes after
    processing, as ExtractS2Bands does, is not expected). The jobs whose files are missing or damaged
    are set back (scene → PENDING, tile → NEW/PENDING, with a fresh retry budget) so that the next
    `ingester run` rebuilds them.

    Exit 0 when everything is in place, 4 when problems were found and jobs set back (run `ingester
    run AOI`), 3 while a run holds the AOI."""
    from ingester.app import AoiSession

    ui = UI(quiet)
    with AoiSession(settings(db=db), aoi) as session:  # a run is writing: its files are not settled yet (exit 3)
        report = session.verify()
    if as_json:
        print_json(report.to_json())
    problems, checked, reset = report.problems, report.checked, report.reset
    for p in problems:
        ui.warn(f"{p.kind} {p.uri}: {p.problem} ({p.detail})")
    ui.info(f"AOI {aoi}: {plural(checked['products'], 'product')} and {plural(checked['datasets'], 'output')} "
            f"checked, {plural(len(problems), 'problem')}; set back: {plural(len(reset['scenes']), 'scene')}, "
            f"{plural(len(reset['tiles']), 'tile')}"
            + (f"; `ingester run {aoi}` rebuilds them" if problems else ""))
    if problems:
        raise typer.Exit(EXIT_JOBS_FAILED)  # a person (or cron) should know: the next run has work to redo
