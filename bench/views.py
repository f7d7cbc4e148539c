"""`ingester show` on 10,000 scenes (target < 2 s) and `ingester map -o map.png` of 2,000 footprints
(target < 5 s), each against a baseline measured in the same run.

    python -m bench.views [--runs N] [--scenes N] [--footprints N]

show: a synthetic Sentinel-2 scenes file (10,000 scenes, 5-point footprints around the Denmark AOI, cloud
cover, size) read with the Denmark S2 payload's AOI, so that every row gets its geodesic coverage.
Baseline: the project's reader alone (`read_scenes`). Measured: the command in-process (output to a pipe:
tab-separated text; `--json`; the rich table a terminal gets), and `python -m ingester show` as a user runs
it (interpreter start included).

map: a synthetic Sentinel-1 tiles file, 200 acquisitions × 10 bursts = 2,000 burst footprints of 43 points
each (like real annotation footprints), chained, 20 burst ids labelled. Baseline: matplotlib alone drawing
the same 2,000 polygons as one bare PolyCollection into a PNG of the same size. Measured: the drawing
(`render_map_png`), the command in-process, and `python -m ingester map` end to end (imports included).

Every figure is the median of `--runs` runs (≥ 5) with its spread (min–max).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingester.scenes import Scene, Tile, TileRef, read_scenes, write_scenes

REPO = Path(__file__).resolve().parent.parent
PAYLOAD_S2 = REPO / "payloads" / "denmark-s2.json"
PAYLOAD_S1 = REPO / "payloads" / "denmark-s1.json"


def s2_file(path: Path, count: int) -> Path:
    rng = random.Random(14)
    start = datetime(2022, 1, 1, 10, 34, 31, tzinfo=UTC)
    tiles = ["32UNF", "32UNG", "32UPF", "32VNH", "32UMF"]
    scenes = []
    for i in range(count):
        day = start + timedelta(days=i // 5, seconds=i % 5)
        tile = tiles[i % len(tiles)]
        sid = f"S2{'AB'[i % 2]}_MSIL1C_{day:%Y%m%dT%H%M%S}_N0510_R108_T{tile}_{day:%Y%m%dT%H%M%S}"
        x, y = 9.0 + rng.uniform(-1.2, 0.8), 54.5 + rng.uniform(-0.6, 0.6)
        wkt = f"POLYGON (({x} {y}, {x + 1.6} {y}, {x + 1.62} {y + 1.0}, {x + 0.02} {y + 1.0}, {x} {y}))"
        scenes.append(Scene(sid, "DenmarkDemoS2", day, wkt,
                            tags={"cloudCoverPercentage": f"{rng.uniform(0, 100):.2f}", "relativeOrbit": "108",
                                  "constellation": "SENTINEL2"},
                            metadata={"online": rng.random() > 0.1, "size": rng.randint(500, 900) * 10**6}))
    write_scenes(path, scenes)
    return path


def s1_tiles_file(path: Path, footprints: int, bursts: int = 10) -> Path:
    dates = footprints // bursts
    start = datetime(2022, 1, 11, 17, 1, 24, tzinfo=UTC)
    scenes: list[Scene] = []
    for d in range(dates):
        track = d % 2
        date = start + timedelta(days=6 * (d // 2), hours=track)
        sid = f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{date:%Y%m%dT%H%M%S}_04{d:04d}_04ECAD_{d:04X}"
        earlier = [s for s in scenes if s.tags["relativeOrbit"] == ("44", "117")[track]]
        tiles = []
        for k in range(bursts):
            name = f"{('044', '117')[track]}_{151000 + k}_IW{1 + k % 3}"
            y0 = 54.3 + 0.18 * k + 0.3 * track
            x0 = 8.6 + 0.4 * track
            edge = [(x0 + 1.6 * i / 20, y0 + 0.02 * i / 20) for i in range(21)]
            ring = edge + [(x + 0.05, y + 0.2) for x, y in reversed(edge)] + [edge[0]]
            wkt = "POLYGON((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in ring) + "))"
            prev = TileRef(earlier[-1].date, earlier[-1].source_id, name) if earlier else None
            ref = TileRef(earlier[0].date, earlier[0].source_id, name) if earlier else None
            tiles.append(Tile(name, sid, date, wkt, swath_id=f"IW{1 + k % 3}", tile_nr=k, previous=prev,
                              reference=ref, graph_name="S1BackscatterCoherence"))
        footprint = "POLYGON ((8.5 54.2, 10.8 54.2, 10.9 56.6, 8.6 56.6, 8.5 54.2))"
        scenes.append(Scene(sid, "DenmarkDemoS1", date, footprint, tiles=tiles,
                            tags={"relativeOrbit": ("44", "117")[track], "orbitDirection": "ASCENDING",
                                  "constellation": "SENTINEL1"}))
    write_scenes(path, scenes)
    return path


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def cli(args: list[str]) -> None:
    from ingester.cli import app

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        try:
            app(args, prog_name="ingester")
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"ingester {' '.join(args)}: exit {exc.code}") from None


def process(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "ingester", *args], check=True, stdout=subprocess.DEVNULL,
                   cwd=REPO)


def bare_polycollection(path: Path, polygons: list, height: int) -> None:
    """The baseline: matplotlib draws the same polygons, nothing else, into a PNG of the same size."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.08, 0.7, 0.84))
    verts = [np.asarray(p.exterior.coords)[:, :2] for p in polygons]
    ax.add_collection(PolyCollection(verts, facecolors=(0.1, 0.4, 0.7, 0.2), edgecolors="#1f77b4", linewidths=0.5))
    ax.autoscale_view()
    fig.savefig(path, format="png", dpi=100)


