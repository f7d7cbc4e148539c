"""ExtractS2Bands on the Sentinel-2 excerpt (B01, 1830 × 1830) against a plain COG conversion of the same band.

    python -m bench.process [--runs N] [--baseline-repo PATH]   (default 9 runs)

The graph run is the whole processing job (`run_tile_job`): import the stored SAFE zip, run the python step
(extract_s2.py: read the JPEG 2000, encode reflectance, write a COG), store and describe the output.
Baselines, measured in the same run on the same file: GDAL's COG driver (deflate, 512 blocks, overviews, as
the graph) called in-process through rasterio, and the same in a separate Python process (the cost of a plain
command-line conversion). Interleaved runs after one warm-up of each; median and spread (min–max) of the
wall time, and the median CPU time (user + system, the step's process included).
With --baseline-repo, the graph run of another checkout (e.g. main before a change) too, in a process of its
own that imports that checkout's `ingester`. Target: graph ≤ 1.2 × the in-process conversion.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from ingester.config import load_settings
from ingester.graph.worker import run_tile_job
from ingester.jobs import TileJob
from ingester.payload import Layer
from ingester.scenes import Scene, Tile
from ingester.times import parse_time

S2_ID = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
TESTDATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SAFE = TESTDATA / "s2" / f"{S2_ID}.SAFE"
JP2 = next(SAFE.glob("GRANULE/*/IMG_DATA/*_B01.jp2"), None) if SAFE.exists() else None


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children waited for: less sensitive to the
    machine's load than wall time (a loaded machine stretches a multi-threaded step's wall time most)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def graph_run(tmp: Path, i: int) -> tuple[float, float]:
    date = parse_time("2018-01-01T10:54:41Z")
    tile = Tile(S2_ID, S2_ID, date, "POLYGON((1 42,3 42,3 43,1 43,1 42))", graph_name="ExtractS2Bands")
    scene = Scene(S2_ID, "bench", date, tile.wkt, tiles=[tile])
    storage = tmp / "storage"
    prefix = storage / "bench" / S2_ID / "tiles" / S2_ID
    prefix.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(prefix / f"{S2_ID}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(SAFE.rglob("*")):
            zf.write(path, path.relative_to(SAFE.parent).as_posix())
    job = TileJob(i, 1, "bench", scene, tile, None, None, None, None, str(storage), str(tmp / "work" / f"t{i}"),
                  layers={"B01": Layer("S2_B01", "reflectance")}, graph_config={"bands": "B01"})
    start, cpu = time.perf_counter(), cpu_seconds()
    result = run_tile_job(job, load_settings({}))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if result.outcome != "done":
        raise SystemExit(f"graph failed: {result.message}")
    return elapsed, cpu


def gdal_cog(tmp: Path, i: int) -> tuple[float, float]:
    import rasterio
    import rasterio.shutil

    start, cpu = time.perf_counter(), cpu_seconds()
    with rasterio.open(JP2) as src:
        rasterio.shutil.copy(src, tmp / f"gdal{i}.tif", driver="COG", COMPRESS="DEFLATE",
                             BLOCKSIZE="512", OVERVIEWS="AUTO", RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS")
    return time.perf_counter() - start, cpu_seconds() - cpu


def gdal_translate_cli(tmp: Path, i: int) -> tuple[float, float]:
    """The same conversion as a separate process (what a plain `rio cogeo create` / `gdal_translate -of COG`
    costs: interpreter start, GDAL init, conversion). rio-cogeo 7 cannot read this JPEG 2000 ("Cannot invert
    geotransform" in its WarpedVRT), so the process runs GDAL's COG driver through rasterio."""
    code = ("import sys, rasterio, rasterio.shutil\n"
            "with rasterio.open(sys.argv[1]) as src:\n"
            "    rasterio.shutil.copy(src, sys.argv[2], driver='COG', COMPRESS='DEFLATE', BLOCKSIZE='512',"
            " OVERVIEWS='AUTO', RESAMPLING='AVERAGE', NUM_THREADS='ALL_CPUS')\n")
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run([sys.executable, "-c", code, str(JP2), str(tmp / f"cli{i}.tif")], check=True)
    return time.perf_counter() - start, cpu_seconds() - cpu


class OtherCheckout:
    """`graph_run` of another checkout, in a child process serving one run per line of its stdin."""

    CODE = ("import importlib.util, sys\n"
            "from pathlib import Path\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "spec = importlib.util.spec_from_file_location('bench_process', sys.argv[2])\n"
            "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)\n"
            "import ingester; assert ingester.__file__.startswith(sys.argv[1]), ingester.__file__\n"
            "for line in sys.stdin:\n"
            "    print(*bench.graph_run(Path(sys.argv[3]), int(line)), flush=True)\n")

    def __init__(self, repo: Path, tmp: Path):
        tmp.mkdir()
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, str(repo), __file__, str(tmp)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=repo)

    def __call__(self, tmp: Path, i: int) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the baseline checkout's graph run failed (exit {self.proc.wait()})")
        wall, cpu = line.split()
        return float(wall), float(cpu)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline-repo", type=Path, help="another checkout whose ExtractS2Bands run is measured too")
    args = parser.parse_args()
    if JP2 is None:
        raise SystemExit(f"S2 excerpt not found under {TESTDATA}")
    cases = {"ExtractS2Bands (run_tile_job)": graph_run, "GDAL COG driver (rasterio, in-process)": gdal_cog,
             "GDAL COG driver (separate process)": gdal_translate_cli}
    with tempfile.TemporaryDirectory(prefix="bench-process-") as tmpdir:
        tmp = Path(tmpdir)
        other = OtherCheckout(args.baseline_repo.resolve(), tmp / "other") if args.baseline_repo else None
        if other is not None:
            cases[f"ExtractS2Bands of {args.baseline_repo.resolve().name}"] = other
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for fn in cases.values():  # warm-up: file cache, imports
            fn(tmp, 0)
        for i in range(1, args.runs + 1):  # interleaved, so that load changes hit every case alike
            for name, fn in cases.items():
                wall, cpu = fn(tmp, i)
                times[name].append(wall)
                cpus[name].append(cpu)
        if other is not None:
            other.close()
    first = next(iter(cases))
    graph, graph_cpu = statistics.median(times[first]), statistics.median(cpus[first])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"B01 1830×1830 JPEG 2000 → COG, median and spread of {args.runs} runs; {os.cpu_count()} CPUs; load {load}")
    print(f"| {'case':<40} | {'median s':>8} | {'min–max s':>11} | {'graph / case':>12} "
          f"| {'CPU s':>6} | {'CPU graph / case':>16} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 13}|{'-' * 14}|{'-' * 8}|{'-' * 18}|")
    for name, values in times.items():
        med, cpu = statistics.median(values), statistics.median(cpus[name])
        print(f"| {name:<40} | {med:>8.3f} | {f'{min(values):.3f}–{max(values):.3f}':>11} | {graph / med:>11.2f}× "
              f"| {cpu:>6.3f} | {graph_cpu / cpu:>15.2f}× |")


if __name__ == "__main__":
    main()
