"""Catalogue paging overhead: `ingester.catalogue.search(--limit 0)` over 10,000 scenes served by the
loopback fake CDSE catalogue (page size 1000), against raw `requests` fetching the same URLs
(GET + JSON decode) in the same run. Target (bench/README.md): search ≤ 1.5 × raw.

Run from the repository root: `python -m bench.catalogue [--scenes N] [--rounds R]`. Each round (after a
warm-up round) measures the search, the raw fetch of the URLs the search asked for, and the pager alone;
printed: the median and spread (min–max) of the rounds, and the median and spread of the per-round ratio
to raw (the three measured in the same round).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from datetime import UTC, datetime, timedelta

import requests
from shapely.geometry import box

from ingester.catalogue import cdse
from ingester.catalogue.cdse import make_service
from ingester.catalogue.paging import PagerStats
from ingester.config import load_settings
from ingester.geometry import query_polygons
from ingester.payload import parse_payload
from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product

TILES = ["32UNF", "32UNG", "32UPF", "32UPG", "32VNH"]


def products(n: int) -> list[dict]:
    t0 = datetime(2022, 1, 1, 10, 30, tzinfo=UTC)
    out = []
    for i in range(n):  # 5 tiles per datatake, one datatake every 52 minutes
        tile = TILES[i % len(TILES)]
        out.append(s2_product(sensing=t0 + timedelta(minutes=52 * (i // len(TILES))), tile=tile,
                              geometry=box(9.0 + 0.01 * (i % 7), 54.1, 10.6, 55.9), cloud=(i * 7.3) % 100,
                              orbit=30000 + i // len(TILES)))
    return out


def serve(n: int, conn) -> None:  # noqa: ANN001 - a multiprocessing connection
    """The fake catalogue in its own process, as a real server would be (its data is not in the
    measured process's heap)."""
    with FakeCdseCatalogue(products(n)) as fake:
        conn.send(fake.url)
        conn.recv()  # until told to stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.scenes, child), daemon=True)
    server.start()
    url = parent.recv()
    print(f"{args.scenes} synthetic products served by the fake (own process) after "
          f"{time.perf_counter() - started:.1f} s")
    payload = parse_payload({
        "name": "Bench", "type": "Polygon",
        "coordinates": [[[9.8, 54.9], [10.0, 54.9], [10.0, 55.0], [9.8, 55.0], [9.8, 54.9]]],
        "start_time": "2022-01-01T00:00:00Z", "end_time": "2023-01-01T00:00:00Z",
        "scene_type": {"constellation": "sentinel2"}}, "bench-payload.json")
    settings = load_settings({"cdse_catalogue_url": url, "cdse_page_size": 1000}, env={})
    timings: dict[str, list[float]] = {"search": [], "raw": [], "pager": []}
    load_before = os.getloadavg()
    query = [cdse.build_filter(cdse.filters_of(payload), p) for p in query_polygons(payload.aoi)]
    try:
        for round_ in range(args.rounds + 1):  # round 0 warms the fake's filter cache
            urls: list[str] = []
            service = make_service(settings)
            service.session.hooks["response"].append(lambda r, *a, _urls=urls, **k: _urls.append(r.url))
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = cdse.search(payload, settings, page=0, limit=0, service=service)
            elapsed = time.perf_counter() - t
            scenes = len(result.scenes)
            del result.scenes[:]
            session = requests.Session()
            t = time.perf_counter()
            raw_rows = sum(len(session.get(u, timeout=60).json()["value"]) for u in urls)
            raw_elapsed = time.perf_counter() - t
            session.close()
            t = time.perf_counter()
            stream = cdse.RowStream(make_service(settings), query, 0, None, page_size=1000, max_skip=10000,
                                    stats=PagerStats())
            pager_rows = sum(1 for _ in stream)
            pager_elapsed = time.perf_counter() - t
            if round_:
                timings["search"].append(elapsed)
                timings["raw"].append(raw_elapsed)
                timings["pager"].append(pager_elapsed)
            assert pager_rows == args.scenes
            assert raw_rows == args.scenes == result.rows, (raw_rows, result.rows)
    finally:
        parent.send("stop")
        server.join(10)

    load_after = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()}; load {load_before[0]:.2f} before, {load_after[0]:.2f} after; median and spread "
          f"(min-max) of {args.rounds} rounds, each measuring the three in turn")
    raw = timings["raw"]
    rows = [("raw requests: GET + .json() of the same URLs (baseline)", "-", raw),
            ("ingester pager only (rows, no mapping)", "-", timings["pager"]),
            ("ingester search --limit 0 (scenes mapped)", str(scenes), timings["search"])]
    print(f"{'what':<56} {'requests':>8} {'rows':>7} {'scenes':>7} {'median s':>9} {'min-max s':>13} "
          f"{'x raw':>6} {'x raw min-max':>14}")
    for name, n_scenes, values in rows:
        ratios = [v / r for v, r in zip(values, raw, strict=True)]  # paired: measured in the same round
        print(f"{name:<56} {len(urls):>8} {args.scenes:>7} {n_scenes:>7} {statistics.median(values):>9.3f} "
              f"{min(values):>6.3f}-{max(values):<6.3f} {statistics.median(ratios):>6.2f} "
              f"{min(ratios):>6.2f}-{max(ratios):<6.2f}")
    search_ratio = statistics.median(v / r for v, r in zip(timings["search"], raw, strict=True))
    print(f"x raw: median of the per-round ratios; target: search <= 1.50 x raw -> "
          f"{'met' if search_ratio <= 1.5 else 'NOT met'}")

if __name__ == "__main__":
    main()
