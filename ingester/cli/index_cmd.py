"""`ingester datasets AOI` and `ingester stac AOI`: what was indexed, and a static STAC catalog of it."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ingester.cli import app
from ingester.cli.common import UI, DbOption, JsonOption, QuietOption, command, print_json, settings


def _open_store(db: str | None):
    from ingester.store import Store

    return Store(settings(db=db).db, create=False)  # a missing store: InputError naming --db/INGESTER_DB


def _num(value: float) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:g}"


@app.command("datasets")
@command
def datasets_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List the AOI's indexed datasets: time, layer, tile, data format, real range, stored URI (a header
    row first; --json for scripts, with the record, variable and instance)."""
    from ingester.index import dataset_listing

    with _open_store(db) as store:
        rows = dataset_listing(store, aoi)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"AOI {aoi}: no dataset indexed yet")
        return
    typer.echo("time\tlayer\ttile\tdformat\treal range\turi")
    for row in rows:
        fmt = row["dformat"]
        typer.echo(f"{row['time'][:19]}\t{row['layer']}\t{row['tile']}\t"
                   f"{fmt['dtype']},{_num(fmt['nodata'])},{_num(fmt['min'])},{_num(fmt['max'])}\t"
                   f"[{_num(row['real_min'])}, {_num(row['real_max'])}]\t{row['uri']}")


@app.command("stac")
@command
def stac_command(
    aoi: str = typer.Argument(..., help="AOI name."),
    output: Path = typer.Option(Path("outputs/stac"), "--output", "-o",
                                help="Folder of the catalog; the AOI's Collection goes to <folder>/<AOI>/."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """Write a static STAC catalog of the AOI: one Collection, one Item per tile, one asset per layer."""
    from ingester.index import stac_tiles_from_store, write_stac

    with _open_store(db) as store:
        tiles = stac_tiles_from_store(store, aoi)
    path = write_stac(aoi, tiles, output)
    UI(quiet).info(f"STAC: {len(tiles)} item(s) in {path}")
    typer.echo(str(path))
