"""Small hand-made scenes and tiles files for the workflow tests (Sentinel-2 ids over Denmark,
plus synthetic Sentinel-1 burst chains), written in the original's scenes.json / tiles.json format."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingester.scenes import Scene, Tile, TileRef, write_scenes

S2_IDS = [
    "S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858",
    "S2B_MSIL1C_20220106T102329_N0510_R065_T32UNG_20240501T134512",
    "S2A_MSIL1C_20220107T104421_N0510_R008_T32UNG_20240422T021155",
    "S2B_MSIL1C_20220109T103309_N0510_R108_T32UNG_20240506T233305",
    "S2A_MSIL1C_20220111T102401_N0510_R065_T32UNG_20240420T164933",
]
WKT = "POLYGON ((8.99968 55.89489, 10.76096 55.87337, 10.71249 54.88733, 8.99971 54.90786, 8.99968 55.89489))"
TAGS = {"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial", "constellation": "SENTINEL2"}


def s2_scene(source_id: str, aoi: str = "DenmarkDemoS2", **tags: str) -> Scene:
    date = datetime.strptime(source_id.split("_")[2], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return Scene(source_id=source_id, aoi=aoi, date=date, wkt=WKT, tags={**TAGS, "sourceID": source_id, **tags},
                 graph_name="CopyProductToStorage", is_retriable=True, metadata={"uuid": fake_uuid(source_id)})


def fake_uuid(source_id: str) -> str:
    """A stable UUID per product id: the CDSE catalogue names its products by UUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, source_id))


def write_s2_scenes(path: Path, count: int = 3, aoi: str = "DenmarkDemoS2") -> Path:
    write_scenes(path, [s2_scene(i, aoi) for i in S2_IDS[:count]], next_=False)
    return path


def s1_chain(aoi: str, dates: int, bursts: int, start: datetime | None = None,
             graph: str = "S1BackscatterCoherence") -> list[Scene]:
    """`dates` S1 scenes, each with `bursts` tiles; tile k of date d has previous = tile k of date d-1
    and reference = tile k of date 0 (the original's chaining)."""
    start = start or datetime(2022, 1, 11, 17, 1, 24, tzinfo=UTC)
    scenes = []
    for d in range(dates):
        date = start + timedelta(days=12 * d)
        sid = f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{date:%Y%m%dT%H%M%S}_0414{d:02d}_04ECAD_{d:04X}"
        tiles = []
        for k in range(bursts):
            name = f"A44_IW1_{8951 + 28 * k}"
            prev = TileRef(scenes[-1].date, scenes[-1].source_id, name) if d else None
            ref = TileRef(scenes[0].date, scenes[0].source_id, name) if d else None
            tiles.append(Tile(source_id=name, scene_id=sid, date=date, anx_time=8951 + 28 * k, swath_id="IW1",
                              tile_nr=4 + k, graph_name=graph, is_retriable=True, previous=prev, reference=ref,
                              wkt="POLYGON((9.019278 54.602844, 8.958699 54.767814, 10.441380 54.937325, "
                                  "10.495721 54.772066, 9.019278 54.602844))"))
        scenes.append(Scene(source_id=sid, aoi=aoi, date=date, wkt=WKT, is_retriable=True,
                            tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                                  "constellation": "SENTINEL1"}, graph_name="S1Preprocessing", tiles=tiles))
    return scenes


def write_s1_tiles(path: Path, scenes: list[Scene]) -> Path:
    write_scenes(path, scenes, next_=False)
    return path


@contextlib.contextmanager
def b01_project(tmp_path: Path, repo: Path, monkeypatch, storage: str, script: str, graph: dict,
                graph_file: str) -> Iterator[tuple[Path, Path]]:
    """(payload, scenes file) of two S2 scenes whose products are zips of `script` in a local archive
    (provider `local`) and whose tile graph `graph` (written as `graph_file`) indexes one B01 output;
    storage on this disk or, with `storage` "s3", in a moto bucket."""
    import json
    import shutil

    (tmp_path / graph_file).write_text(json.dumps(graph))
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload["tile_graph_name"] = graph_file
    payload["layers"] = {"B01": payload["layers"]["B01"]}
    (tmp_path / "p.json").write_text(json.dumps(payload))
    archive = tmp_path / "archive"
    archive.mkdir()
    for sid in S2_IDS[:2]:
        shutil.make_archive(str(archive / sid), "zip", root_dir=tmp_path, base_dir=script)
    monkeypatch.setenv("INGESTER_PROVIDERS", "local")
    monkeypatch.setenv("INGESTER_LOCAL_PATH", str(archive))
    if storage == "s3":
        from tests.fakes.moto_s3 import make_bucket, moto_s3, s3_env

        with moto_s3() as endpoint:
            s3_env(monkeypatch, endpoint)
            make_bucket(endpoint, "cube")
            monkeypatch.setenv("INGESTER_STORAGE_URI", "s3://cube/store")
            yield tmp_path / "p.json", write_s2_scenes(tmp_path / "s.json", 2)
    else:
        monkeypatch.setenv("INGESTER_STORAGE_URI", str(tmp_path / "storage"))
        yield tmp_path / "p.json", write_s2_scenes(tmp_path / "s.json", 2)
