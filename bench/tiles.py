"""Burst inventory benchmark: S1 scenes × 3 swaths (× 2 polarisations on disk) from local SAFE folders.

    python -m bench.tiles [--scenes N] [--runs R] [--memory-scenes 250,500,1000] [--baseline-repo PATH]

The annotations are built from the real IW2 fixture (one copy per swath, VV and VH hard-linked) in a
temporary folder. Time: the full inventory (source lookup, selection of one polarisation per swath,
parsing, burst ids, footprints, AOI test, chaining) and the tiles.json writer, against a bare
`ElementTree.parse` of the same 3 × N files, measured in the same run, interleaved: median and spread
(min–max) of R runs. Memory: the peak resident size of `python -m ingester tiles` (a process of its
own: read the scenes file, inventory, write tiles.json) for each number of scenes of --memory-scenes,
against the peak of a process that only imports what `tiles` imports; with --baseline-repo, the same
command of that checkout (e.g. main before a change) is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingester.config import Settings
from ingester.payload import parse_payload
from ingester.scenes import Scene, write_scenes
from ingester.tiling import make_tiles

REPO = Path(__file__).resolve().parent.parent
FIXTURE = "s1a-iw2-slc-vv-20230108t135251-20230108t135316-046693-0598d3-005.xml"
SCENE = "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76"
AOI = [[[-118.6, 33.6], [-116.6, 33.6], [-116.6, 35.2], [-118.6, 35.2], [-118.6, 33.6]]]
IMPORTS = ("import ingester.cli, ingester.cli.tiles_cmd, ingester.payload, ingester.scenes, ingester.tiling, "
           "ingester.tiling.inventory, ingester.graph.loader")


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


def payload_document(root: Path) -> dict:
    return {
        "name": "bench", "type": "Polygon", "coordinates": AOI,
        "start_time": "2020-01-01T00:00:00Z", "end_time": "2060-01-01T00:00:00Z",
        "scene_type": {"constellation": "sentinel1", "parameters": {"producttype": "SLC"}},
        "scene_graph_name": "S1Preprocessing", "tile_graph_name": "S1BackscatterCoherence",
        "annotations_urls": [f"{root}/{{SCENE}}.SAFE"],
    }


PEAK = ("import atexit, os, runpy, sys\n"
        "def peak():\n"
        "    with open('/proc/self/status') as fh:\n"
        "        kib = next(int(l.split()[1]) for l in fh if l.startswith('VmHWM:'))\n"
        "    with open(os.environ['BENCH_PEAK_FILE'], 'w') as out:\n"
        "        out.write(str(kib))\n"
        "atexit.register(peak)\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True) if sys.argv[0] != '-c' "
        "else exec(sys.argv[1])\n")


def peak_mb(argv: list[str], repo: Path, root: Path) -> float:
    """Peak resident size (VmHWM, read by the process itself when it exits) of one Python process running
    `python -m MODULE ARGS` or `python -c CODE` (argv without the interpreter), with `repo`'s code first on
    its path; a failing command stops the benchmark. (A child's `ru_maxrss` would not do: Linux carries the
    parent's peak across fork and exec.)"""
    peak_file = root / "peak.txt"
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               INGESTER_ANNOTATION_SOURCES="urls", BENCH_PEAK_FILE=str(peak_file))
    module = argv[1:] if argv[0] == "-m" else argv
    done = subprocess.run([sys.executable, "-c", PEAK, *module], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(peak_file.read_text()) / 1024


def memory(root: Path, scenes: list[Scene], sizes: list[int], repos: dict[str, Path]) -> dict[str, list[float]]:
    """Peak MB of `ingester tiles` per number of scenes (one process each), and of the imports alone."""
    payload = root / "payload.json"
    payload.write_text(json.dumps(payload_document(root)))
    out: dict[str, list[float]] = {}
    for label, repo in repos.items():
        out[f"{label}: python -c 'import …' (what tiles imports)"] = [
            peak_mb(["-c", IMPORTS], repo, root) for _ in sizes]
        peaks = []
        for n in sizes:
            scenes_file = root / f"scenes-{n}.json"
            if not scenes_file.exists():
                write_scenes(scenes_file, scenes[:n], next_=False)
            peaks.append(peak_mb(["-m", "ingester", "tiles", str(payload), "--scenes", str(scenes_file),
                                  "-o", str(root / f"tiles-{label}-{n}.json"), "-q", "--db", str(root / "none.db")],
                                 repo, root))
        out[f"{label}: python -m ingester tiles"] = peaks
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000, help="scenes of the timed runs (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs, interleaved (default 5)")
    parser.add_argument("--memory-scenes", default="250,500,1000",
                        help="numbers of scenes whose `ingester tiles` peak memory is measured ('' : none)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout whose `tiles` memory is measured too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.memory_scenes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        root = Path(tmp)
        scenes, files = build(root, max([args.scenes, *sizes]))
        files = files[:3 * args.scenes]
        payload = parse_payload(payload_document(root), "bench")
        settings = Settings(annotation_sources="urls")
        result = None

        def inventory() -> None:
            nonlocal result
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = make_tiles(payload, scenes[:args.scenes], settings)

        cases: dict[str, Callable[[], object]] = {
            "baseline: bare ElementTree.parse of the same files": lambda: [ET.parse(p) for p in files],
            "ingester: full inventory (make_tiles)": inventory,
            "ingester: write tiles.json": lambda: write_scenes(root / "tiles.json", result.scenes),  # type: ignore[union-attr]
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                times[name].append(timed(fn))
        repos = {"this checkout": REPO}
        if args.baseline_repo:
            repos[f"{args.baseline_repo.resolve().name}"] = args.baseline_repo.resolve()
        peaks = memory(root, scenes, sizes, repos) if sizes else {}
    assert result is not None
    n_tiles = sum(len(s.tiles) for s in result.scenes)
    chained = sum(1 for s in result.scenes for t in s.tiles if t.previous)
    print(f"burst inventory: {args.scenes} scenes × 3 swaths ({len(files)} annotations parsed, "
          f"{2 * len(files)} on disk), {n_tiles} tiles, {chained} chained; {os.cpu_count()} CPUs; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"median and spread of {args.runs} runs, interleaved")
    print()
    print(f"| {'step':<52} | {'median s':>8} | {'min–max s':>13} | {'per file (ms)':>13} | {'× baseline':>10} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 15}|{'-' * 15}|{'-' * 12}|")
    bare = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name:<52} | {med:>8.2f} | {f'{min(values):.2f}–{max(values):.2f}':>13} | "
              f"{1000 * med / len(files):>13.2f} | {med / bare:>9.2f}× |")
    if peaks:
        print()
        print("peak resident memory (MB), one process per cell")
        print()
        print(f"| {'process':<62} | " + " | ".join(f"{f'{n} scenes':>11}" for n in sizes) + " |")
        print(f"|{'-' * 64}|" + "|".join("-" * 13 for _ in sizes) + "|")
        for name, values in peaks.items():
            print(f"| {name:<62} | " + " | ".join(f"{v:>11.0f}" for v in values) + " |")
    print()
    print("targets: full inventory ≤ 30 s on 2 cores at 1,000 scenes; `ingester tiles` < 150 MB at 1,000 scenes, "
          "flat in the number of scenes")


if __name__ == "__main__":
    main()
