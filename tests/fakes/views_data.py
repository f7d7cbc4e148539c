"""Scenes with footprints at known, separate places (so that a test can find each one on a picture),
payloads with a box AOI, and the Los Angeles tiles file made from the real annotation fixtures."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

from shapely.geometry import box

from ingester.scenes import Scene, write_scenes
from tests.fakes.aoi_data import S2_IDS, s2_scene

AOI_BOX = (10.0, 55.0, 11.0, 55.6)
# four footprints, apart from each other and from the AOI outline: three inside the AOI, one east of it
BOXES = [(10.05, 55.08, 10.30, 55.26), (10.40, 55.08, 10.65, 55.26), (10.72, 55.34, 10.95, 55.52),
         (11.12, 55.05, 11.38, 55.22)]
CLOUDS = [5.0, 30.0, 60.0, 90.0]
# an AOI around all four footprints, apart from each: what an ingested AOI looks like (`ingester aoi
# --scenes` skips a scene outside its AOI)
WIDE_BOX = (10.0, 55.0, 11.5, 55.6)


def grid_scenes(count: int = 4, aoi: str = "DenmarkDemoS2") -> list[Scene]:
    """S2 scenes on four different days (4, 6, 7, 9 January 2022), footprints `BOXES`, cloud `CLOUDS`."""
    scenes = []
    for i in range(count):
        scene = s2_scene(S2_IDS[i], aoi, cloudCoverPercentage=f"{CLOUDS[i]:g}", relativeOrbit=S2_IDS[i][34:37])
        scene = dataclasses.replace(scene, wkt=box(*BOXES[i]).wkt,
                                    metadata={**scene.metadata, "online": i != 2, "size": 700_000_000 + i})
        scenes.append(scene)
    return scenes


def write_grid_scenes(path: Path, count: int = 4, aoi: str = "DenmarkDemoS2") -> Path:
    write_scenes(path, grid_scenes(count, aoi), next_=False)
    return path


def box_payload(repo: Path, path: Path, bounds: tuple[float, float, float, float] = AOI_BOX,
                template: str = "denmark-s2.json") -> Path:
    """The example payload with its AOI replaced by a box."""
    raw = json.loads((repo / "payloads" / template).read_text())
    raw["geometry"] = json.loads(json.dumps(box(*bounds).__geo_interface__))
    path.write_text(json.dumps(raw))
    return path


def shifted(scenes: list[Scene], days: int) -> list[Scene]:
    return [dataclasses.replace(s, date=s.date + timedelta(days=days)) for s in scenes]


def los_angeles_tiles(cli, testdata: Path, repo: Path, folder: Path) -> Path:
    """The tiles of three Sentinel-1 scenes over the Los Angeles payload, made by `ingester tiles` from
    the real IW2 annotation fixtures (tests/data/s1) laid out as SAFE folders: two descending
    acquisitions of relative orbit 71 twelve days apart (the second one derived from the first) and
    one ascending acquisition of relative orbit 64."""
    from tests.fakes.cdse_nodes import IW2_2022, IW2_2023, make_product, product_scene, write_safe

    products = [make_product(testdata, IW2_2023, 1), make_product(testdata, IW2_2022),
                make_product(testdata, IW2_2023)]
    for p in products:
        write_safe(folder / "annotations", p.scene_id, p.annotations)
    scenes_file = folder / "la-scenes.json"
    write_scenes(scenes_file, [product_scene(p, "LosAngelesS1") for p in products], next_=False)
    raw = json.loads((repo / "payloads" / "losangeles-s1.json").read_text())
    raw["annotations_urls"] = [str(folder / "annotations" / "{SCENE}.SAFE")]
    payload = folder / "la-payload.json"
    payload.write_text(json.dumps(raw))
    out = folder / "losangeles-s1-tiles.json"
    result = cli("tiles", payload, "--scenes", scenes_file, "-o", out, "-q", "--db", folder / "none.db",
                 env={"INGESTER_ANNOTATION_SOURCES": "urls"})
    assert result.exit_code == 0, result.stderr
    return out
