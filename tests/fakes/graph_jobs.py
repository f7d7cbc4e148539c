"""Builders of scene/tile job descriptions and graph files for the processing tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingester.config import load_settings
from ingester.jobs import SceneJob, TileJob
from ingester.payload import Layer
from ingester.scenes import Scene, Tile, TileRef

WKT = "POLYGON((10 55,10.1 55,10.1 55.1,10 55.1,10 55))"
S2_ID = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"


def s1_scene(day: int, tile_id: str = "A44_IW1_8951", graph: str = "") -> tuple[Scene, Tile]:
    date = datetime(2022, 1, day, 17, 1, 11, tzinfo=UTC)
    sid = f"S1A_IW_SLC__1SDV_202201{day:02d}T170111_202201{day:02d}T170138_041000_04E000_F4D{day % 10}"
    tile = Tile(source_id=tile_id, scene_id=sid, date=date, wkt=WKT, graph_name=graph, swath_id="IW1", tile_nr=3)
    scene = Scene(source_id=sid, aoi="aoi", date=date, wkt=WKT, graph_name=graph, tiles=[tile])
    return scene, tile


def tile_job(scene: Scene, tile: Tile, storage: Path, workdir: Path, graph: str, graph_dirs=(),
             previous: tuple[Scene, Tile] | None = None, reference: tuple[Scene, Tile] | None = None,
             layers: dict[str, Layer] | None = None, graph_config: dict[str, str] | None = None,
             job_id: int = 1) -> TileJob:
    tile.graph_name = graph
    if previous:
        tile.previous = TileRef(previous[1].date, previous[0].source_id, previous[1].source_id)
    if reference:
        tile.reference = TileRef(reference[1].date, reference[0].source_id, reference[1].source_id)
    return TileJob(
        job_id=job_id, attempt=1, aoi="aoi", scene=scene, tile=tile,
        previous=previous[1] if previous else None, previous_scene=previous[0] if previous else None,
        reference=reference[1] if reference else None, reference_scene=reference[0] if reference else None,
        storage_uri=str(storage), workdir=str(workdir), layers=layers or {}, graph_config=graph_config or {},
        graph_dirs=tuple(str(d) for d in graph_dirs),
    )


def scene_job(scene: Scene, storage: Path, workdir: Path, graph_dirs=()) -> SceneJob:
    return SceneJob(job_id=1, attempt=1, aoi="aoi", scene=scene, storage_uri=str(storage), workdir=str(workdir),
                    graph_dirs=tuple(str(d) for d in graph_dirs))


def write_graph(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def settings(**overrides: Any):
    return load_settings(overrides)


S2_BANDS_BUT_B01_B10 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def complete_s2_safe(safe: Path) -> None:
    """Give the real excerpt (B01 only) every other band of a product but B10 (the layout of an L2A
    product, whose B10 ExtractS2Bands marks optional): a 128 × 128 crop of B01 each, to keep tests fast."""
    import rasterio

    (b01,) = safe.glob("GRANULE/*/IMG_DATA/*_B01.jp2")
    with rasterio.open(b01) as src:
        crop = src.read(1, window=((0, 128), (0, 128)))
        profile = {k: v for k, v in src.profile.items() if k not in ("tiled", "blockxsize", "blockysize")}
        profile.update(width=128, height=128)  # the crop starts at the origin: same transform
    for band in S2_BANDS_BUT_B01_B10:
        with rasterio.open(b01.with_name(b01.name.replace("_B01.", f"_{band}.")), "w", **profile) as dst:
            dst.write(crop, 1)