def row(label: str, times: list[float], baseline: float | None) -> str:
    median = statistics.median(times)
    ratio = f"{median / baseline:.2f}×" if baseline else "1.00×"
    return f"| {label} | {median:.3f} | {min(times):.3f}–{max(times):.3f} | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=10_000)
    parser.add_argument("--footprints", type=int, default=2_000)
    opts = parser.parse_args()
    runs = max(5, opts.runs)
    from ingester.payload import load_payload
    from ingester.views.model import footprints, from_file
    from ingester.views.png import render_map_png

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scenes = s2_file(tmp / "scenes.json", opts.scenes)
        tiles = s1_tiles_file(tmp / "tiles.json", opts.footprints)
        size_mb = scenes.stat().st_size / 1e6
        print(f"uptime: {os.popen('uptime').read().strip()}")
        print(f"\n`ingester show` on {opts.scenes:,} scenes ({size_mb:.1f} MB), --payload {PAYLOAD_S2.name}; "
              f"median of {runs} runs (seconds)\n")
        print("| what | median s | spread s | × baseline |\n|---|---|---|---|")
        base = timed(lambda: read_scenes(scenes), runs)
        b = statistics.median(base)
        print(row("baseline: `read_scenes` (the project's reader alone)", base, None))
        show = ["show", str(scenes), "--payload", str(PAYLOAD_S2)]
        print(row("`show` in-process, to a pipe (tab-separated)", timed(lambda: cli(show), runs), b))
        print(row("`show --json` in-process", timed(lambda: cli([*show, "--json"]), runs), b))
        os.environ["FORCE_COLOR"] = "1"  # rich then renders what a terminal gets
        os.environ["COLUMNS"] = "220"
        print(row("`show` in-process on a terminal (beyond 300 rows: aligned text)", timed(lambda: cli(show), runs),
                  b))
        small = ["show", str(s2_file(tmp / "small.json", 300)), "--payload", str(PAYLOAD_S2)]
        print(row("for information: `show` of 300 scenes on a terminal (the rich table)",
                  timed(lambda: cli(small), runs), b))
        del os.environ["FORCE_COLOR"], os.environ["COLUMNS"]
        print(row("**`python -m ingester show` (process, interpreter start included)**",
                  timed(lambda: process(show), runs), b))

        view = from_file(tiles, load_payload(PAYLOAD_S1).aoi)
        items = footprints(view)
        image = render_map_png(view, tmp / "probe.png", "date")
        polygons = [f.geometry for f in items]
        print(f"\n`ingester map -o map.png` of {len(items):,} burst footprints ({len(view.scenes)} scenes, "
              f"{image.labels} burst ids labelled, {image.width}×{image.height} px); median of {runs} runs\n")
        print("| what | median s | spread s | × baseline |\n|---|---|---|---|")
        base = timed(lambda: bare_polycollection(tmp / "bare.png", polygons, image.height), runs)
        b = statistics.median(base)
        print(row("baseline: matplotlib alone, one bare PolyCollection of the same polygons → PNG", base, None))
        print(row("`render_map_png` (colours, AOI, labels, legend, scale, title with union coverage)",
                  timed(lambda: render_map_png(view, tmp / "lib.png", "date"), runs), b))
        draw = ["map", str(tiles), "--payload", str(PAYLOAD_S1), "-o", str(tmp / "cli.png")]
        print(row("`map` in-process (read, coverage, draw, write)", timed(lambda: cli(draw), runs), b))
        print(row("**`python -m ingester map` (process, imports included)**", timed(lambda: process(draw), runs), b))
        html = ["map", str(tiles), "--payload", str(PAYLOAD_S1), "-o", str(tmp / "cli.html")]
        print(row("for information: `map -o map.html` in-process", timed(lambda: cli(html), runs), b))
        line = ["timeline", str(tiles), "-o", str(tmp / "t.png")]
        print(row("for information: `timeline` in-process", timed(lambda: cli(line), runs), b))
        print(f"\nPNG size: {(tmp / 'cli.png').stat().st_size / 1e3:.0f} kB; HTML size: "
              f"{(tmp / 'cli.html').stat().st_size / 1e6:.1f} MB; uptime after: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
