"""`ingester config`: the effective settings and where each one comes from."""

from __future__ import annotations

import typer

from ingester.cli import app
from ingester.cli.aoi_cmd import SceneWorkerOption, TileWorkerOption, WorkersOption
from ingester.cli.common import DbOption, JsonOption, command, print_json


@app.command("config")
@command
def config_command(
    db: str | None = DbOption,
    workers: int | None = WorkersOption,
    scene_worker: str | None = SceneWorkerOption,
    tile_worker: str | None = TileWorkerOption,
    as_json: bool = JsonOption,
) -> None:
    """Print every setting: its effective value and where it comes from (the option given here, the
    INGESTER_* environment, ingester.toml or the file of INGESTER_CONFIG, ~/.netrc for the CDSE
    account, or the default). `workers` shows the pool size a run uses (the CPU count for 0),
    `providers` the whole download chain in order. Secrets are masked. Invalid settings (the checks
    `aoi` runs: unknown providers, malformed patterns, …) are exit 2, naming the culprit."""
    from ingester.app.config_report import explain_settings

    items = explain_settings({"db": db, "workers": workers, "scene_worker": scene_worker,
                              "tile_worker": tile_worker})
    if as_json:
        print_json(items)
        return
    typer.echo("setting\tvalue\tsource")
    for item in items:
        value = item["value"]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        typer.echo(f"{item['name']}\t{text}\t{item['source']} {item['origin']}".rstrip())
