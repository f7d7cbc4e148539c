"""`ingester layers add|list`: the variables and instances a payload's layers may name."""

from __future__ import annotations

import typer

from ingester.cli import app
from ingester.cli.common import UI, DbOption, JsonOption, QuietOption, command, print_json, settings

layers_app = typer.Typer(help="Layers (variable + instance) that payloads may name.", no_args_is_help=True)
app.add_typer(layers_app, name="layers")


@layers_app.command("add")
@command
def layers_add(
    variable: str = typer.Argument(..., help="Variable name, e.g. B04 or SigmaNought."),
    instance: str = typer.Argument(..., help="Instance name, e.g. raw or RNKell."),
    dformat: str | None = typer.Option(None, "--dformat", help="dtype,nodata,min,max (default float32,0,0,1): a "
                                       "known dtype (uint8, int8, uint16, int16, uint32, int32, float32, float64, "
                                       "complex64), values it can hold (NaN no-data for float types only), min < max."),
    unit: str = typer.Option("", "--unit", help="Unit of the values."),
    bands: str = typer.Option("", "--bands", help="Comma-separated band names (e.g. VV,VH)."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """Add a layer: the variable (created if new) and one instance of it. A variable has one data format,
    unit and band list: another one for an existing variable is exit 2, saying what it has."""
    from ingester.app import add_layer

    iid, created = add_layer(settings(db=db), variable, instance, dformat, unit,
                             [b.strip() for b in bands.split(",") if b.strip()])
    UI(quiet).info(f"{'added' if created else 'already present:'} {variable}/{instance} (instance id {iid})")


@layers_app.command("list")
@command
def layers_list(db: str | None = DbOption, as_json: bool = JsonOption) -> None:
    """List the layers: one line per variable/instance, after a header row (--json for scripts)."""
    from ingester.app import reads
    from ingester.graph.model import DFormat, nodata_json

    with reads.reading(settings(db=db)) as store:
        rows = reads.layers(store)
    if as_json:
        print_json([{"variable": r.variable, "instance": r.instance, "instance_id": r.instance_id, "unit": r.unit,
                     "dformat": {"dtype": r.dtype, "nodata": nodata_json(r.nodata), "min": r.min_value,
                                 "max": r.max_value}, "bands": r.bands} for r in rows])
        return
    if not rows:
        UI().info("no layer yet: add one with `ingester layers add VARIABLE INSTANCE`, or run "
                  "`ingester aoi … --create-layers`")
    if rows:
        typer.echo("variable\tinstance\tinstance_id\tdformat\tunit\tbands")
    for r in rows:
        typer.echo(f"{r.variable}\t{r.instance or '-'}\t{r.instance_id or '-'}\t"
                   f"{DFormat(r.dtype, r.nodata, r.min_value, r.max_value)}\t{r.unit}\t{','.join(r.bands)}")
