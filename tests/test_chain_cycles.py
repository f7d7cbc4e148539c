"""Cycles in tile chains (issue 15 item 10): refused when a tiles file is loaded (exit 2 naming the
cycle, nothing written), and a run that is left with tiles that can never be released says so and
does not exit 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingester.scenes import TileRef
from ingester.store import Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles

W = "tests.fakes.workers"
AOI = "DenmarkDemoS1"


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))


@pytest.fixture
def markers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(folder))
    return folder


def aoi(cli, *args):
    return cli("aoi", *args, "--create-layers", "--workers", "1", "--scene-worker", f"{W}:succeed",
               "--tile-worker", f"{W}:succeed")


def ref(scene, tile) -> TileRef:
    return TileRef(scene.date, scene.source_id, tile.source_id)


def test_two_tiles_that_are_each_others_previous_are_refused_naming_the_cycle(cli, payload, tmp_path, markers):
    a, b = s1_chain(AOI, 2, 1)
    a.tiles[0].previous, a.tiles[0].reference = ref(b, b.tiles[0]), ref(b, b.tiles[0])
    b.tiles[0].previous, b.tiles[0].reference = ref(a, a.tiles[0]), ref(a, a.tiles[0])
    r = aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", [a, b]))
    assert r.exit_code == 2, r.stderr
    assert "previous/reference links form a cycle" in r.stderr
    assert f"{a.source_id}/A44_IW1_8951 → (previous) {b.source_id}/A44_IW1_8951 → (previous) " \
           f"{a.source_id}/A44_IW1_8951" in r.stderr
    assert not Path("outputs").exists() and not list(markers.iterdir())


def test_a_tile_that_is_its_own_previous_is_refused(cli, payload, tmp_path):
    (a,) = s1_chain(AOI, 1, 2)
    a.tiles[1].previous = ref(a, a.tiles[1])
    r = aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", [a]))
    assert r.exit_code == 2, r.stderr
    assert f"{a.source_id}/A44_IW1_8979 → (previous) {a.source_id}/A44_IW1_8979" in r.stderr
    assert not Path("outputs").exists()


def test_a_previous_at_a_later_date_that_closes_a_cycle_through_the_reference_is_refused(cli, payload, tmp_path):
    first, second, third = s1_chain(AOI, 3, 1)
    second.tiles[0].previous = ref(third, third.tiles[0])  # later date; third's previous is second
    first.tiles[0].reference = ref(third, third.tiles[0])  # and the root references the last one
    r = aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", [first, second, third]))
    assert r.exit_code == 2, r.stderr
    assert "form a cycle" in r.stderr and "(previous)" in r.stderr
    assert not Path("outputs").exists()


def test_a_back_filled_previous_at_a_later_date_without_a_cycle_is_accepted(cli, payload, tmp_path, markers):
    first, second = s1_chain(AOI, 2, 1)
    first.tiles[0].previous, first.tiles[0].reference = ref(second, second.tiles[0]), ref(second, second.tiles[0])
    second.tiles[0].previous = second.tiles[0].reference = None  # the newer one is the root
    r = aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", [first, second]), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["tiles"]["done"] == 2


@pytest.mark.parametrize("command", ["run", "retry"])
def test_a_run_left_with_tiles_that_can_never_be_released_says_so_and_exits_4(cli, payload, tmp_path, markers,
                                                                               command):
    """A store that already holds a cycle (written by an older version, or edited by hand)."""
    chain = s1_chain(AOI, 3, 1)
    assert aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", chain[:1])).exit_code == 0
    assert aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "more.json", chain)).exit_code == 0
    with Store("outputs/ingester.db") as st:
        first, second, third = [r[0] for r in st.execute("SELECT id FROM tile ORDER BY id")]
        st.execute("UPDATE scene SET status = 'PENDING' WHERE id IN (SELECT scene_id FROM tile WHERE id IN (?, ?))",
                   (second, third))
        st.execute("UPDATE tile SET status = 'NEW', prev = ? WHERE id = ?", (third, second))
        st.execute("UPDATE tile SET status = 'NEW' WHERE id = ?", (third,))
    r = cli(command, AOI, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 4, r.stderr
    assert "2 tiles can never be released" in r.stderr, r.stderr
    assert f"tile {second} waits for tile {third}, which waits for tile {second}" in r.stderr
    assert f"ingester fail --force --tile {second}" in r.stderr
    r = cli(command, AOI, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed",
            "--json")
    assert r.exit_code == 4
    assert json.loads(r.stdout)["unfinished"]["tile_stuck"] == 2
    # the hint works: the failed tile leaves the cycle, the other one runs
    r = cli("fail", "--force", "--tile", str(second))
    assert r.exit_code == 0, r.stderr
    r = cli("run", AOI, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed",
            "--json")
    assert r.exit_code == 4 and "can never be released" not in r.stderr
    out = json.loads(r.stdout)
    assert out["unfinished"]["tile_stuck"] == 0 and out["unfinished"]["tile_failed"] == 1
    assert out["summary"]["tiles"]["done"] == 2


def test_a_new_tile_that_is_ready_but_was_never_released_runs_at_the_next_run(cli, payload, tmp_path, markers):
    chain = s1_chain(AOI, 2, 1)
    assert aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "tiles.json", chain)).exit_code == 0
    with Store("outputs/ingester.db") as st:  # as an interrupted cascade or a hand edit leaves it
        st.execute("UPDATE tile SET status = 'NEW' WHERE id = (SELECT max(id) FROM tile)")
    r = cli("run", AOI, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed",
            "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["tiles"]["done"] == 2
