"""Deferred jobs (issue 12 item 1): a job waiting for something outside keeps its place with a time
to try again, the run does not wait for it beyond --max-wait and ends with exit 5; deferrals never
consume the retry budget and are bounded by INGESTER_DEFER_DEADLINE."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ingester.jobs import JobResult
from ingester.store import Store
from ingester.workflow import PENDING, RETRY, Policy, apply_outcome
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import write_s2_scenes

W = "tests.fakes.workers"
S2 = "DenmarkDemoS2"
DB = "outputs/ingester.db"


@pytest.fixture
def markers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(folder))
    return folder


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


def runs(folder: Path, outcome: str | None = None) -> int:
    return sum(1 for p in folder.iterdir() if outcome is None or json.loads(p.read_text())["outcome"] == outcome)


def aoi(cli, *args, scene: str = "succeed", tile: str = "succeed"):
    return cli("aoi", *args, "--workers", "1", "--scene-worker", f"{W}:{scene}", "--tile-worker", f"{W}:{tile}")


def test_a_deferred_job_keeps_its_place_and_the_run_ends_with_exit_5(cli, payload, tmp_path, markers, monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    doc = json.loads(scenes.read_text())
    first = doc["features"][0]["properties"]["source_id"]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({first: ["deferred"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    before = time.time()
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", scene="scripted")
    assert r.exit_code == 5, r.stderr
    out = json.loads(r.stdout)
    assert out["deferred"]["scenes"] == 1 and out["deferred"]["tiles"] == 0
    assert out["summary"]["scenes"]["done"] == 1 and out["unfinished"] == {
        "scene_retry": 0, "scene_failed": 0, "tile_retry": 0, "tile_failed": 0, "tile_stuck": 0}
    assert "1 job(s) deferred until" in r.stderr and "run again" in r.stderr
    with Store(DB) as st:
        row = st.execute("SELECT status, not_before, retry_countdown, temporary_count, deferred_since, message "
                         "FROM scene WHERE source_id = ?", (first,)).fetchone()
        assert row[0] == PENDING and row[1] > before + 3000  # its place, with a time to try again
        assert row[2] == 1 and row[3] == 0  # nothing consumed
        assert row[4] is not None and "deferred for scene" in row[5]
        assert [a["outcome"] for a in st.attempts("scene", 1)] == ["deferred"]

    status = cli("status", S2)
    assert status.exit_code == 0
    assert "Deferred: 1 job(s), next try" in status.stdout and first in status.stdout
    js = json.loads(cli("status", S2, "--json").stdout)
    assert js["deferred"]["scenes"] == 1 and js["deferred"]["jobs"][0]["source_id"] == first
    assert js["deferred"]["jobs"][0]["next_try"] == js["deferred"]["next_try"]

    # not due yet: `run` does not touch it and says so again
    executed = runs(markers)
    r = cli("run", S2, "--workers", "1", "--scene-worker", f"{W}:scripted", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 5, r.stderr
    assert runs(markers) == executed
    # once due, `run` picks it up
    with Store(DB) as st:
        st.execute("UPDATE scene SET not_before = 0 WHERE source_id = ?", (first,))
    script.write_text(json.dumps({}))
    r = cli("run", S2, "--workers", "1", "--scene-worker", f"{W}:scripted", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM scene WHERE status = 'DONE'") == 2
        assert st.one("SELECT deferred_since FROM scene WHERE source_id = ?", (first,)) is None
        assert st.one("SELECT count(*) FROM tile WHERE status = 'DONE'") == 2


def test_a_backoff_longer_than_max_wait_ends_the_run_with_exit_5_instead_of_sleeping(payload, tmp_path):
    """A temporary failure backs off 1 hour: the run ends at once (exit 5) instead of holding the lock."""
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    env = subprocess_env({"INGESTER_RETRY_BACKOFF": "3600", "INGESTER_MAX_WAIT": "1"})
    cmd = [PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes), "--create-layers", "--workers",
           "1", "--scene-worker", f"{W}:temporary", "--tile-worker", f"{W}:succeed"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "deferred until" in done.stderr
    with Store(tmp_path / DB) as st:
        assert st.one("SELECT status FROM scene") == PENDING
        assert st.one("SELECT temporary_count FROM scene") == 1
        assert st.one("SELECT lock_run FROM aoi") is None


def test_max_wait_option_waits_for_a_short_backoff(cli, payload, tmp_path, markers, monkeypatch):
    """A backoff within --max-wait is waited for in the same run (exit 4 after the budget, not 5)."""
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0.2")
    monkeypatch.setenv("INGESTER_MAX_TEMPORARY_RETRIES", "1")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--max-wait", "30", scene="temporary")
    assert r.exit_code == 4, r.stderr
    assert runs(markers, "temporary") == 4  # 1 + 1 temporary re-queue, then one automatic re-run of 2
    r = cli("aoi", "--help")
    assert "--max-wait" in r.stdout


def test_exit_4_wins_over_exit_5_and_both_are_reported(cli, payload, tmp_path, markers, monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    ids = [f["properties"]["source_id"] for f in json.loads(scenes.read_text())["features"]]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({ids[0]: ["deferred"], ids[1]: ["fatal"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", scene="scripted")
    assert r.exit_code == 4, r.stderr
    assert json.loads(r.stdout)["deferred"]["scenes"] == 1
    assert "deferred until" in r.stderr and "some jobs did not finish" in r.stderr


def _one_scene_store(tmp_path: Path, repo: Path) -> tuple[Store, int]:
    import dataclasses

    from ingester.config import Settings
    from ingester.coordinator import release_lock
    from ingester.ingest import commit, prepare
    from ingester.payload import load_payload

    payload = dataclasses.replace(load_payload(repo / "payloads" / "denmark-s2.json"), retry_count=2, layers={})
    store = Store(tmp_path / "w.db")
    scenes = write_s2_scenes(tmp_path / "one.json", 1)
    commit(store, prepare(store, payload, Settings(), scenes_file=str(scenes)), "setup")
    release_lock(store, payload.name, "setup")
    return store, store.one("SELECT id FROM scene")


def test_deferrals_never_consume_the_retry_budget_and_end_at_the_deadline(tmp_path, repo):
    store, sid = _one_scene_store(tmp_path, repo)
    policy = Policy(retry_count=2, retry_backoff=0, max_temporary_retries=1, defer_deadline=3600)
    with store:
        for _ in range(5):
            with store.transaction():
                status = apply_outcome(store, "scene", sid, JobResult.deferred("offline", time.time() + 60), policy)
            assert status == PENDING
        row = store.execute("SELECT retry_countdown, temporary_count, deferred_since FROM scene").fetchone()
        assert row[0] == 2 and row[1] == 0 and row[2] is not None
        # past the deadline (counted from the first deferral), the next deferral is an error
        store.execute("UPDATE scene SET deferred_since = ? WHERE id = ?", (time.time() - 3700, sid))
        with store.transaction():
            status = apply_outcome(store, "scene", sid, JobResult.deferred("offline", time.time() + 60), policy)
        assert status == PENDING  # the error takes the automatic re-run of the retry budget
        message = store.one("SELECT message FROM scene")
        assert "still waiting after 1 h" in message and "INGESTER_DEFER_DEADLINE" in message
        assert store.one("SELECT retry_countdown FROM scene") == 1
        assert store.one("SELECT deferred_since FROM scene") is None
        # any other outcome ends the deferral
        with store.transaction():
            apply_outcome(store, "scene", sid, JobResult.deferred("offline", time.time() + 60), policy)
            apply_outcome(store, "scene", sid, JobResult("temporary", "503"), policy)
        assert store.one("SELECT deferred_since FROM scene") is None
        with store.transaction():
            apply_outcome(store, "scene", sid, JobResult.deferred("offline", time.time() + 60), policy)
            assert apply_outcome(store, "scene", sid, JobResult("error", "boom"), policy) == PENDING
            assert apply_outcome(store, "scene", sid, JobResult("error", "boom"), policy) == RETRY
        assert store.one("SELECT deferred_since FROM scene") is None


@pytest.fixture
def cdse_offline(tmp_path, testdata, monkeypatch):
    """A catalogue and a zipper sharing two S2 products; the second is offline (long-term archive)."""
    from datetime import UTC, datetime, timedelta

    from shapely.geometry import box

    from tests.fakes.cdse_download import FakeCdse
    from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product
    from tests.fakes.products import S2_ID, checksums, zip_safe

    t = datetime(2022, 1, 1, 10, 34, 31, tzinfo=UTC)
    over = box(9.0, 54.1, 10.6, 55.9)
    with FakeCdseCatalogue() as catalogue, FakeCdse("127.0.0.1") as zipper:
        products = [s2_product(sensing=t + timedelta(days=i), geometry=over, cloud=10.0, online=i == 0)
                    for i in range(2)]
        for p in products:
            data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=p["Name"])
            p.update({"ContentLength": len(data), "Checksum": checksums(data)})
            zipper.add_product(data, p["Id"])
        zipper.offline.add(products[1]["Id"])
        catalogue.add(products)
        for key, value in {"INGESTER_CDSE_CATALOGUE_URL": catalogue.url, "INGESTER_CDSE_DOWNLOAD_URL": zipper.odata,
                           "INGESTER_CDSE_TOKEN_URL": zipper.token_url, "INGESTER_CDSE_USERNAME": zipper.username,
                           "INGESTER_CDSE_PASSWORD": zipper.password, "INGESTER_PROVIDERS": "cdse",
                           "INGESTER_RETRY_BACKOFF": "0.1", "INGESTER_TILE_WORKER": f"{W}:noop"}.items():
            monkeypatch.setenv(key, value)
        yield catalogue, zipper, products


def test_an_offline_product_is_deferred_the_run_ends_and_a_later_run_downloads_it_once_restored(
        cli, payload, cdse_offline):
    catalogue, zipper, products = cdse_offline
    offline = products[1]

    def value_gets(pid: str) -> int:
        return sum(1 for r in zipper.requests if r["method"] == "GET" and f"({pid})/$value" in r["path"])

    r = cli("aoi", payload, "--create-layers", "--json", "--workers", "2")
    assert r.exit_code == 5, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["scenes"]["done"] == 1 and out["deferred"]["scenes"] == 1
    assert value_gets(products[0]["Id"]) == 1 and value_gets(offline["Id"]) == 0  # never requested
    with Store(DB) as st:
        assert st.one("SELECT lock_run FROM aoi") is None  # the lock is free for the next cron run
        sid = st.one("SELECT id FROM scene WHERE status = 'PENDING'")
        assert [a["outcome"] for a in st.attempts("scene", sid)] == ["deferred"]
    status = cli("status", S2)
    assert "Deferred: 1 job(s)" in status.stdout and "offline" in status.stdout

    # a cron run before it is due: exit 5 at once, no login (a new command logs in only when needed), no request
    grants, requests = len(zipper.grants), len(zipper.requests) + len(catalogue.requests)
    r = cli("run", S2, "--workers", "1")
    assert r.exit_code == 5, r.stderr
    assert (len(zipper.grants), len(zipper.requests) + len(catalogue.requests)) == (grants, requests)

    # `aoi` again: the scene is not ingested twice, and the message says where it stands and what to do
    r = cli("aoi", payload, "--workers", "1")
    assert r.exit_code == 5, r.stderr
    assert f"already in the AOI (scene {sid}, PENDING, deferred until" in r.stderr
    assert f"ingester refresh --scene {sid}" in r.stderr

    # restored (ordered through the Data Workspace); refresh reads the catalogue again and makes it due now
    catalogue.set_online(offline["Id"], True)
    zipper.offline.discard(offline["Id"])
    r = cli("refresh", "--scene", str(sid), "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["changes"]["online"] == {"before": False, "now": True} and out["due_now"] is True
    with Store(DB) as st:
        assert json.loads(st.one("SELECT data FROM scene WHERE id = ?", (sid,)))["metadata"]["online"] is True
    r = cli("run", S2, "--workers", "1")
    assert r.exit_code == 0, r.stderr
    assert value_gets(offline["Id"]) == 1
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM scene WHERE status = 'DONE'") == 2


def test_refresh_is_refused_while_a_run_holds_the_lock_and_says_when_the_product_is_gone(cli, payload, cdse_offline):
    catalogue, zipper, products = cdse_offline
    assert cli("aoi", payload, "--create-layers", "--workers", "1").exit_code == 5
    with Store(DB) as st:
        sid = st.one("SELECT id FROM scene WHERE status = 'PENDING'")
        before = st.counts(), st.one("SELECT data FROM scene WHERE id = ?", (sid,))
        st.execute("UPDATE aoi SET lock_run = 'other', lock_pid = 1, lock_host = ?, lock_started = 'x', "
                   "lock_heartbeat = ?", (__import__("os").uname().nodename, time.time()))
    r = cli("refresh", "--scene", str(sid))
    assert r.exit_code == 3 and "locked by another run" in r.stderr
    with Store(DB) as st:
        st.execute("UPDATE aoi SET lock_run = NULL")
        st.execute("UPDATE scene SET data = json_set(data, '$.metadata.uuid', ?) WHERE id = ?",
                   ("6f1d6b5e-0000-4000-8000-00000000dead", sid))
    r = cli("refresh", "--scene", str(sid))
    assert r.exit_code == 1 and "no longer in the CDSE catalogue" in r.stderr and "nothing changed" in r.stderr
    with Store(DB) as st:
        st.execute("UPDATE scene SET data = json_remove(data, '$.metadata.uuid') WHERE id = ?", (sid,))
    r = cli("refresh", "--scene", str(sid))
    assert r.exit_code == 2 and "no CDSE product id" in r.stderr
    assert cli("refresh", "--scene", "999").exit_code == 2
    with Store(DB) as st:
        assert st.counts() == before[0]


def test_retry_makes_a_waiting_job_due_now(cli, payload, tmp_path, markers, monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    first = json.loads(scenes.read_text())["features"][0]["properties"]["source_id"]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({first: ["deferred", "done"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers", scene="scripted").exit_code == 5
    r = cli("retry", "--scene", "1", "--workers", "1", "--scene-worker", f"{W}:scripted",
            "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    assert "scene 1: PENDING and waiting for a later try: due now" in r.stderr
    with Store(DB) as st:
        assert st.one("SELECT status FROM scene") == "DONE"
        assert st.one("SELECT retry_countdown FROM scene") == 1  # nothing consumed, nothing restored
