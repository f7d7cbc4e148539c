"""`ingester remove --scene` (chains re-linked as the fail cascade does, refused while a run holds the
lock) and what `ingester aoi` says about scenes already in the AOI (issue 12 item 1)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ingester.store import Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles, write_s2_scenes

W = "tests.fakes.workers"
DB = "outputs/ingester.db"


def aoi(cli, *args, worker: str = "succeed"):
    return cli("aoi", *args, "--workers", "1", "--scene-worker", f"{W}:{worker}", "--tile-worker", f"{W}:succeed")


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


def test_a_failed_scene_is_not_skipped_silently_and_comes_back_after_remove(cli, payload, tmp_path, monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    ids = [f["properties"]["source_id"] for f in json.loads(scenes.read_text())["features"]]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({ids[0]: ["fatal"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers", worker="scripted").exit_code == 4
    r = aoi(cli, payload, "--scenes", scenes, worker="scripted")
    assert r.exit_code == 4
    assert (f"skipped {ids[0]}: already in the AOI (scene 1, FAILED: `ingester retry --force --scene 1` after "
            "fixing the cause, or `ingester remove --scene 1` and ingest it again)") in r.stderr
    assert f"skipped {ids[1]}: already in the AOI (scene 2, DONE)" in r.stderr

    r = cli("remove", "--scene", "1", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["source_id"] == ids[0] and out["tiles"] == 1 and out["status"] == "FAILED"
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM scene WHERE source_id = ?", (ids[0],)) == 0
        assert st.one("SELECT count(*) FROM job_attempt WHERE kind = 'scene' AND job_id = 1") == 0
    script.write_text("{}")
    r = aoi(cli, payload, "--scenes", scenes, "--json", worker="scripted")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 1
    with Store(DB) as st:
        assert st.one("SELECT status FROM scene WHERE source_id = ?", (ids[0],)) == "DONE"


def test_removing_a_scene_of_a_chain_relinks_its_children_like_the_fail_cascade(cli, tmp_path, repo):
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))
    chain = s1_chain("DenmarkDemoS1", 3, 1)
    assert aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "t.json", chain), "--create-layers").exit_code == 0
    with Store(DB) as st:
        t = [r[0] for r in st.execute("SELECT t.id FROM tile t JOIN scene s ON s.id = t.scene_id ORDER BY s.date")]
        assert st.execute("SELECT prev, ref FROM tile WHERE id = ?", (t[2],)).fetchone() == (t[1], t[0])
        middle = st.one("SELECT scene_id FROM tile WHERE id = ?", (t[1],))
        first = st.one("SELECT scene_id FROM tile WHERE id = ?", (t[0],))
    r = cli("remove", "--scene", str(middle), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["relinked"] == [t[2]]
    with Store(DB) as st:
        assert st.execute("SELECT prev, ref FROM tile WHERE id = ?", (t[2],)).fetchone() == (t[0], t[0])
        assert st.one("SELECT count(*) FROM tile") == 2
    # the root: its child becomes the root of the chain
    r = cli("remove", "--scene", str(first))
    assert r.exit_code == 0, r.stderr
    assert "removed from DenmarkDemoS1 with its 1 tile(s); 1 tile(s) of other scenes re-linked" in r.stderr
    with Store(DB) as st:
        assert st.execute("SELECT prev, ref, status FROM tile").fetchall() == [(None, None, "DONE")]


def test_remove_is_refused_while_a_run_holds_the_lock_and_an_unknown_scene_is_exit_2(cli, payload, tmp_path):
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers").exit_code == 0
    with Store(DB) as st:
        st.execute("UPDATE aoi SET lock_run = 'other', lock_pid = 1, lock_host = ?, lock_started = 'x', "
                   "lock_heartbeat = ?", (os.uname().nodename, time.time()))
        before = st.counts()
    r = cli("remove", "--scene", "1")
    assert r.exit_code == 3 and "locked by another run" in r.stderr
    r = cli("remove", "--scene", "7")
    assert r.exit_code == 2 and "--scene 7: no scene with this id" in r.stderr
    with Store(DB) as st:
        assert st.counts() == before
    for command in ("remove", "refresh"):
        assert "--scene" in cli(command, "--help").stdout
