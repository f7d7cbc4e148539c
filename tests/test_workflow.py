"""The workflow state machine on a real SQLite file: transition table, release rule, fail cascade,
retry countdown and job outcomes (docs/workflow.md; docs/original.md, "Known defects")."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.coordinator import release_lock
from ingester.ingest import commit, prepare
from ingester.jobs import JobResult
from ingester.payload import load_payload
from ingester.store import STATUSES, Store
from ingester.workflow import (
    DONE,
    FAILED,
    NEW,
    PENDING,
    RETRY,
    TRANSITIONS,
    Policy,
    TransitionError,
    aoi_status,
    apply_outcome,
    force_retry,
    force_retry_aoi,
    rebuild,
    set_status,
    summary,
)
from tests.fakes.aoi_data import s1_chain, write_s1_tiles

AOI = "DenmarkDemoS1"


def make_store(tmp_path: Path, repo: Path, scenes, retry_count: int = 0) -> Store:
    payload = dataclasses.replace(load_payload(repo / "payloads" / "denmark-s1.json"), retry_count=retry_count,
                                  layers={})
    store = Store(tmp_path / "ingester.db")
    tiles_file = write_s1_tiles(tmp_path / "tiles.json", scenes)
    commit(store, prepare(store, payload, Settings(), tiles_file=str(tiles_file)), "setup")
    release_lock(store, AOI, "setup")
    return store


def ids(store: Store) -> dict[tuple[int, int], int]:
    """(date index, burst index) → tile id."""
    rows = store.execute("SELECT t.id FROM tile t JOIN scene s ON s.id = t.scene_id ORDER BY s.date, t.id").fetchall()
    per_scene = store.one("SELECT count(*) FROM tile WHERE scene_id = (SELECT min(id) FROM scene)")
    return {(i // per_scene, i % per_scene): r[0] for i, r in enumerate(rows)}


def scene_ids(store: Store) -> list[int]:
    return [r[0] for r in store.execute("SELECT id FROM scene ORDER BY date")]


def status(store: Store, kind: str, job_id: int) -> str:
    return store.one(f"SELECT status FROM {kind} WHERE id = ?", (job_id,))


def links(store: Store, tile_id: int) -> tuple[int | None, int | None]:
    return tuple(store.execute("SELECT prev, ref FROM tile WHERE id = ?", (tile_id,)).fetchone())


def force(store: Store, kind: str, job_id: int, value: str) -> None:
    store.execute(f"UPDATE {kind} SET status = ? WHERE id = ?", (value, job_id))


@pytest.fixture
def chain(tmp_path, repo):
    """3 dates × 2 bursts: tile (d, k) has previous (d-1, k) and reference (0, k)."""
    return make_store(tmp_path, repo, s1_chain(AOI, 3, 2))


def test_ingestion_creates_pending_scenes_new_tiles_and_links(chain):
    t = ids(chain)
    assert [status(chain, "scene", s) for s in scene_ids(chain)] == [PENDING] * 3
    assert {status(chain, "tile", i) for i in t.values()} == {NEW}
    assert links(chain, t[0, 0]) == (None, None)
    assert links(chain, t[1, 1]) == (t[0, 1], t[0, 1])
    assert links(chain, t[2, 1]) == (t[1, 1], t[0, 1])


EXPECTED = {
    (PENDING, DONE): DONE, (PENDING, RETRY): RETRY, (PENDING, FAILED): FAILED,
    (RETRY, DONE): DONE, (RETRY, PENDING): PENDING, (RETRY, FAILED): FAILED,
}  # fmt: skip


@pytest.mark.parametrize("current,requested", list(itertools.product(STATUSES, STATUSES)))
def test_tile_transition_table_case_by_case(chain, current, requested):
    s0 = scene_ids(chain)[0]
    set_status(chain, "scene", s0, DONE)
    tile = ids(chain)[0, 0]
    force(chain, "tile", tile, current)
    if current == requested:
        assert set_status(chain, "tile", tile, requested) is None
        assert status(chain, "tile", tile) == current
    elif (current, requested) in EXPECTED:
        assert set_status(chain, "tile", tile, requested, "msg") == EXPECTED[current, requested]
        assert status(chain, "tile", tile) == EXPECTED[current, requested]
    else:
        with pytest.raises(TransitionError, match=f"cannot update tile {tile} status {current}->{requested}"):
            set_status(chain, "tile", tile, requested)
        assert status(chain, "tile", tile) == current


@pytest.mark.parametrize("current,requested", list(itertools.product(STATUSES, STATUSES)))
def test_scene_transition_table_case_by_case(chain, current, requested):
    scene = scene_ids(chain)[0]
    force(chain, "scene", scene, current)
    if current == requested:
        assert set_status(chain, "scene", scene, requested) is None
    elif (current, requested) in TRANSITIONS:
        assert set_status(chain, "scene", scene, requested, "msg") == EXPECTED[current, requested]
    else:
        with pytest.raises(TransitionError, match=f"cannot update scene {scene} status"):
            set_status(chain, "scene", scene, requested)
        assert status(chain, "scene", scene) == current


def test_forced_changes_accept_any_current_status(chain):
    scene = scene_ids(chain)[0]
    set_status(chain, "scene", scene, DONE)
    tile = ids(chain)[0, 0]
    set_status(chain, "tile", tile, DONE)
    assert set_status(chain, "tile", tile, RETRY, "by hand", force=True) == RETRY
    assert set_status(chain, "tile", tile, NEW, force=True) == NEW
    assert set_status(chain, "tile", tile, PENDING, force=True) == PENDING


def test_manual_retry_of_a_tile_needs_its_scene_done(chain):
    tile = ids(chain)[0, 0]
    force(chain, "tile", tile, RETRY)
    with pytest.raises(TransitionError, match="cannot retry tile .* with scene status PENDING"):
        set_status(chain, "tile", tile, PENDING)


def test_tiles_are_released_along_the_chain_in_date_order(chain):
    s0, s1, s2 = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s1, DONE)  # the later scene first: its tiles wait for their previous
    assert status(chain, "tile", t[1, 0]) == NEW
    set_status(chain, "scene", s0, DONE)
    assert [status(chain, "tile", t[0, k]) for k in (0, 1)] == [PENDING, PENDING]
    assert status(chain, "tile", t[1, 0]) == NEW
    set_status(chain, "tile", t[0, 0], DONE)
    assert status(chain, "tile", t[1, 0]) == PENDING  # previous DONE and scene DONE
    assert status(chain, "tile", t[1, 1]) == NEW  # its previous (0, 1) is still PENDING
    set_status(chain, "tile", t[1, 0], DONE)
    assert status(chain, "tile", t[2, 0]) == NEW  # scene 2 not DONE yet
    set_status(chain, "scene", s2, DONE)
    assert status(chain, "tile", t[2, 0]) == PENDING


def test_a_tile_waits_for_its_reference_too(chain):
    s0, s1, _ = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s0, DONE)
    set_status(chain, "scene", s1, DONE)
    chain.execute("UPDATE tile SET prev = NULL WHERE id = ?", (t[1, 0],))  # previous gone, reference PENDING
    set_status(chain, "tile", t[0, 1], DONE)
    from ingester.workflow import release

    assert release(chain, [t[1, 0]]) == []
    set_status(chain, "tile", t[0, 0], DONE)
    assert status(chain, "tile", t[1, 0]) == PENDING


def test_failing_a_root_makes_its_first_child_the_root_of_the_chain(chain):
    s0, s1, s2 = scene_ids(chain)
    t = ids(chain)
    for s in (s0, s1, s2):
        set_status(chain, "scene", s, DONE)
    set_status(chain, "tile", t[0, 0], FAILED, "corrupt burst")
    assert status(chain, "tile", t[0, 0]) == FAILED
    assert links(chain, t[0, 0]) == (None, None)
    assert links(chain, t[1, 0]) == (None, None)  # new root
    assert links(chain, t[2, 0]) == (t[1, 0], t[1, 0])  # references the new root
    assert status(chain, "tile", t[1, 0]) == PENDING  # released: a root whose scene is DONE
    assert links(chain, t[2, 1]) == (t[1, 1], t[0, 1])  # the other burst's chain is untouched
    assert summary(chain, chain.require_aoi(AOI).id)["root_tiles"] == 2


def test_failing_a_root_with_several_children_relinks_all_of_them_consistently(tmp_path, repo):
    scenes = s1_chain(AOI, 3, 1)
    scenes[2].tiles[0].previous = scenes[0].tiles[0].ref  # back-filled: two children of the root
    store = make_store(tmp_path, repo, scenes)
    t = ids(store)
    set_status(store, "scene", scene_ids(store)[0], DONE)
    set_status(store, "tile", t[0, 0], FAILED, "bad")
    assert links(store, t[1, 0]) == (None, None)
    assert links(store, t[2, 0]) == (t[1, 0], t[1, 0])


def test_failing_a_middle_tile_hands_its_children_to_its_previous(chain):
    s0, s1, s2 = scene_ids(chain)
    t = ids(chain)
    for s in (s0, s1, s2):
        set_status(chain, "scene", s, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    set_status(chain, "tile", t[1, 0], FAILED, "bad")
    assert links(chain, t[2, 0]) == (t[0, 0], t[0, 0])
    assert status(chain, "tile", t[2, 0]) == PENDING  # its new previous is DONE


def test_relinked_children_are_not_released_before_their_new_previous_is_done(chain):
    s0, s1, s2 = scene_ids(chain)
    t = ids(chain)
    for s in (s0, s1, s2):
        set_status(chain, "scene", s, DONE)
    assert status(chain, "tile", t[0, 0]) == PENDING
    set_status(chain, "tile", t[1, 0], FAILED, "bad", force=True)  # NEW middle tile, previous still PENDING
    assert links(chain, t[2, 0]) == (t[0, 0], t[0, 0])
    assert status(chain, "tile", t[2, 0]) == NEW
    set_status(chain, "tile", t[0, 0], DONE)
    assert status(chain, "tile", t[2, 0]) == PENDING


def test_failing_a_tile_whose_child_already_ran_is_refused_without_force(chain):
    s0, s1, _ = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s0, DONE)
    set_status(chain, "scene", s1, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    force(chain, "tile", t[0, 0], RETRY)
    with pytest.raises(TransitionError, match=f"child tile {t[1, 0]} status PENDING"):
        set_status(chain, "tile", t[0, 0], FAILED)
    assert status(chain, "tile", t[0, 0]) == RETRY


def test_failing_a_scene_fails_its_tiles_with_the_cascade(chain):
    s0, s1, _ = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s1, FAILED, "product offline for good")
    assert status(chain, "scene", s1) == FAILED
    assert {status(chain, "tile", t[1, k]) for k in (0, 1)} == {FAILED}
    assert links(chain, t[2, 0]) == (t[0, 0], t[0, 0])
    assert "product offline for good" in chain.one("SELECT message FROM tile WHERE id = ?", (t[1, 0],))


def test_failing_a_scene_whose_tiles_started_is_refused(chain):
    s0 = scene_ids(chain)[0]
    set_status(chain, "scene", s0, DONE)
    force(chain, "scene", s0, RETRY)
    with pytest.raises(TransitionError, match="tile .* status PENDING"):
        set_status(chain, "scene", s0, FAILED)


def test_retry_countdown_one_rule_automatic_reruns_then_retry(tmp_path, repo):
    store = make_store(tmp_path, repo, s1_chain(AOI, 2, 1), retry_count=2)
    policy = Policy(retry_count=2, retry_backoff=0)
    s0 = scene_ids(store)[0]
    countdown = lambda: store.one("SELECT retry_countdown FROM scene WHERE id = ?", (s0,))  # noqa: E731
    assert countdown() == 2
    with store.transaction():
        assert apply_outcome(store, "scene", s0, JobResult("error", "first"), policy) == PENDING
    assert countdown() == 1
    with store.transaction():
        assert apply_outcome(store, "scene", s0, JobResult("error", "second"), policy) == PENDING
    with store.transaction():
        assert apply_outcome(store, "scene", s0, JobResult("error", "third"), policy) == RETRY
    assert countdown() == 0
    assert store.one("SELECT message FROM scene WHERE id = ?", (s0,)) == "third"
    assert aoi_status(store, store.require_aoi(AOI).id) == RETRY
    set_status(store, "scene", s0, PENDING, policy=policy)  # manual retry: a fresh budget, never negative
    assert countdown() == 2
    with store.transaction():
        assert apply_outcome(store, "scene", s0, JobResult("done"), policy) == DONE
    assert store.one("SELECT message FROM scene WHERE id = ?", (s0,)) == ""  # cleared on DONE
    t = ids(store)
    assert store.one("SELECT retry_countdown FROM tile WHERE id = ?", (t[0, 0],)) == 2  # release keeps it


def test_automatic_reruns_wait_for_a_growing_backoff(tmp_path, repo):
    store = make_store(tmp_path, repo, s1_chain(AOI, 1, 1), retry_count=3)
    policy = Policy(retry_count=3, retry_backoff=10)
    s0 = scene_ids(store)[0]
    waits = []
    for _ in range(3):
        with store.transaction():
            apply_outcome(store, "scene", s0, JobResult("error", "x"), policy)
        waits.append(store.one("SELECT not_before FROM scene WHERE id = ?", (s0,)))
    assert waits[1] - waits[0] > 9 and waits[2] - waits[1] > 19  # 10 s, 20 s, 40 s after each failure


def test_outcomes_map_to_statuses(tmp_path, repo):
    scenes = s1_chain(AOI, 4, 1)
    scenes[3].is_retriable = False
    store = make_store(tmp_path, repo, scenes, retry_count=0)
    policy = Policy(retry_count=0, retry_backoff=0, max_temporary_retries=2)
    a, b, c, d = scene_ids(store)
    with store.transaction():
        assert apply_outcome(store, "scene", a, JobResult("fatal", "FATAL ERROR: x"), policy) == FAILED
        assert apply_outcome(store, "scene", b, JobResult("error", "e"), policy) == RETRY
        assert apply_outcome(store, "scene", d, JobResult("error", "e"), policy) == FAILED  # not retriable
        assert apply_outcome(store, "scene", c, JobResult("temporary", "503"), policy) == PENDING
        assert apply_outcome(store, "scene", c, JobResult("temporary", "503"), policy) == PENDING
        assert apply_outcome(store, "scene", c, JobResult("temporary", "503"), policy) == RETRY  # bounded
    assert "temporary once more after 2 re-queues" in store.one("SELECT message FROM scene WHERE id = ?", (c,))


def test_a_result_for_a_job_that_is_not_pending_is_refused(chain):
    s0 = scene_ids(chain)[0]
    set_status(chain, "scene", s0, DONE)
    with pytest.raises(TransitionError, match="finished while DONE"), chain.transaction():
        apply_outcome(chain, "scene", s0, JobResult("done"), Policy())


def test_aoi_status_follows_the_reference_priority(chain):
    aoi_id = chain.require_aoi(AOI).id
    s0, s1, s2 = scene_ids(chain)
    assert aoi_status(chain, aoi_id) == PENDING
    for s in (s0, s1, s2):
        set_status(chain, "scene", s, DONE)
    assert aoi_status(chain, aoi_id) == PENDING  # the tiles of DONE scenes
    force(chain, "scene", s1, FAILED)
    assert aoi_status(chain, aoi_id) == PENDING
    chain.execute("UPDATE tile SET status = 'DONE'")
    assert aoi_status(chain, aoi_id) == DONE


# --- forced retry: FAILED jobs come back ------------------------------------------------------------

def test_forced_retry_of_a_failed_middle_tile_restores_its_previous_and_reference(chain):
    t = ids(chain)
    s0, s1, _ = scene_ids(chain)
    set_status(chain, "scene", s0, DONE)
    set_status(chain, "scene", s1, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    set_status(chain, "tile", t[1, 0], FAILED, "bad burst")
    assert links(chain, t[1, 0]) == (None, t[0, 0])
    policy = Policy(retry_count=2)
    with chain.transaction():
        assert force_retry(chain, "tile", t[1, 0], policy) == [t[1, 0]]
    assert links(chain, t[1, 0]) == (t[0, 0], t[0, 0])
    assert chain.execute("SELECT status, retry_countdown FROM tile WHERE id = ?", (t[1, 0],)).fetchone() == (
        PENDING, 2)  # released at once: its scene and previous are DONE; a fresh budget
    assert links(chain, t[2, 0]) == (t[0, 0], t[0, 0])  # documented limit: the re-linked child keeps its link


def test_forced_retry_of_a_failed_scene_brings_back_its_tiles_as_new(chain):
    t = ids(chain)
    s0 = scene_ids(chain)[0]
    set_status(chain, "scene", s0, FAILED, "corrupt product")
    assert {status(chain, "tile", t[0, k]) for k in (0, 1)} == {FAILED}
    assert links(chain, t[1, 0]) == (None, None)  # the cascade made it the root
    with chain.transaction():
        revived = force_retry(chain, "scene", s0, Policy(retry_count=1))
    assert sorted(revived) == sorted([s0, t[0, 0], t[0, 1]])
    assert status(chain, "scene", s0) == PENDING
    assert {status(chain, "tile", t[0, k]) for k in (0, 1)} == {NEW}
    assert links(chain, t[0, 0]) == (None, None)  # a root again
    set_status(chain, "scene", s0, DONE)
    assert {status(chain, "tile", t[0, k]) for k in (0, 1)} == {PENDING}


def test_forced_retry_of_a_tile_of_a_failed_scene_or_of_a_done_job_is_refused(chain):
    t = ids(chain)
    s0 = scene_ids(chain)[0]
    set_status(chain, "scene", s0, FAILED)
    with pytest.raises(TransitionError, match=f"retry --force --scene {s0}"):
        force_retry(chain, "tile", t[0, 0], Policy())
    with chain.transaction():
        force_retry(chain, "scene", s0, Policy())
    set_status(chain, "scene", s0, DONE)
    with pytest.raises(TransitionError, match="status is DONE, not FAILED or RETRY"):
        force_retry(chain, "scene", s0, Policy())


def test_forced_retry_of_the_whole_aoi_revives_chains_oldest_first(chain):
    t = ids(chain)
    s0, s1, s2 = scene_ids(chain)
    for s in (s0, s1, s2):
        set_status(chain, "scene", s, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    set_status(chain, "tile", t[1, 0], FAILED)
    set_status(chain, "tile", t[2, 0], FAILED)
    with chain.transaction():
        assert force_retry_aoi(chain, 1, Policy()) == 2
    assert links(chain, t[1, 0]) == (t[0, 0], t[0, 0]) and status(chain, "tile", t[1, 0]) == PENDING
    assert links(chain, t[2, 0])[1] == t[0, 0] and status(chain, "tile", t[2, 0]) in (NEW, PENDING)


# --- dates are ordered as dates, not as text -----------------------------------------------------------

def test_scenes_are_ordered_by_date_whatever_the_length_of_their_fraction(tmp_path):
    with Store(tmp_path / "x.db") as st:
        st.execute("INSERT INTO aoi (name, created_at, updated_at) VALUES ('A', '', '')")
        # as text, '…24.37Z' < '…24.3Z' < '…24Z' (wrong); as dates 24 < 24.3 < 24.37
        for sid, date in (("b", "2022-01-11T10:20:24.37Z"), ("a", "2022-01-11T10:20:24.3Z"),
                          ("c", "2022-01-11T10:20:24Z"), ("d", "2022-01-11T10:20:24.300001Z")):
            st.execute("INSERT INTO scene (aoi_id, source_id, date, status, data, tags, wkt, updated_at) "
                       "VALUES (1, ?, ?, 'PENDING', '{}', '{}', '', '')", (sid, date))
        assert [r.source_id for r in st.scene_rows(1)] == ["c", "a", "d", "b"]
        assert [r.date for r in st.scene_rows(1)][1] == "2022-01-11T10:20:24.3Z"  # written format unchanged
        for name, time_ in (("r1", "2022-01-11T10:20:24.37Z"), ("r2", "2022-01-11T10:20:24.3Z")):
            st.execute("INSERT INTO record (name, time, tags, match_tags, created_at) VALUES (?, ?, '{}', '{}', '')",
                       (name, time_))
        assert [r.name for r in st.records()] == ["r2", "r1"]


def test_rebuild_sets_a_done_tile_back_and_its_pending_children_wait_for_it_again(chain):
    """`ingester verify`: a DONE tile whose files are gone is rebuilt; a child released meanwhile waits."""
    s0, s1, _ = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s0, DONE)
    set_status(chain, "scene", s1, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    assert status(chain, "tile", t[1, 0]) == PENDING
    policy = Policy(retry_count=2)
    with chain.transaction():
        assert rebuild(chain, "tile", t[0, 0], policy, "ingester verify: output missing") == PENDING
    assert status(chain, "tile", t[0, 0]) == PENDING  # scene DONE, root tile: ready at once
    assert status(chain, "tile", t[1, 0]) == NEW  # waits for its previous to be rebuilt
    assert chain.one("SELECT retry_countdown FROM tile WHERE id = ?", (t[0, 0],)) == 2
    with chain.transaction():
        assert rebuild(chain, "scene", s0, policy, "ingester verify: product missing") == PENDING
    assert status(chain, "scene", s0) == PENDING and status(chain, "tile", t[0, 1]) == PENDING
    with pytest.raises(TransitionError, match="not DONE"), chain.transaction():
        rebuild(chain, "tile", t[1, 1], policy, "x")


def test_verify_setting_a_tile_back_writes_it_and_the_children_that_wait_again_into_their_history(chain):
    from ingester.integrity import Problem, set_back

    s0, s1, _ = scene_ids(chain)
    t = ids(chain)
    set_status(chain, "scene", s0, DONE)
    set_status(chain, "scene", s1, DONE)
    set_status(chain, "tile", t[0, 0], DONE)
    assert status(chain, "tile", t[1, 0]) == PENDING  # released: its previous is DONE
    gone = Problem("dataset", "file:///x/B01.tif", "missing", "not found", "S", "A44_IW1_8979", s0, t[0, 0])
    assert set_back(chain, AOI, [gone], Settings()) == {"scenes": [], "tiles": ["A44_IW1_8979"]}
    own = chain.attempts("tile", t[0, 0])
    assert [(a["outcome"], a["status"]) for a in own] == [("manual", "PENDING")]
    assert own[0]["message"].startswith("ingester verify: file:///x/B01.tif: missing")
    child = chain.attempts("tile", t[1, 0])
    assert [(a["outcome"], a["status"]) for a in child] == [("manual", "NEW")]  # waits for its previous again
    assert "ingester verify" in child[0]["message"]
    assert chain.attempts("tile", t[0, 1]) == []  # untouched
