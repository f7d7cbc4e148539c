"""A MultiPolygon AOI of many parts: one catalogue query per part, run one after another (the
baseline, `INGESTER_CDSE_SEARCH_CONCURRENCY=1`, what every version before this one did) against side
by side (the default, 4: CDSE's connection quota), in the same run, on the same fake catalogue.

    python -m bench.multipolygon                       # 300 parts, 40 ms per answer, 5 rounds
    python -m bench.multipolygon --latency-ms 0        # loopback speed: only the fake's own work

The fake CDSE catalogue runs in its own process and waits `--latency-ms` before each answer: the
real service's round trip (300 sequential searches took 13 s in the sweep that found the problem,
about 43 ms each). Every round checks that both searches return the same scenes in the same order.
Printed: median and spread (min-max) of the rounds, and the speed-up of the median.
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

from shapely.geometry import box

from ingester.catalogue import cdse
from ingester.config import load_settings
from ingester.payload import parse_payload
from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product


def islands(parts: int) -> dict:
    """`parts` squares of 0.1° in rows of 20, 0.2° apart (an archipelago)."""
    return {"type": "MultiPolygon", "coordinates": [
        [[[x, y], [x + 0.1, y], [x + 0.1, y + 0.1], [x, y + 0.1], [x, y]]]
        for i in range(parts) for x, y in [(5 + 0.2 * (i % 20), 50 + 0.2 * (i // 20))]]}


def products(parts: int, per_part: int) -> list[dict]:
    t0 = datetime(2022, 1, 1, 10, 30, tzinfo=UTC)
    out = []
    for i in range(parts):
        x, y = 5 + 0.2 * (i % 20), 50 + 0.2 * (i // 20)
        for k in range(per_part):
            out.append(s2_product(sensing=t0 + timedelta(hours=i * per_part + k), tile=f"{i:03d}{k:02d}"[-5:],
                                  geometry=box(x + 0.02, y + 0.02, x + 0.08, y + 0.08), orbit=30000 + i))
    return out


def serve(parts: int, per_part: int, latency: float, conn) -> None:  # noqa: ANN001 - a multiprocessing pipe
    with FakeCdseCatalogue(products(parts, per_part)) as fake:
        fake.latency = latency
        conn.send(fake.url)
        conn.recv()


def search(url: str, payload, concurrency: int) -> tuple[float, list[str], int]:
    settings = load_settings({"cdse_catalogue_url": url, "cdse_search_concurrency": concurrency}, env={})
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cdse.search(payload, settings, page=0, limit=0)
    return time.perf_counter() - t, [s.source_id for s in result.scenes], result.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=300)
    parser.add_argument("--per-part", type=int, default=2, help="products over each part")
    parser.add_argument("--latency-ms", type=float, default=40.0, help="the fake's time per answer")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4, help="the measured setting (baseline: 1)")
    args = parser.parse_args(argv)

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.parts, args.per_part, args.latency_ms / 1000, child),
                                     daemon=True)
    server.start()
    url = parent.recv()
    payload = parse_payload({"name": "Bench", "type": "Feature", "geometry": islands(args.parts),
                             "start_time": "2022-01-01T00:00:00Z", "end_time": "2023-01-01T00:00:00Z",
                             "scene_type": {"constellation": "sentinel2"}}, "bench-payload.json")
    times: dict[int, list[float]] = {1: [], args.concurrency: []}
    try:
        search(url, payload, args.concurrency)  # warms the fake's filter cache
        for round_ in range(args.rounds):
            order = [1, args.concurrency] if round_ % 2 == 0 else [args.concurrency, 1]  # no fixed order
            found = {}
            for concurrency in order:
                seconds, scenes, requests = search(url, payload, concurrency)
                times[concurrency].append(seconds)
                found[concurrency] = (scenes, requests)
            assert found[1] == found[args.concurrency], "the two searches differ"
            assert len(found[1][0]) == args.parts * args.per_part
    finally:
        parent.send("stop")
        server.join(10)

    print(f"{args.parts}-part MultiPolygon, {args.per_part} products per part, fake catalogue answering in "
          f"{args.latency_ms:g} ms (own process); {args.rounds} rounds; machine: {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load {os.getloadavg()[0]:.2f}")
    print(f"{'queries':<34} {'requests':>8} {'scenes':>7} {'median s':>9} {'min-max s':>13} {'speed-up':>9}")
    base = statistics.median(times[1])
    for concurrency, label in ((1, "one after another (baseline)"), (args.concurrency, f"{args.concurrency} at once")):
        values = times[concurrency]
        median = statistics.median(values)
        print(f"{label:<34} {found[1][1]:>8} {len(found[1][0]):>7} {median:>9.2f} "
              f"{min(values):>6.2f}-{max(values):<6.2f} {base / median:>8.2f}×")
    print("results: identical scenes in the same order in every round")


if __name__ == "__main__":
    main()
