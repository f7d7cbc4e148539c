"""Inserting an ingestion's tiles: the store's one prepared statement (`executemany`, what
`Store.insert_tiles` does) against sqlite-utils' `insert_all` (multi-row INSERTs built in Python), on the
same rows, in-memory, inside one transaction; and the import time of sqlite-utils.

    python -m bench.bulk_insert [--tiles 100000] [--runs 5]

Why the store does not use sqlite-utils for its bulk inserts: README, "Development".
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time

COLUMNS = ("id", "scene_id", "aoi_id", "source_id", "status", "retry_countdown", "data", "updated_at", "prev", "ref")
PER_SCENE = 5


def fresh(n_scenes: int) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE scene (id INTEGER PRIMARY KEY, date_key TEXT)")
    conn.execute("CREATE TABLE tile (id INTEGER PRIMARY KEY, scene_id INTEGER, aoi_id INTEGER, source_id TEXT, "
                 "status TEXT, retry_countdown INTEGER, data TEXT, updated_at TEXT, prev INTEGER, ref INTEGER, "
                 "date_key TEXT)")
    conn.execute("CREATE UNIQUE INDEX tile_key ON tile (scene_id, source_id)")
    conn.executemany("INSERT INTO scene VALUES (?, ?)",
                     [(i, f"2022-01-01T00:00:{i:08d}") for i in range(1, n_scenes + 1)])
    return conn


def tile_rows(n_tiles: int) -> list[tuple]:
    data = '{"swath": "IW1", "burst": 123456, "footprint": "POLYGON((9 54, 9.1 54, 9.1 54.1, 9 54.1, 9 54))"}'
    return [(i, (i - 1) // PER_SCENE + 1, 1, f"IW1_{i:08d}", "NEW", 3, data, "2026-01-01T00:00:00Z",
             i - PER_SCENE if i > PER_SCENE else None, (i - 1) % PER_SCENE + 1) for i in range(1, n_tiles + 1)]


def with_store_statement(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    conn.executemany("INSERT INTO tile (id, scene_id, aoi_id, source_id, status, retry_countdown, data, updated_at, "
                     "prev, ref, date_key) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                     "(SELECT date_key FROM scene WHERE id = ?2))", rows)


def with_sqlite_utils(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    import sqlite_utils

    keys = dict(conn.execute("SELECT id, date_key FROM scene"))
    sqlite_utils.Database(conn)["tile"].insert_all(  # type: ignore[union-attr]
        ({**dict(zip(COLUMNS, row, strict=True)), "date_key": keys[row[1]]} for row in rows), batch_size=500)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows = tile_rows(args.tiles)
    times: dict[str, list[float]] = {"store: executemany (baseline)": [], "sqlite-utils insert_all": []}
    for _ in range(args.runs):
        for name, insert in (("store: executemany (baseline)", with_store_statement),
                             ("sqlite-utils insert_all", with_sqlite_utils)):
            conn = fresh(args.tiles // PER_SCENE + 1)
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            insert(conn, rows)
            conn.execute("COMMIT")
            times[name].append(time.perf_counter() - t0)
            assert conn.execute("SELECT count(*) FROM tile").fetchone()[0] == args.tiles
            conn.close()
    imports = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sqlite_utils"], check=True)
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        imports.append((t1 - t0) - (time.perf_counter() - t1))
    base = statistics.median(times["store: executemany (baseline)"])
    print(f"{args.tiles} tiles, {args.runs} runs each (interleaved): seconds median (min-max)")
    for name, values in times.items():
        print(f"{name:<32} {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})  "
              f"{statistics.median(values) / base:.2f}x")
    print(f"{'import sqlite_utils (extra s)':<32} {statistics.median(imports):.3f} "
          f"({min(imports):.3f}-{max(imports):.3f})")


if __name__ == "__main__":
    main()
