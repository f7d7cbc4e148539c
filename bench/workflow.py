"""Workflow overhead: the store's and the coordinator's bookkeeping per job from 1,000 to 200,000 jobs,
jobs per second end to end through the real local process pool at 100,000 no-op jobs against a bare
ProcessPoolExecutor making the same calls, and `ingester status` on a 100,000-tile store.

    python -m bench.workflow [--sizes 1000,10000,50000,100000,200000] [--runs 5] [--large-runs 3]
                             [--e2e-jobs 100000] [--workers 2] [--status-tiles 100000]
                             [--baseline-repo PATH] [--baseline-sizes 1000,10000,50000] [--baseline-e2e-runs 3]

Jobs are S1-like: scenes of 5 tiles in tracks of 10 dates, tile k of a date chained onto tile k of the
date before (a job is a scene or a tile: 6 jobs per scene). Every measurement runs in a fresh process
of its own (`--child`), the versions and measures interleaved run by run.

- *bookkeeping*: ingestion, then the run with an executor that completes each job at once (after
  pickling its description, as the process pool does): what remains is the store and the coordinator,
  per job (claims, job descriptions, result writes, releases, attempts), after a 60-job warm-up run in
  the same process (module imports are paid once per process, not per job). Wall time and the
  process's CPU time are both reported: on a shared machine the CPU time moves less with the load.
  Target: flat within ±25 % from 1,000 to 200,000 jobs. The claim's own share is timed too (`Coordinator._claim`).
- *end to end*: ingestion and run with 2 worker processes running no-op workers; the baseline is a
  bare `ProcessPoolExecutor` on the same number of no-op calls with job descriptions of the same
  shape, in the same run. Target: >= 2,000 jobs/s at 100,000 jobs.
- *status*: `ingester status` on a 100,000-tile store, in-process and with interpreter start-up
  (target < 0.5 s).

`--baseline-repo` runs the same measures on another checkout (e.g. main's code) in the same run, at
`--baseline-sizes` (its claims grow with the jobs: 200,000 would take hours) and `--baseline-e2e-runs`.
Each size prints the median and the spread (min-max) of its runs; sizes above 100,000 jobs get
`--large-runs` runs (a run of 200,000 jobs takes minutes).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WKT = "POLYGON((9.0 54.6, 8.9 54.7, 10.4 54.9, 10.5 54.7, 9.0 54.6))"
DATES_PER_TRACK = 10
PER_SCENE = 5
NOOP = "noop_worker:noop"  # bench/noop_worker.py: importable by the worker processes of every checkout


# --- the children (run in a process of their own, with the checkout measured first on sys.path) ---------

def make_scenes(aoi: str, n_scenes: int, per_scene: int = PER_SCENE):
    """Tracks of 10 dates; tile k of a date chains onto tile k of the date before (S1-like)."""
    from ingester.scenes import Scene, Tile, TileRef

    start = datetime(2022, 1, 1, tzinfo=UTC)
    scenes: list = []
    for i in range(n_scenes):
        track, d = divmod(i, DATES_PER_TRACK)
        date = start + timedelta(days=12 * d, seconds=track)
        sid = f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{date:%Y%m%dT%H%M%S}_{track:06d}_{d:06X}_{i:05X}"
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


class Immediate:
    """An executor that completes each job at once, after pickling its description (as a pool does)."""

    def __init__(self, workers: int, settings: object):
        self.capacity = workers
        self.token_source = None
        self.deaths = 0

    def submit(self, worker: str, job: object):
        import pickle
        from concurrent.futures import Future

        from ingester.jobs import JobResult

        pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        future: Future = Future()
        future.set_result(JobResult("done"))
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def _ingest(tmp: Path, n_jobs: int):
    import dataclasses

    from ingester.config import Settings
    from ingester.coordinator import new_run_id
    from ingester.ingest import Plan, commit
    from ingester.payload import load_payload
    from ingester.store import Store

    payload = dataclasses.replace(load_payload(REPO / "payloads" / "denmark-s1.json"), layers={}, name="Bench")
    scenes = make_scenes("Bench", max(n_jobs // (1 + PER_SCENE), 1))
    settings = Settings(db=str(tmp / "bench.db"), workdir=str(tmp / "work"), storage_uri=str(tmp / "storage"),
                        scene_worker=NOOP, tile_worker=NOOP, retry_backoff=0, providers="local")
    store = Store(settings.db)
    run_id = new_run_id()
    t0 = time.perf_counter()
    commit(store, Plan(payload, scenes, [], "bench"), run_id, create_layers=True)
    return store, settings, run_id, time.perf_counter() - t0, len(scenes) * (1 + PER_SCENE)


def child_bookkeeping(tmp: Path, n_jobs: int, workers: int) -> dict:
    from ingester import coordinator

    timers = {"claim": 0.0}
    real_claim = coordinator.Coordinator._claim

    def timed_claim(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return real_claim(self, *args, **kwargs)
        finally:
            timers["claim"] += time.perf_counter() - t

    warm = tmp / "warm-up"  # a first small run pays the imports and caches a process pays once
    warm.mkdir()
    store, settings, run_id, _ingest_s, _jobs = _ingest(warm, 60)
    coordinator.run_aoi(store, "Bench", settings, workers, run_id, lock=False,
                        executor_factory=lambda w, s: Immediate(w, s))
    store.close()
    coordinator.Coordinator._claim = timed_claim
    store, settings, run_id, ingest, jobs = _ingest(tmp, n_jobs)
    t0, c0 = time.perf_counter(), time.process_time()
    report = coordinator.run_aoi(store, "Bench", settings, workers, run_id, lock=False,
                                 executor_factory=lambda w, s: Immediate(w, s))
    run, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert report.executed == jobs and not report.failed, report
    store.close()
    return {"jobs": jobs, "ingest": ingest, "run": run, "cpu": cpu, "claim": timers["claim"]}


def child_e2e(tmp: Path, n_jobs: int, workers: int) -> dict:
    from ingester import coordinator
    from ingester.executor import LocalExecutor

    store, settings, run_id, ingest, jobs = _ingest(tmp, n_jobs)
    t0 = time.perf_counter()
    report = coordinator.run_aoi(store, "Bench", settings, workers, run_id, lock=False,
                                 executor_factory=lambda w, s: LocalExecutor(w, s))
    run = time.perf_counter() - t0
    assert report.executed == jobs and not report.failed, report
    store.close()
    return {"jobs": jobs, "ingest": ingest, "run": run, "total": ingest + run}


def child_pool(tmp: Path, n_jobs: int, workers: int) -> dict:
    """The baseline: the same number of no-op calls, with job descriptions of the same shape, on a
    bare ProcessPoolExecutor."""
    import concurrent.futures
    import multiprocessing

    from noop_worker import noop

    from ingester.config import Settings
    from ingester.jobs import SceneJob, TileJob

    n_scenes = max(n_jobs // (1 + PER_SCENE), 1)
    scene = make_scenes("Bench", 1)[0]
    scene_job = SceneJob(1, 1, "Bench", scene, "s", "w")
    tile_job = TileJob(1, 1, "Bench", scene, scene.tiles[0], None, None, None, None, "s", "w")
    jobs = [scene_job] * n_scenes + [tile_job] * (n_scenes * PER_SCENE)
    settings = Settings()
    t0 = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(noop, job, settings) for job in jobs]
        for f in futures:
            f.result()
    return {"jobs": len(jobs), "total": time.perf_counter() - t0}


def build_status_store(path: Path, n_tiles: int, per_scene: int = PER_SCENE) -> None:
    """A store with n_tiles tiles written directly (statuses mixed, chains of 10 dates)."""
    from ingester.store import Store, dumps

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


def child_status(tmp: Path, n_tiles: int, workers: int) -> dict:
    from typer.testing import CliRunner

    from ingester.cli import app

    path = tmp / "status.db"
    build_status_store(path, n_tiles)
    t0 = time.perf_counter()
    out = CliRunner().invoke(app, ["status", "Big", "--db", str(path)])
    in_process = time.perf_counter() - t0
    assert out.exit_code == 0, out.output
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingester", "status", "Big", "--db", str(path)], check=True,
                   capture_output=True, env=dict(os.environ))
    with_startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ingester.cli"], check=True, capture_output=True,
                   env=dict(os.environ))
    return {"tiles": n_tiles, "in_process": in_process, "with_startup": with_startup,
            "import_cli": time.perf_counter() - t0}


CHILDREN = {"bookkeeping": child_bookkeeping, "e2e": child_e2e, "pool": child_pool, "status": child_status}


# --- the parent --------------------------------------------------------------------------------------

def run_child(measure: str, size: int, workers: int, repo: Path) -> dict:
    """One measurement in a fresh interpreter importing `ingester` from `repo`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(HERE)]))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", measure, str(size),
                              str(workers), tmp], check=True, capture_output=True, text=True, env=env, cwd=tmp)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000,200000", help="jobs per bookkeeping run")
    parser.add_argument("--runs", type=int, default=5, help="runs per measure (median and spread reported)")
    parser.add_argument("--large-runs", type=int, default=3, help="runs of the sizes above 100,000 jobs")
    parser.add_argument("--e2e-jobs", type=int, default=100_000, help="jobs of the end-to-end runs (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--status-tiles", type=int, default=100_000, help="tiles of the status store (0: none)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout measured in the same run")
    parser.add_argument("--baseline-sizes", default="1000,10000,50000", help="bookkeeping sizes of that checkout")
    parser.add_argument("--baseline-e2e-runs", type=int, default=3, help="end-to-end runs of that checkout")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measure, size, workers, tmp = args.child
        print(json.dumps(CHILDREN[measure](Path(tmp), int(size), int(workers))))
        return

    versions = [("this", REPO)]
    if args.baseline_repo:
        versions.append((args.baseline_repo.resolve().name, args.baseline_repo.resolve()))
    sizes = [int(x) for x in args.sizes.split(",") if x]
    base_sizes = [int(x) for x in args.baseline_sizes.split(",") if x]
    plan: list[tuple[str, str, Path, int, int]] = []  # (measure, version, repo, size, runs)
    for name, repo in versions:
        for size in (sizes if name == "this" else base_sizes):
            plan.append(("bookkeeping", name, repo, size, args.large_runs if size > 100_000 else args.runs))
        if args.e2e_jobs:
            plan.append(("e2e", name, repo, args.e2e_jobs, args.runs if name == "this" else args.baseline_e2e_runs))
    if args.e2e_jobs:
        plan.append(("pool", "baseline", REPO, args.e2e_jobs, args.runs))
    if args.status_tiles:
        for name, repo in versions:
            plan.append(("status", name, repo, args.status_tiles, args.runs))
    results: dict[tuple[str, str, int], list[dict]] = {}
    for i in range(max(p[4] for p in plan)):
        todo = [p for p in plan if p[4] > i]
        for measure, name, repo, size, _runs in todo[i % len(todo):] + todo[:i % len(todo)]:  # rotate the order
            results.setdefault((measure, name, size), []).append(run_child(measure, size, args.workers, repo))
            print(f"run {i + 1}: {measure} {name} {size}: {json.dumps(results[(measure, name, size)][-1])}",
                  file=sys.stderr, flush=True)

    print(f"workers={args.workers}, cpus={os.cpu_count()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print("\nbookkeeping per job (store + coordinator, jobs completed at once): median (min-max) of the runs")
    print(f"{'version':<10} {'jobs':>8} {'runs':>4} {'run µs/job':>18} {'run CPU µs/job':>18} "
          f"{'claim µs/job':>18} {'ingest µs/job':>18}")
    for (measure, name, _size), rows in results.items():
        if measure != "bookkeeping":
            continue
        jobs = rows[0]["jobs"]
        per = [1e6 * r["run"] / jobs for r in rows]
        cpu = [1e6 * r["cpu"] / jobs for r in rows]
        claim = [1e6 * r["claim"] / jobs for r in rows]
        ingest = [1e6 * r["ingest"] / jobs for r in rows]
        print(f"{name:<10} {jobs:>8} {len(rows):>4} {_us(per):>18} {_us(cpu):>18} {_us(claim):>18} "
              f"{_us(ingest):>18}")
    if args.e2e_jobs:
        print(f"\nend to end, {args.e2e_jobs} no-op jobs, {args.workers} worker processes: seconds median (min-max)")
        print(f"{'version':<10} {'runs':>4} {'seconds':>24} {'jobs/s (median)':>16} {'run only s':>24}")
        for (measure, name, _size), rows in results.items():
            if measure in ("e2e", "pool"):
                total = [r["total"] for r in rows]
                run = spread([r["run"] for r in rows]) if measure == "e2e" else "-"
                label = name if measure == "e2e" else "bare pool"
                rate = rows[0]["jobs"] / statistics.median(total)
                print(f"{label:<10} {len(rows):>4} {spread(total):>24} {rate:>16,.0f} {run:>24}")
    if args.status_tiles:
        print(f"\n`ingester status` on {args.status_tiles} tiles: seconds median (min-max)")
        for (measure, name, _size), rows in results.items():
            if measure == "status":
                print(f"{name:<10} in-process {spread([r['in_process'] for r in rows])}; "
                      f"`python -m ingester status` incl. start-up {spread([r['with_startup'] for r in rows])}; "
                      f"baseline `python -c 'import ingester.cli'` {spread([r['import_cli'] for r in rows])}")


def _us(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


if __name__ == "__main__":
    if "--child" in sys.argv:  # a child imports `ingester` from the checkout first on PYTHONPATH
        sys.path[:] = [p for p in sys.path if Path(p).resolve() != HERE] + [str(HERE)]
    main()
