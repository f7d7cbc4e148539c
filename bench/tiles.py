"""Burst inventory benchmark: 1,000 S1 scenes × 3 swaths (× 2 polarisations on disk) from local SAFE folders.

Run from the repository root: `python -m bench.tiles [--scenes N]`. The annotations are built from the
real IW2 fixture (one copy per swath, VV and VH hard-linked) in a temporary folder. The table compares
the full inventory (source lookup, selection of one polarisation per swath, parsing, burst ids,
footprints, AOI test, chaining) with a bare `ElementTree.parse` of the same 3 × N files, measured in
the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingester.config import Settings
from ingester.payload import parse_payload
from ingester.scenes import Scene, write_scenes
from ingester.tiling import make_tiles

REPO = Path(__file__).resolve().parent.parent
FIXTURE = "s1a-iw2-slc-vv-20230108t135251-20230108t135316-046693-0598d3-005.xml"
SCENE = "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76"


def testdata() -> Path:
    return REPO / "tests" / "data"


def scene_id(i: int) -> str:
    date = datetime(2023, 1, 8, 13, 52, 49) + timedelta(days=12 * i)
    stop = date + timedelta(seconds=27)
    orbit = 46693 + 175 * i
    return f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_0598D3_BA76"


def build(root: Path, n: int) -> tuple[list[Scene], list[Path]]:
    """N SAFE folders with 3 swaths × 2 polarisations (hard links to 3 master files)."""
    data = (testdata() / "s1" / FIXTURE).read_bytes()
    masters = {}
    for swath in ("iw1", "iw2", "iw3"):
        path = root / f"master-{swath}.xml"
        path.write_bytes(data.replace(b"<swath>IW2</swath>", f"<swath>{swath.upper()}</swath>".encode()))
        masters[swath] = path
    scenes, parsed = [], []
    for i in range(n):
        sid = scene_id(i)
        folder = root / f"{sid}.SAFE" / "annotation"
        folder.mkdir(parents=True)
        for swath, master in masters.items():
            for pol in ("vv", "vh"):
                name = f"s1a-{swath}-slc-{pol}-{sid[17:32].lower()}-{sid[33:48].lower()}-{sid[49:55]}-0598d3-00{i}.xml"
                os.link(master, folder / name)
                if pol == "vv":
                    parsed.append(folder / name)
        scenes.append(Scene(
            source_id=sid, aoi="bench", date=datetime.strptime(sid[17:32], "%Y%m%dT%H%M%S").replace(tzinfo=UTC),
            wkt="POLYGON ((-119 33, -116 33, -116 35.5, -119 35.5, -119 33))",
            tags={"relativeOrbit": "71", "orbitDirection": "DESCENDING"}, graph_name="S1Preprocessing",
        ))
    return scenes, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        root = Path(tmp)
        scenes, files = build(root, args.scenes)
        payload = parse_payload({
            "name": "bench", "type": "Polygon",
            "coordinates": [[[-118.6, 33.6], [-116.6, 33.6], [-116.6, 35.2], [-118.6, 35.2], [-118.6, 33.6]]],
            "start_time": "2020-01-01T00:00:00Z", "end_time": "2060-01-01T00:00:00Z",
            "scene_type": {"constellation": "sentinel1", "parameters": {"producttype": "SLC"}},
            "scene_graph_name": "S1Preprocessing", "tile_graph_name": "S1BackscatterCoherence",
            "annotations_urls": [f"{root}/{{SCENE}}.SAFE"],
        }, "bench")
        settings = Settings(annotation_sources="urls")

        start = time.perf_counter()
        for path in files:
            ET.parse(path)
        bare = time.perf_counter() - start

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = make_tiles(payload, scenes, settings)
        inventory = time.perf_counter() - start

        start = time.perf_counter()
        write_scenes(root / "tiles.json", result.scenes)
        writing = time.perf_counter() - start

    n_tiles = sum(len(s.tiles) for s in result.scenes)
    chained = sum(1 for s in result.scenes for t in s.tiles if t.previous)
    print(f"burst inventory: {args.scenes} scenes × 3 swaths ({len(files)} annotations parsed, "
          f"{2 * len(files)} on disk), {n_tiles} tiles, {chained} chained; {os.cpu_count()} CPUs")
    print()
    print(f"| {'step':<52} | {'seconds':>8} | {'per file (ms)':>13} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 15}|")
    rows = [
        ("baseline: bare ElementTree.parse of the same files", bare),
        ("ingester: full inventory (make_tiles)", inventory),
        ("ingester: write tiles.json", writing),
    ]
    for name, seconds in rows:
        print(f"| {name:<52} | {seconds:>8.2f} | {1000 * seconds / len(files):>13.2f} |")
    print()
    print(f"inventory / bare parse = {inventory / bare:.2f}×  (target: full inventory ≤ 30 s on 2 cores)")


if __name__ == "__main__":
    main()
