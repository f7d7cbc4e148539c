"""The Dask back-end's bookkeeping (`python -m bench.workflow --executor dask`): 10,000 no-op jobs
(scenes of 5 tiles, S1-like chains) through the store, the coordinator and a Dask LocalCluster of 2
worker processes, against the same jobs through the local process pool, alternated run by run in the
same process, and the ceiling: a bare Dask map of the same no-op calls on the same cluster. Reports, per
executor, the median and the spread (min-max) of jobs/s and the time per
job; for Dask also the cluster's start-up and the rate once started. Target: >= 300 jobs/s with Dask.

    python -m bench.workflow --executor dask [--jobs 10000] [--workers 2] [--runs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.workflow import REPO, make_scenes

NOOP = "bench.noop_worker:noop"

PER_SCENE = 5


def one_run(executor: str, n_jobs: int, workers: int, tmp: Path) -> dict[str, float]:
    from ingester.config import Settings
    from ingester.coordinator import new_run_id, run_aoi
    from ingester.dask_executor import DaskExecutor
    from ingester.executor import LocalExecutor
    from ingester.ingest import Plan, commit
    from ingester.payload import load_payload
    from ingester.store import Store

    payload = dataclasses.replace(load_payload(REPO / "payloads" / "denmark-s1.json"), layers={}, name="Bench")
    scenes = make_scenes("Bench", max(n_jobs // (1 + PER_SCENE), 1), PER_SCENE)
    settings = Settings(db=str(tmp / f"{executor}.db"), workdir=str(tmp / "work"), scene_worker=NOOP,
                        tile_worker=NOOP, retry_backoff=0)
    store = Store(settings.db)
    run_id = new_run_id()
    commit(store, Plan(payload, scenes, [], "bench"), run_id, create_layers=True)
    started: dict[str, float] = {}

    def factory(w: int, s: Settings):
        t0 = time.perf_counter()
        ex = DaskExecutor(w, s) if executor == "dask" else LocalExecutor(w, s)
        started["startup"] = time.perf_counter() - t0
        return ex

    t0 = time.perf_counter()
    report = run_aoi(store, "Bench", settings, workers, run_id, lock=False, executor_factory=factory)
    seconds = time.perf_counter() - t0
    store.close()
    assert not report.failed and report.executed == len(scenes) * (1 + PER_SCENE), report
    return {"jobs": report.executed, "seconds": seconds, "startup": started["startup"]}


def bare_dask(n_jobs: int, workers: int) -> dict[str, float]:
    """The ceiling: the same number of no-op calls mapped at once on a LocalCluster, results gathered in
    batches as they complete (no store, no coordinator, no job descriptions)."""
    import distributed

    from bench.noop_worker import noop

    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        startup = time.perf_counter() - t0
        futures = client.map(noop, range(n_jobs), [None] * n_jobs, pure=False)
        for batch in distributed.as_completed(futures).batches():
            client.gather(batch)
        seconds = time.perf_counter() - t0
    return {"jobs": n_jobs, "seconds": seconds, "startup": startup}


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--executor", choices=("dask",), default="dask", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"local": [], "dask": [], "bare": []}
    for i in range(args.runs):
        for executor in ("local", "dask", "bare"):
            with tempfile.TemporaryDirectory() as tmp:
                results[executor].append(bare_dask(args.jobs, args.workers) if executor == "bare" else
                                         one_run(executor, args.jobs, args.workers, Path(tmp)))
            r = results[executor][-1]
            print(f"run {i + 1} {executor}: {r['jobs']:.0f} jobs in {r['seconds']:.2f} s "
                  f"(start-up {r['startup']:.2f} s)", flush=True)
    print(f"\n{results['local'][0]['jobs']:.0f} no-op jobs, workers={args.workers}, cpus={os.cpu_count()}, "
          f"runs={args.runs}; median (min-max)")
    print(f"{'executor':<34} {'jobs/s':>22} {'ms per job':>20}")
    for executor, label in (("local", "local process pool (baseline)"), ("dask", "Dask LocalCluster"),
                            ("bare", "bare Dask map, same no-op calls")):
        rates = [r["jobs"] / r["seconds"] for r in results[executor]]
        per_job = [1000 * r["seconds"] / r["jobs"] for r in results[executor]]
        print(f"{label:<34} {spread(rates):>22} {spread(per_job, '{:.2f}'):>20}")
    for executor, label in (("dask", "Dask, once the cluster is up"), ("bare", "bare Dask, once the cluster is up")):
        started = [r["jobs"] / (r["seconds"] - r["startup"]) for r in results[executor]]
        print(f"{label:<34} {spread(started):>22}")
    startup = [r["startup"] for r in results["dask"]]
    print(f"Dask cluster start-up: {spread(startup, '{:.2f}')} s")


if __name__ == "__main__":
    main()
