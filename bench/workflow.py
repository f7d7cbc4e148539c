"""Workflow overhead: 2,000 scenes × 5 tiles with no-op workers through the store, the coordinator and
the real local process pool, against the same no-op calls on a bare ProcessPoolExecutor; and
`ingester status` on a 100,000-tile store.

    python -m bench.workflow [--scenes 2000] [--tiles-per-scene 5] [--workers 2] [--status-tiles 100000]
    python -m bench.workflow --executor dask [--jobs 10000] [--workers 2] [--runs 5]   (bench/dask_workflow.py)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingester.config import Settings
from ingester.coordinator import new_run_id, run_aoi
from ingester.executor import LocalExecutor
from ingester.ingest import Plan, commit
from ingester.jobs import JobResult, SceneJob, TileJob
from ingester.payload import load_payload
from ingester.scenes import Scene, Tile, TileRef
from ingester.store import Store, dumps
from ingester.workflow import summary

REPO = Path(__file__).resolve().parent.parent
WKT = "POLYGON((9.0 54.6, 8.9 54.7, 10.4 54.9, 10.5 54.7, 9.0 54.6))"
DATES_PER_TRACK = 10


def noop(job: object, settings: object) -> JobResult:
    return JobResult("done")


def make_scenes(aoi: str, n_scenes: int, per_scene: int) -> list[Scene]:
    """Tracks of 10 dates; tile k of a date chains onto tile k of the date before (S1-like)."""
    start = datetime(2022, 1, 1, tzinfo=UTC)
    scenes: list[Scene] = []
    for i in range(n_scenes):
        track, d = divmod(i, DATES_PER_TRACK)
        date = start + timedelta(days=12 * d, seconds=track)
        sid = f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{date:%Y%m%dT%H%M%S}_{track:06d}_{d:06X}_{i:04X}"
        prev_scene = scenes[-1] if d else None
        root_scene = scenes[i - d] if d else None
        tiles = []
        for k in range(per_scene):
            name = f"T{track}_IW1_{k}"
            tiles.append(Tile(source_id=name, scene_id=sid, date=date, wkt=WKT, swath_id="IW1", tile_nr=k + 1,
                              graph_name="Pass", is_retriable=True,
                              previous=TileRef(prev_scene.date, prev_scene.source_id, name) if prev_scene else None,
                              reference=TileRef(root_scene.date, root_scene.source_id, name) if root_scene else None))
        scenes.append(Scene(source_id=sid, aoi=aoi, date=date, wkt=WKT, graph_name="Pass", is_retriable=True,
                            tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial"},
                            tiles=tiles))
    return scenes


def bench_pool(workers: int, n_scenes: int, per_scene: int, tmp: Path) -> list[tuple[str, float, int]]:
    import dataclasses

    payload = dataclasses.replace(load_payload(REPO / "payloads" / "denmark-s1.json"), layers={}, name="Bench")
    scenes = make_scenes("Bench", n_scenes, per_scene)
    settings = Settings(db=str(tmp / "bench.db"), workdir=str(tmp / "work"), scene_worker="bench.workflow:noop",
                        tile_worker="bench.workflow:noop", retry_backoff=0)
    n_jobs = n_scenes * (1 + per_scene)
    rows = []

    # baseline: the same number of no-op calls, with job descriptions of the same shape, on a bare pool
    sample_scene = scenes[0]
    scene_job = SceneJob(1, 1, "Bench", sample_scene, "s", "w")
    tile_job = TileJob(1, 1, "Bench", sample_scene, sample_scene.tiles[0], None, None, None, None, "s", "w")
    jobs = [scene_job] * n_scenes + [tile_job] * (n_scenes * per_scene)
    t0 = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=__import__("multiprocessing").get_context("spawn")
                                                ) as pool:
        futures = [pool.submit(noop, job, settings) for job in jobs]
        for f in futures:
            f.result()
    rows.append(("bare ProcessPoolExecutor, no-op calls", time.perf_counter() - t0, n_jobs))

    # ingester: ingest (records, scenes, tiles, links) + run every job through store and pool
    t0 = time.perf_counter()
    store = Store(settings.db)
    run_id = new_run_id()
    plan = Plan(payload, scenes, [], "bench")
    commit(store, plan, run_id, create_layers=True)
    t_ingest = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = run_aoi(store, "Bench", settings, workers, run_id, lock=False,
                     executor_factory=lambda w, s: LocalExecutor(w, s))
    t_run = time.perf_counter() - t1
    assert report.executed == n_jobs and not report.failed, report
    rows.append(("ingester: ingest into the store", t_ingest, n_jobs))
    rows.append(("ingester: run all jobs (store + pool)", t_run, n_jobs))
    rows.append(("ingester: end to end", t_ingest + t_run, n_jobs))
    store.close()
    return rows


def build_status_store(path: Path, n_tiles: int, per_scene: int = 5) -> None:
    """A store with n_tiles tiles written directly (statuses mixed, chains of 10 dates)."""
    store = Store(path)
    n_scenes = n_tiles // per_scene
    now = "2026-01-01T00:00:00Z"
    statuses = ("DONE",) * 7 + ("NEW", "PENDING", "RETRY", "FAILED")
    with store.transaction():
        store.execute("INSERT INTO aoi (name, settings, created_at, updated_at) VALUES ('Big', '{}', ?, ?)", (now, now))
        start = datetime(2020, 1, 1, tzinfo=UTC)
        scene_rows = []
        for i in range(n_scenes):
            date = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            scene_rows.append((i + 1, 1, f"S{i}", date, statuses[i % len(statuses)], "{}", "{}", WKT, now))
        store.conn.executemany("INSERT INTO scene (id, aoi_id, source_id, date, status, data, tags, wkt, updated_at) "
                               "VALUES (?,?,?,?,?,?,?,?,?)", scene_rows)
        tile_rows = []
        data = dumps({"date": "2020-01-01T00:00:00Z", "wkt": WKT})
        for i in range(n_scenes):
            d = i % DATES_PER_TRACK
            for k in range(per_scene):
                tid = i * per_scene + k + 1
                prev = tid - per_scene if d else None
                ref = (i - d) * per_scene + k + 1 if d else None
                tile_rows.append((tid, i + 1, 1, f"T{k}", statuses[tid % len(statuses)], prev, ref, data, now))
        store.conn.executemany("INSERT INTO tile (id, scene_id, aoi_id, source_id, status, prev, ref, data, "
                               "updated_at) VALUES (?,?,?,?,?,?,?,?,?)", tile_rows)
    store.close()


def bench_status(n_tiles: int, tmp: Path) -> list[tuple[str, float, int]]:
    path = tmp / "status.db"
    build_status_store(path, n_tiles)
    rows = []
    with Store(path) as st:
        t0 = time.perf_counter()
        st.one("SELECT count(*) FROM tile")
        rows.append(("baseline: SELECT count(*) FROM tile", time.perf_counter() - t0, n_tiles))
        t0 = time.perf_counter()
        result = summary(st, 1)
        rows.append(("summary() query", time.perf_counter() - t0, n_tiles))
        assert result["tiles"]["total"] == n_tiles
    from typer.testing import CliRunner

    from ingester.cli import app

    t0 = time.perf_counter()
    out = CliRunner().invoke(app, ["status", "Big", "--db", str(path)])
    rows.append(("`ingester status Big` (in-process CLI)", time.perf_counter() - t0, n_tiles))
    assert out.exit_code == 0, out.output
    import subprocess

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingester", "status", "Big", "--db", str(path)], check=True,
                   capture_output=True, cwd=REPO)
    rows.append(("`python -m ingester status Big` (incl. startup)", time.perf_counter() - t0, n_tiles))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ingester.cli"], check=True, capture_output=True, cwd=REPO)
    rows.append(("baseline: `python -c 'import ingester.cli'`", time.perf_counter() - t0, 0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--tiles-per-scene", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--status-tiles", type=int, default=100_000)
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="dask: the Dask back-end against the local pool (bench.dask_workflow; its own options)")
    args, rest = parser.parse_known_args()
    if args.executor == "dask":
        from bench.dask_workflow import main as dask_main

        dask_main(rest + (["--workers", str(args.workers)] if "--workers" in sys.argv else []))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_pool(args.workers, args.scenes, args.tiles_per_scene, Path(tmp))
        rows += bench_status(args.status_tiles, Path(tmp))
    print(f"workers={args.workers}, cpus={os.cpu_count()}, scenes={args.scenes}, "
          f"tiles={args.scenes * args.tiles_per_scene}, status store={args.status_tiles} tiles")
    print(f"{'measure':<52} {'seconds':>9} {'jobs/s':>9}")
    for name, seconds, n in rows:
        rate = f"{n / seconds:,.0f}" if n and ("pool" in name.lower() or "ingester:" in name) else ""
        print(f"{name:<52} {seconds:>9.3f} {rate:>9}")


if __name__ == "__main__":
    main()
