"""`ingester tiles`: scenes → tiles (S1 bursts chained across dates; tile = scene otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ingester.scenes import Tile


def stored_tiles(db: Path, aoi: str) -> tuple[list[Tile], set[str]]:
    """The AOI's tiles and scene ids in the store, if the store exists (it is never created here)."""
    if not db.exists():
        return [], set()
    from ingester.store import Store

    with Store(db, readonly=True) as store:
        return store.aoi_tiles(aoi), store.scene_ids_in_aoi(aoi)


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
    from ingester.distance import parse_buffer
    from ingester.graph.loader import check_payload_graphs
    from ingester.payload import load_payload
    from ingester.scenes import read_scenes, write_scenes
    from ingester.tiling import NO_ANNOTATION, make_tiles, require_annotations

    ui = UI(quiet)
    if buffer is not None:
        try:
            parse_buffer(buffer)
        except ValueError as exc:
            raise InputError(f"--buffer: {exc}") from None
    config = settings(aoi_buffer=buffer)
    refuse_output_over_inputs(output, {"payload": payload_path, "scenes file": scenes_path,
                                       "store": db or config.db})
    check_output_file(output)
    payload = load_payload(payload_path)
    check_payload_graphs(payload)
    if scenes_path is not None:
        scenes = read_scenes(scenes_path).scenes
    else:
        from ingester.catalogue import search

        scenes = search(payload, config).scenes
    existing, ingested = stored_tiles(Path(db or config.db), payload.name)
    if ingested:
        before = len(scenes)
        scenes = [s for s in scenes if s.source_id not in ingested]
        ui.info(f"{plural(before - len(scenes), 'scene')} already in the AOI {payload.name!r} left out; "
                f"new bursts chain onto its {len(existing)} tiles")
    result = make_tiles(payload, scenes, config, existing=existing)
    require_annotations(scenes, result)
    missing = [sid for sid, reason in result.skipped if reason.startswith(NO_ANNOTATION)]
    write_scenes(output, result.scenes)
    n_tiles = sum(len(s.tiles) for s in result.scenes)
    chained = sum(1 for s in result.scenes for t in s.tiles if t.previous is not None)
    ui.info(f"{plural(len(result.scenes), 'scene')}, {plural(n_tiles, 'tile')} ({chained} chained to a previous "
            f"acquisition) → {output}")
    if result.skipped:
        others = len(result.skipped) - len(missing)
        parts = []
        if missing:
            parts.append(f"{len(missing)} without annotation")
        if others:
            parts.append(f"{others} without any burst over the AOI or unusable")
        ui.info(f"skipped {plural(len(result.skipped), 'scene')}: {', '.join(parts)}")
