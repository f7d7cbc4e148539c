"""Claims that scale: a claim walks an index of the ready jobs in claim order, so that its cost does
not grow with the jobs already finished nor with the jobs waiting (docs/workflow.md, "Leases and
locks"). Cost is counted in SQLite virtual-machine steps (a progress handler), not in seconds."""

from __future__ import annotations

import pytest

from ingester.config import Settings
from ingester.coordinator import Coordinator
from ingester.store import Store

NOW = "2026-01-01T00:00:00Z"
WKT = "POLYGON((0 0,1 0,1 1,0 1,0 0))"


def build(path, done_scenes: int, pending_scenes: int, pending_tiles: int) -> None:
    """An AOI whose first `done_scenes` scenes are DONE (5 DONE tiles each), then `pending_scenes`
    PENDING scenes, and `pending_tiles` PENDING tiles spread over the DONE scenes (written as a hand-made
    store would be: the tiles' claim key is filled by the store itself)."""
    with Store(path) as st, st.transaction():
        st.execute("INSERT INTO aoi (id, name, settings, created_at, updated_at) VALUES (1, 'Big', '{}', ?, ?)",
                   (NOW, NOW))
        n = done_scenes + pending_scenes
        st.conn.executemany(
            "INSERT INTO scene (id, aoi_id, source_id, date, status, data, tags, wkt, updated_at) "
            "VALUES (?,1,?,?,?,'{}','{}',?,?)",
            [(i + 1, f"S{i}", f"2020-01-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00.{i:07d}Z",
              "DONE" if i < done_scenes else "PENDING", WKT, NOW) for i in range(n)])
        tiles = [(i + 1, i // 5 + 1, f"T{i}", "DONE") for i in range(done_scenes * 5)]
        tiles += [(len(tiles) + j + 1, j % max(done_scenes, 1) + 1, f"P{j}", "PENDING") for j in range(pending_tiles)]
        st.conn.executemany("INSERT INTO tile (id, scene_id, aoi_id, source_id, status, data, updated_at) "
                            "VALUES (?,?,1,?,?,'{\"date\": \"2020-01-01T00:00:00Z\"}',?)",
                            [(*t, NOW) for t in tiles])


def claim_cost(path, limit: int = 8) -> tuple[int, list[tuple[str, int, int, int]]]:
    """(SQLite VM steps / 100, the jobs) of one claim of `limit` jobs by a coordinator."""
    with Store(path) as st:
        coordinator = Coordinator(st, "Big", Settings(providers="local", lease_seconds=300))
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        st.conn.set_progress_handler(count, 100)
        claimed = coordinator._claim(limit)
        st.conn.set_progress_handler(None, 0)
    return steps[0], claimed


@pytest.mark.parametrize("case", ["finished scenes", "waiting tiles"])
def test_a_claim_costs_the_same_at_20_times_the_jobs(tmp_path, case):
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    if case == "finished scenes":  # the scene claim must not walk past the scenes already DONE
        build(small, 500, 8, 0)
        build(large, 10_000, 8, 0)
    else:  # the tile claim must not sort every PENDING tile
        build(small, 200, 0, 500)
        build(large, 200, 0, 10_000)
    cost_small, claimed_small = claim_cost(small)
    cost_large, claimed_large = claim_cost(large)
    assert len(claimed_small) == len(claimed_large) == 8
    assert cost_large <= 1.5 * cost_small + 20, (cost_small, cost_large)


def test_claims_take_tiles_first_then_scenes_oldest_first(tmp_path):
    path = tmp_path / "order.db"
    build(path, 20, 6, 4)
    _cost, claimed = claim_cost(path)
    kinds = [kind for kind, *_ in claimed]
    assert kinds == ["tile"] * 4 + ["scene"] * 4
    with Store(path) as st:
        scene_dates = [st.one("SELECT date_key FROM scene WHERE id = ?", (job_id,)) for kind, job_id, *_ in claimed
                       if kind == "scene"]
        tile_dates = [st.one("SELECT s.date_key FROM tile t JOIN scene s ON s.id = t.scene_id WHERE t.id = ?",
                             (job_id,)) for kind, job_id, *_ in claimed if kind == "tile"]
        assert scene_dates == sorted(scene_dates) and tile_dates == sorted(tile_dates)
        first_left = st.one("SELECT min(date_key) FROM scene WHERE status = 'PENDING' AND lease_run IS NULL")
        assert first_left > scene_dates[-1]


def test_the_claim_queries_walk_their_partial_index_without_sorting(tmp_path):
    from ingester.store import CLAIM_SQL

    path = tmp_path / "plan.db"
    build(path, 50, 5, 20)
    with Store(path) as st:
        for kind, sql in CLAIM_SQL.items():
            plan = [r[3] for r in st.execute("EXPLAIN QUERY PLAN " + sql, (1, 0.0, 8))]
            assert plan == [f"SEARCH {kind} USING INDEX {kind}_claim (aoi_id=?)"], plan


class _Sink:
    """A stdout that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _listing_peak(path, *options: str) -> tuple[int, int]:
    """(peak bytes Python allocated, characters printed) while `ingester list tiles Big` runs."""
    import contextlib
    import tracemalloc

    from ingester.cli import app

    sink = _Sink()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
            app(["list", "tiles", "Big", "--db", str(path), *options], standalone_mode=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, sink.chars


@pytest.mark.parametrize("options", [(), ("--json",)])
def test_list_tiles_streams_its_rows_memory_does_not_grow_with_the_tiles(tmp_path, options):
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    build(small, 400, 0, 0)  # 2,000 tiles
    build(large, 8_000, 0, 0)  # 40,000 tiles
    _listing_peak(small, *options)  # (imports and caches paid once)
    peak_small, printed_small = _listing_peak(small, *options)
    peak_large, printed_large = _listing_peak(large, *options)
    assert printed_large > 15 * printed_small  # every row was printed
    assert peak_large < 2 * peak_small + 200_000, (peak_small, peak_large)
