"""The scenes/tiles reader with its GeoJSON checks, against the same reader without them.

    python -m bench.reader [--runs N] [--scenes N] [--baseline-repo PATH]

Files: the synthetic Sentinel-2 scenes file of `bench.views` (10,000 scenes, 5-point footprints) and a tiles
file of `bench.tiles` scenes (1,000 S1 scenes × 18 bursts of 42-point footprints, written by `ingester tiles`).
Measured in separate processes, interleaved, after one warm-up read each: `read_scenes` of this checkout,
its GeoJSON checks alone (`geometry_problem` on every feature's geometry), and with --baseline-repo
`read_scenes` of that checkout (e.g. main before the checks). Median and spread (min–max) of N runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READ = ("import sys, time\n"
        "from ingester.scenes import read_scenes\n"
        "read_scenes(sys.argv[1])\n"
        "start = time.perf_counter(); read_scenes(sys.argv[1]); print(time.perf_counter() - start)\n")
CHECK = ("import json, sys, time\n"
         "from ingester.geojson_check import geometry_problem\n"
         "doc = json.loads(open(sys.argv[1], encoding='utf-8').read())\n"
         "start = time.perf_counter()\n"
         "bad = [geometry_problem(f['geometry']) for f in doc['features'] if f.get('geometry')]\n"
         "assert not any(bad), bad\n"
         "print(time.perf_counter() - start)\n")


def seconds(code: str, path: Path, repo: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True, env=env,
                         cwd=repo)
    return float(out.stdout.strip().splitlines()[-1])


def tiles_file(root: Path, scenes: int) -> Path:
    """`ingester tiles` on `scenes` bench.tiles scenes (S1, 3 swaths, 18 bursts over the AOI each)."""
    import json

    from bench.tiles import build, payload_document
    from ingester.scenes import write_scenes

    built, _files = build(root, scenes)
    write_scenes(root / "scenes.json", built, next_=False)
    (root / "payload.json").write_text(json.dumps(payload_document(root)))
    env = dict(os.environ, INGESTER_ANNOTATION_SOURCES="urls")
    subprocess.run([sys.executable, "-m", "ingester", "tiles", str(root / "payload.json"), "--scenes",
                    str(root / "scenes.json"), "-o", str(root / "tiles.json"), "-q", "--db", str(root / "none.db")],
                   check=True, env=env, cwd=REPO)
    return root / "tiles.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--scenes", type=int, default=10000, help="scenes of the Sentinel-2 file (default 10000)")
    parser.add_argument("--tile-scenes", type=int, default=1000, help="S1 scenes of the tiles file (default 1000)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout whose reader is measured too")
    args = parser.parse_args()
    from bench.views import s2_file

    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        root = Path(tmp)
        (root / "tiles").mkdir()
        files = {f"{args.scenes} S2 scenes": s2_file(root / "s2.json", args.scenes),
                 f"{args.tile_scenes} S1 scenes, tiles": tiles_file(root / "tiles", args.tile_scenes)}
        cases = {"read_scenes (this checkout)": (READ, REPO), "its GeoJSON checks alone": (CHECK, REPO)}
        if args.baseline_repo:
            cases[f"read_scenes ({args.baseline_repo.resolve().name})"] = (READ, args.baseline_repo.resolve())
        times = {(f, c): [] for f in files for c in cases}
        for _ in range(args.runs):
            for fname, path in files.items():
                for cname, (code, repo) in cases.items():
                    times[(fname, cname)].append(seconds(code, path, repo))
        sizes = {f: p.stat().st_size / 1e6 for f, p in files.items()}
    print(f"median and spread of {args.runs} runs, interleaved; {os.cpu_count()} CPUs; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"| {'file':<26} | {'reader':<34} | {'median s':>8} | {'min–max s':>11} | {'× first':>7} |")
    print(f"|{'-' * 28}|{'-' * 36}|{'-' * 10}|{'-' * 13}|{'-' * 9}|")
    for fname in files:
        first = statistics.median(times[(fname, next(iter(cases)))])
        for cname in cases:
            values = times[(fname, cname)]
            med = statistics.median(values)
            label = f"{fname} ({sizes[fname]:.0f} MB)"
            print(f"| {label:<26} | {cname:<34} | {med:>8.3f} | {f'{min(values):.3f}–{max(values):.3f}':>11} | "
                  f"{med / first:>6.2f}× |")


if __name__ == "__main__":
    main()
