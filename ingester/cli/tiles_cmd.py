"""`ingester tiles`: scenes → tiles (S1 bursts chained across dates; tile = scene otherwise)."""

from __future__ import annotations

from pathlib import Path

import typer

from ingester.cli import app
from ingester.cli.common import (
    UI,
    DbOption,
    QuietOption,
    check_output_file,
    command,
    refuse_output_over_inputs,
    settings,
)
from ingester.errors import InputError
from ingester.wording import plural


@app.command()
@command
def tiles(
    payload_path: Path = typer.Argument(..., metavar="payload", help="Payload JSON file (AOI, period, …)."),
    scenes_path: Path | None = typer.Option(
        None, "--scenes", help="scenes.json to split (default: run the scene search of the payload first)."),
    output: Path = typer.Option(Path("outputs/tiles.json"), "--output", "-o", help="Tiles file to write."),
    buffer: str | None = typer.Option(
        None, "--buffer", metavar="DISTANCE",
        help="Distance added around the AOI before the burst test: metres on the WGS84 ellipsoid (5000, 5000m, "
        "5km), or degrees with their unit (0.05deg, the old form); 0 tests the exact AOI "
        "(default: $INGESTER_AOI_BUFFER or 5600m)."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """List the tiles of the scenes: Sentinel-1 bursts over the AOI with their previous and reference
    acquisition (from the product annotations only, no product download), or one tile per scene for
    the other missions. Writes the tiles file (tiles.json format) atomically.

    When the store already holds the AOI (`ingester aoi` ran before), its scenes are left out and new
    bursts chain onto its tiles, so the file can be ingested with `ingester aoi --tiles`."""
    from ingester.app import AoiSession
    from ingester.distance import parse_buffer

    ui = UI(quiet)
    if buffer is not None:
        try:
            parse_buffer(buffer)
        except ValueError as exc:
            raise InputError(f"--buffer: {exc}") from None
    config = settings(db=db, aoi_buffer=buffer)
    refuse_output_over_inputs(output, {"payload": payload_path, "scenes file": scenes_path, "store": config.db})
    check_output_file(output)
    with AoiSession(config, payload=payload_path, readonly=True) as session:
        report = session.tiles(scenes_path, output)
    if report.in_store:
        ui.info(f"{plural(report.left_out, 'scene')} already in the AOI {session.name!r} left out; "
                f"new bursts chain onto its {report.existing_tiles} tiles"
                + (" (the tiles of a scene in the AOI are fixed: a wider --buffer adds none to it; "
                   "`ingester remove --scene ID` and ingest the scene again for that)" if report.left_out else ""))
    ui.info(f"{plural(report.scenes, 'scene')}, {plural(report.tiles, 'tile')} ({report.chained} chained to a "
            f"previous acquisition) → {output}")
    if report.skipped:
        others = len(report.skipped) - report.without_annotation
        parts = []
        if report.without_annotation:
            parts.append(f"{report.without_annotation} without annotation")
        if others:
            parts.append(f"{others} without any burst over the AOI or unusable")
        ui.info(f"skipped {plural(len(report.skipped), 'scene')}: {', '.join(parts)}")
