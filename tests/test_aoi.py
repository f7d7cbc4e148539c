"""`ingester aoi` and `ingester run` end to end: real SQLite file, real worker processes, test workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ingester.payload import load_payload
from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import s1_chain, write_s1_tiles, write_s2_scenes

W = "tests.fakes.workers"
S2 = "DenmarkDemoS2"


@pytest.fixture
def markers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(folder))
    return folder


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


def executions(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.name.split("-")[0], int(p.name.split("-")[1])) for p in folder.iterdir())


def aoi(cli, *args, worker: str = "succeed", tile_worker: str | None = None):
    return cli("aoi", *args, "--workers", "1", "--scene-worker", f"{W}:{worker}",
               "--tile-worker", f"{W}:{tile_worker or worker}")


def counts(db: str = "outputs/ingester.db") -> dict[str, int]:
    with Store(db) as st:
        return st.counts()


def test_aoi_ingests_the_scenes_file_and_runs_each_job_once(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ingested"] == {"scenes": 3, "tiles": 3, "skipped": 0, "records_created": 3, "records_reused": 0}
    assert out["summary"]["scenes"]["done"] == 3 and out["summary"]["tiles"]["done"] == 3
    assert out["executed"] == 6
    assert len(executions(markers)) == 6 and len(set(executions(markers))) == 6
    assert "Ingestion of 3 scenes and 3 tiles" in r.stderr
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT count(*) FROM job_attempt WHERE outcome = 'done'") == 6
        assert st.one("SELECT lock_run FROM aoi") is None  # released


def test_rerunning_with_the_same_file_does_nothing_and_an_extended_file_adds_only_new_scenes(
        cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers").exit_code == 0
    r = aoi(cli, payload, "--scenes", scenes)
    assert r.exit_code == 0, r.stderr
    assert "Ingestion of 0 scenes and 0 tiles" in r.stderr and "0 jobs, 0 attempts in this run" in r.stderr
    assert len(executions(markers)) == 6
    extended = write_s2_scenes(tmp_path / "more.json", 5)
    r = aoi(cli, payload, "--scenes", extended, "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ingested"]["scenes"] == 2 and out["ingested"]["records_created"] == 2
    assert out["executed"] == 4
    assert len(executions(markers)) == 10 and len(set(executions(markers))) == 10
    assert counts()["scene"] == 5


def test_tiles_file_chains_run_in_order_and_later_dates_chain_onto_the_store(cli, tmp_path, repo, markers):
    payload = tmp_path / "s1.json"
    doc = json.loads((repo / "payloads" / "denmark-s1.json").read_text())
    payload.write_text(json.dumps(doc))
    chain = s1_chain("DenmarkDemoS1", 4, 2)
    first = write_s1_tiles(tmp_path / "t1.json", chain[:2])
    assert aoi(cli, payload, "--tiles", first, "--create-layers").exit_code == 0
    later = write_s1_tiles(tmp_path / "t2.json", chain)  # the first two again (skipped) + two new dates
    r = aoi(cli, payload, "--tiles", later, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 2
    with Store("outputs/ingester.db") as st:
        rows = st.execute("SELECT t.id, t.prev FROM tile t WHERE t.status = 'DONE' ORDER BY id").fetchall()
        assert len(rows) == 8
        started = {job: aid for aid, job in st.execute(
            "SELECT id, job_id FROM job_attempt WHERE kind = 'tile' AND outcome = 'done'")}
        for tid, prev in rows:
            if prev is not None:
                assert started[prev] < started[tid]  # a tile ran only after its previous was DONE
        graph = {r[0]: r[1] for r in st.execute("SELECT data, prev FROM tile")}
        assert sum(p is None for p in graph.values()) == 2  # still one chain per burst


def test_legacy_tiles_file_with_its_legacy_payload(cli, testdata, markers):
    r = aoi(cli, testdata / "payloads" / "DenmarkDemoS1.json", "--tiles", testdata / "payloads" / "tiles.json",
            "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ingested"]["tiles"] == 9
    assert out["summary"]["root_tiles"] == 3 and out["summary"]["tiles"]["done"] == 9
    assert (out["summary"]["from"], out["summary"]["to"]) == ("2022-01-11", "2022-02-04")


def test_jobs_that_end_retry_or_failed_give_exit_4_and_retry_finishes_them(cli, payload, tmp_path, markers,
                                                                             monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    doc = json.loads(scenes.read_text())
    ids = [f["properties"]["source_id"] for f in doc["features"]]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({ids[0]: ["fatal"], f"{ids[1]}/{ids[1]}": ["error", "error", "error"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", worker="scripted")
    assert r.exit_code == 4, r.stderr
    out = json.loads(r.stdout)
    assert out["unfinished"] == {"scene_retry": 0, "scene_failed": 1, "tile_retry": 1, "tile_failed": 1,
                                 "tile_stuck": 0}
    assert "some jobs did not finish" in r.stderr
    with Store("outputs/ingester.db") as st:
        tile = st.one("SELECT id FROM tile WHERE status = 'RETRY'")
        history = st.attempts("tile", tile)
        assert [h["outcome"] for h in history] == ["error", "error"]  # retry_count 1: one automatic re-run
        assert st.one("SELECT message FROM tile WHERE id = ?", (tile,)).startswith("error for tile")
    script.write_text(json.dumps({ids[0]: ["fatal"]}))
    r = cli("retry", S2, "--workers", "1", "--scene-worker", f"{W}:scripted", "--tile-worker", f"{W}:scripted")
    assert r.exit_code == 4  # the FAILED scene stays FAILED
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT status FROM tile WHERE id = ?", (tile,)) == "DONE"
        assert st.one("SELECT message FROM tile WHERE id = ?", (tile,)) == ""


def test_outputs_of_done_tiles_become_datasets_of_the_scene_record(cli, payload, tmp_path, markers, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_LAYERS", "B04,B08")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers").exit_code == 0
    with Store("outputs/ingester.db") as st:
        datasets = st.datasets(aoi=S2)
        assert len(datasets) == 4
        assert {(d.variable, d.instance, d.dtype) for d in datasets} == {("B04", "raw", "uint16"),
                                                                          ("B08", "raw", "uint16")}
        for record in st.records(S2):
            assert "processingDate" in record.tags


def test_outputs_for_a_layer_the_payload_does_not_declare_fail_the_tile(cli, payload, tmp_path, markers,
                                                                          monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_LAYERS", "NDVI")
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 4
    with Store("outputs/ingester.db") as st:
        assert "NDVI" in st.one("SELECT message FROM tile")
        assert st.datasets() == []


def test_missing_default_workers_end_jobs_with_a_clear_error_not_a_crash(cli, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTER_SCENE_WORKER", "ingester.nowhere.worker:run_scene_job")
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1")
    assert r.exit_code == 4
    with Store("outputs/ingester.db") as st:
        assert "No module named 'ingester.nowhere'" in st.one("SELECT message FROM scene")


def test_a_worker_process_that_dies_is_a_temporary_failure_not_a_hung_run(cli, payload, tmp_path, markers,
                                                                           monkeypatch):
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    monkeypatch.setenv("INGESTER_MAX_TEMPORARY_RETRIES", "1")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", worker="succeed", tile_worker="crash")
    assert r.exit_code == 4
    assert json.loads(r.stdout)["unfinished"]["tile_retry"] == 2
    with Store("outputs/ingester.db") as st:
        for (message,) in st.execute("SELECT message FROM tile"):
            assert "died (exit code 17)" in message
            assert "temporary once more after 1 re-queues: handled as an error" in message
        assert st.one("SELECT count(*) FROM scene WHERE status = 'DONE'") == 2
        assert st.execute("SELECT group_concat(outcome), group_concat(status) FROM (SELECT outcome, status "
                          "FROM job_attempt WHERE kind = 'tile' AND job_id = 1 ORDER BY id)").fetchone() == (
            "temporary,temporary,temporary,temporary", "PENDING,PENDING,PENDING,RETRY")
    # a process death is temporary (re-queued once), then an error; retry_count 1: one automatic re-run
    assert executions(markers).count(("tile", 1)) == 4


def test_a_broken_executor_stops_the_run_and_leaves_the_jobs_queued(cli, payload, tmp_path, markers, monkeypatch):
    from ingester import coordinator
    from ingester.executor import LocalExecutor

    class Broken(LocalExecutor):
        def _dispatch(self) -> None:
            raise RuntimeError("dispatcher bug")

    monkeypatch.setattr(coordinator, "LocalExecutor", Broken)
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 1
    assert "the executor failed: RuntimeError: dispatcher bug" in r.stderr
    with Store("outputs/ingester.db") as st:
        assert {s for (s,) in st.execute("SELECT status FROM scene")} == {"PENDING"}
        assert st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") == 0
        assert st.one("SELECT lock_run FROM aoi") is None
        assert {o for (o,) in st.execute("SELECT outcome FROM job_attempt")} == {"abandoned"}
    assert executions(markers) == []
    monkeypatch.setattr(coordinator, "LocalExecutor", LocalExecutor)
    r = cli("run", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    assert len(executions(markers)) == 4 and len(set(executions(markers))) == 4


# --- bad input: exit 2 and the store unchanged ----------------------------------------------------------

@pytest.fixture
def seeded(cli, payload, tmp_path, markers):
    """A store with one ingested scene, so 'unchanged' is checked on real content."""
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "one.json", 1), "--create-layers").exit_code == 0
    return counts()


def _tiles_with_missing_previous(tmp_path: Path) -> Path:
    chain = s1_chain("DenmarkDemoS2", 2, 1)
    return write_s1_tiles(tmp_path / "orphan.json", chain[1:])


@pytest.mark.parametrize("case", ["unknown layer", "other aoi", "missing previous", "corrupt json", "both files",
                                  "missing payload"])
def test_bad_input_exits_2_and_leaves_the_store_unchanged(cli, payload, tmp_path, seeded, case):
    good = write_s2_scenes(tmp_path / "five.json", 5)
    args: list = [payload, "--scenes", good]
    if case == "unknown layer":
        doc = json.loads(payload.read_text())
        doc["layers"]["NDVI"] = {"variable": "NDVI", "instance": "v1"}
        payload.write_text(json.dumps(doc))
        expected = "ingester layers add NDVI v1"
    elif case == "other aoi":
        args = [payload, "--scenes", write_s2_scenes(tmp_path / "other.json", 5, aoi="Sweden")]
        expected = "differs from the payload name 'DenmarkDemoS2'"
    elif case == "missing previous":
        args = [payload, "--tiles", _tiles_with_missing_previous(tmp_path)]
        expected = "is neither in the file nor in the AOI"
    elif case == "corrupt json":
        bad = tmp_path / "bad.json"
        bad.write_text(good.read_text()[:-40])
        args = [payload, "--scenes", bad]
        expected = "invalid JSON"
    elif case == "both files":
        args = [payload, "--scenes", good, "--tiles", good]
        expected = "either --scenes or --tiles"
    else:
        args = [tmp_path / "nope.json", "--scenes", good]
        expected = "file not found"
    r = aoi(cli, *args)
    assert r.exit_code == 2, r.stderr
    assert expected in r.stderr
    if case == "missing previous":  # the link is named where it is in the file
        assert ".properties.tiles[0].previous: scene " in r.stderr
    assert counts() == seeded


def test_a_previous_tile_that_is_failed_is_refused(cli, tmp_path, repo, markers):
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))
    chain = s1_chain("DenmarkDemoS1", 2, 1)
    assert aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "a.json", chain[:1]), "--create-layers",
               worker="fatal").exit_code == 4
    before = counts()
    r = aoi(cli, payload, "--tiles", write_s1_tiles(tmp_path / "b.json", chain))
    assert r.exit_code == 2 and "is FAILED" in r.stderr
    assert counts() == before


# --- locks, leases, resume -------------------------------------------------------------------------

def test_a_second_concurrent_run_exits_3_naming_the_holder(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    gate = tmp_path / "gate"  # the first run's jobs last until the test opens the gate
    env = subprocess_env({"FAKE_WORKER_GATE": str(gate), "INGESTER_SCENE_WORKER": f"{W}:gate",
                          "INGESTER_TILE_WORKER": f"{W}:gate"})
    first = subprocess.Popen([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes),
                              "--create-layers", "--workers", "1", "-q"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        holder = None
        while time.monotonic() < deadline and holder is None and first.poll() is None:
            time.sleep(0.1)
            if Path("outputs/ingester.db").exists():
                with Store("outputs/ingester.db") as st:
                    holder = st.one("SELECT lock_pid FROM aoi WHERE name = ?", (S2,))
        assert holder == first.pid
        r = aoi(cli, payload, "--scenes", scenes)
        assert r.exit_code == 3
        assert f"locked by another run: pid {first.pid}" in r.stderr
        assert cli("run", S2).exit_code == 3
    finally:
        gate.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()


def test_a_stale_lock_of_a_dead_process_is_taken_over(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers").exit_code == 0
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    with Store("outputs/ingester.db") as st:
        st.execute("UPDATE aoi SET lock_run = 'old', lock_pid = ?, lock_host = ?, lock_started = 'then', "
                   "lock_heartbeat = ?", (dead.pid, __import__("os").uname().nodename, time.time()))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "more.json", 2))
    assert r.exit_code == 0, r.stderr


def test_run_requeues_the_jobs_a_dead_run_left_in_flight(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers").exit_code == 0
    with Store("outputs/ingester.db") as st:  # pretend a run died while the second tile was running
        tile = st.one("SELECT max(id) FROM tile")
        st.execute("UPDATE tile SET status = 'PENDING', lease_run = 'deadrun', lease_expires = 0 WHERE id = ?",
                   (tile,))
        st.execute("INSERT INTO job_attempt (kind, job_id, aoi_id, attempt, run_id, host, pid, started_at) "
                   "VALUES ('tile', ?, 1, 2, 'deadrun', 'h', 1, 'then')", (tile,))
    r = cli("run", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT status FROM tile WHERE id = ?", (tile,)) == "DONE"
        assert [a["outcome"] for a in st.attempts("tile", tile)] == ["done", "abandoned", "done"]
    r = cli("run", "Nowhere")
    assert r.exit_code == 2 and "no AOI named 'Nowhere'" in r.stderr


def test_without_a_file_aoi_searches_the_catalogue_and_a_rerun_adds_nothing(cli, payload, markers, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from shapely.geometry import box

    from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product

    t = datetime(2022, 1, 1, 10, 34, 31, tzinfo=UTC)
    over = box(9.0, 54.1, 10.6, 55.9)
    with FakeCdseCatalogue() as fake:
        fake.add([s2_product(sensing=t, geometry=over, tile="32UNF", cloud=12.0, relative_orbit=108),
                  s2_product(sensing=t + timedelta(days=5), geometry=over, tile="32UNF", cloud=20.0,
                             relative_orbit=108)])
        monkeypatch.setenv("INGESTER_CDSE_CATALOGUE_URL", fake.url)
        r = aoi(cli, payload, "--create-layers", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["ingested"]["scenes"] == 2
        assert "from the catalogue" in r.stderr
        r = aoi(cli, payload, "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["ingested"] == {"scenes": 0, "tiles": 0, "skipped": 2, "records_created": 0,
                                                    "records_reused": 0}
    assert len(executions(markers)) == 4


def test_s1_scenes_are_split_into_bursts_and_new_acquisitions_chain_onto_the_store(cli, tmp_path, repo, testdata,
                                                                                     markers, monkeypatch):
    from ingester.scenes import write_scenes
    from tests.fakes.cdse_nodes import IW2_2022, IW2_2023, FakeCdseNodes, make_product, product_scene

    later, ascending, first = (make_product(testdata, IW2_2023, 1), make_product(testdata, IW2_2022),
                               make_product(testdata, IW2_2023))
    payload = repo / "payloads" / "losangeles-s1.json"
    with FakeCdseNodes([later, ascending, first]) as fake:
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.url, "INGESTER_CDSE_TOKEN_URL": fake.token_url,
                           "INGESTER_CDSE_USERNAME": fake.username, "INGESTER_CDSE_PASSWORD": fake.password}.items():
            monkeypatch.setenv(key, value)
        tagged = {p.scene_id: product_scene(p, "LosAngelesS1") for p in (later, ascending, first)}
        for scene in tagged.values():  # the catalogue adds the payload's record tags to every scene
            scene.tags.update(load_payload(payload).record_tags)
        write_scenes(tmp_path / "a.json", [tagged[p.scene_id] for p in (ascending, first)])
        r = aoi(cli, payload, "--scenes", tmp_path / "a.json", "--create-layers", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["ingested"]["tiles"] == 4
        write_scenes(tmp_path / "b.json", list(tagged.values()))
        r = aoi(cli, payload, "--scenes", tmp_path / "b.json", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["ingested"] == {"scenes": 1, "tiles": 2, "skipped": 2, "records_created": 1,
                                                    "records_reused": 0}
    with Store("outputs/ingester.db") as st:
        for tile in st.aoi_tiles("LosAngelesS1"):
            if tile.scene_id == later.scene_id:  # chained onto the stored acquisition 12 days before
                assert tile.previous.scene_id == first.scene_id and tile.reference.scene_id == first.scene_id
        (record,) = [r for r in st.records("LosAngelesS1") if r.name == later.scene_id]
        assert record.tags["previous_scenes"] == f'["{first.scene_id}"]'
        assert {s for (s,) in st.execute("SELECT status FROM tile")} == {"DONE"}


def test_tiles_command_leaves_ingested_scenes_out_and_chains_onto_the_store(cli, tmp_path, repo, testdata, markers,
                                                                           monkeypatch):
    from ingester.scenes import read_scenes, write_scenes
    from tests.fakes.cdse_nodes import IW2_2023, FakeCdseNodes, make_product, product_scene

    later, first = make_product(testdata, IW2_2023, 1), make_product(testdata, IW2_2023)
    payload = repo / "payloads" / "losangeles-s1.json"
    with FakeCdseNodes([later, first]) as fake:
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.url, "INGESTER_CDSE_TOKEN_URL": fake.token_url,
                           "INGESTER_CDSE_USERNAME": fake.username, "INGESTER_CDSE_PASSWORD": fake.password}.items():
            monkeypatch.setenv(key, value)
        tagged = {p.scene_id: product_scene(p, "LosAngelesS1") for p in (later, first)}
        for scene in tagged.values():
            scene.tags.update(load_payload(payload).record_tags)
        write_scenes(tmp_path / "a.json", [tagged[first.scene_id]])
        assert aoi(cli, payload, "--scenes", tmp_path / "a.json", "--create-layers").exit_code == 0
        write_scenes(tmp_path / "b.json", list(tagged.values()))
        r = cli("tiles", payload, "--scenes", tmp_path / "b.json", "-o", tmp_path / "tiles.json")
        assert r.exit_code == 0, r.stderr
        assert "1 scene already in the AOI" in r.stderr
        assert "the tiles of a scene in the AOI are fixed: a wider --buffer adds none to it" in r.stderr
    (scene,) = read_scenes(tmp_path / "tiles.json").scenes
    assert scene.source_id == later.scene_id and scene.tiles
    assert all(t.previous.scene_id == first.scene_id == t.reference.scene_id for t in scene.tiles)
    r = aoi(cli, payload, "--tiles", tmp_path / "tiles.json", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 1


def test_temporary_failures_are_requeued_a_bounded_number_of_times(cli, payload, tmp_path, markers, monkeypatch):
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    monkeypatch.setenv("INGESTER_MAX_TEMPORARY_RETRIES", "2")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", worker="temporary")
    assert r.exit_code == 4
    assert json.loads(r.stdout)["unfinished"]["scene_retry"] == 1
    # 1 run + 2 temporary re-queues, then an error: retry_count 1 gives one automatic re-run of 3 more
    assert executions(markers).count(("scene", 1)) == 6
    with Store("outputs/ingester.db") as st:
        assert "temporary once more after 2 re-queues: handled as an error" in st.one("SELECT message FROM scene")


def test_help_documents_every_option(cli):
    text = cli("aoi", "--help").stdout
    for option in ("--scenes", "--tiles", "--workers", "--db", "--create-layers", "--quiet", "--json",
                   "--scene-worker", "--tile-worker"):  # README: --help documents every option
        assert option in text
    for command in (["run"], ["status"], ["aois"], ["list", "scenes"], ["list", "tiles"], ["retry"], ["fail"],
                    ["dot"], ["history"], ["layers", "add"], ["layers", "list"]):
        assert cli(*command, "--help").exit_code == 0


def test_a_result_that_cannot_be_recorded_fails_its_job_and_the_run_goes_on(cli, payload, tmp_path, markers,
                                                                             monkeypatch):
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers", tile_worker="fail").exit_code == 4
    with Store("outputs/ingester.db") as st:
        broken = st.one("SELECT min(id) FROM scene")
        st.execute("UPDATE scene SET record_id = NULL WHERE id = ?", (broken,))
    monkeypatch.setenv("FAKE_WORKER_LAYERS", "B04")
    r = cli("retry", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 4
    with Store("outputs/ingester.db") as st:
        rows = dict(st.execute("SELECT scene_id, status FROM tile"))
        assert rows[broken] == "RETRY" and set(rows.values()) == {"RETRY", "DONE"}
        assert "has no record to index its outputs into" in st.one(
            "SELECT message FROM tile WHERE scene_id = ?", (broken,))
        assert len(st.datasets()) == 1


def test_different_aois_run_side_by_side_on_one_store(tmp_path, repo, markers):
    procs = []
    env = subprocess_env({"FAKE_WORKER_SLEEP": "0.1", "INGESTER_SCENE_WORKER": f"{W}:sleep",
                          "INGESTER_TILE_WORKER": f"{W}:sleep"})
    for name in ("DenmarkA", "DenmarkB"):
        doc = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
        doc["name"] = name
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        scenes = write_s2_scenes(tmp_path / f"{name}-scenes.json", 4, aoi=name)
        procs.append(subprocess.Popen([PYTHON, "-m", "ingester", "aoi", str(tmp_path / f"{name}.json"), "--scenes",
                                       str(scenes), "--create-layers", "--workers", "1", "-q"], env=env, cwd=tmp_path,
                                      stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with Store("outputs/ingester.db") as st:
        assert st.aoi_names() == ["DenmarkA", "DenmarkB"]
        assert {s for (s,) in st.execute("SELECT status FROM tile UNION SELECT status FROM scene")} == {"DONE"}
        assert st.one("SELECT count(*) FROM record") == 4  # the same scenes: records shared
    assert len(executions(markers)) == 16


@pytest.mark.parametrize("mode", ["min_none", "extra"])
def test_an_output_the_store_cannot_record_fails_its_job_and_reruns_do_not_crash(cli, payload, tmp_path, markers,
                                                                                   monkeypatch, mode):
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    monkeypatch.setenv("FAKE_WORKER_LAYERS", "B04")
    monkeypatch.setenv("FAKE_WORKER_BAD_OUTPUT", mode)
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", worker="succeed", tile_worker="bad_output")
    assert r.exit_code == 4, r.stderr  # not a traceback: every tile ran, each result was recorded
    with Store("outputs/ingester.db") as st:
        assert {s for (s,) in st.execute("SELECT status FROM tile")} == {"RETRY"}
        for (message,) in st.execute("SELECT message FROM tile"):
            assert message.startswith("cannot record the result: ")
        assert st.datasets() == [] and st.one("SELECT count(*) FROM job_attempt WHERE finished_at IS NULL") == 0
    r = cli("retry", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:bad_output")
    assert r.exit_code == 4, r.stderr


def test_an_interrupt_between_claim_and_submit_gives_the_leases_back(cli, payload, tmp_path, markers, monkeypatch):
    from ingester.coordinator import Coordinator

    def interrupted(self, scene_id, attempt):
        raise KeyboardInterrupt

    monkeypatch.setattr(Coordinator, "scene_job", interrupted)
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 2), "--create-layers")
    assert r.exit_code == 130 and "interrupted" in r.stderr
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") == 0
        assert st.one("SELECT lock_run FROM aoi") is None


# --- settings checked before any write; FAILED jobs brought back ----------------------------------------

def _bad_settings(monkeypatch) -> None:
    import ingester.providers
    from ingester.errors import ConfigError

    def check_settings(settings) -> None:
        if settings.providers and "locl" in settings.providers:
            raise ConfigError("INGESTER_PROVIDERS: unknown provider 'locl'")

    monkeypatch.setattr(ingester.providers, "check_settings", check_settings, raising=False)
    monkeypatch.setenv("INGESTER_PROVIDERS", "locl")


def test_bad_download_settings_exit_2_before_anything_is_written(cli, payload, tmp_path, markers, monkeypatch):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    with monkeypatch.context() as m:
        _bad_settings(m)
        r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
        assert r.exit_code == 2 and "unknown provider 'locl'" in r.stderr
        assert not Path("outputs").exists()
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers").exit_code == 0
    before = counts()
    _bad_settings(monkeypatch)
    for command in (["run", S2], ["retry", S2], ["retry", "--force", S2]):
        r = cli(*command)
        assert r.exit_code == 2 and "unknown provider 'locl'" in r.stderr, command
    assert counts() == before and executions(markers).__len__() == 2


def test_failed_jobs_come_back_with_retry_force_and_the_hint_says_so(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", worker="fatal")
    assert r.exit_code == 4
    assert f"ingester retry --force {S2}" in r.stderr and f"`ingester retry {S2}`" not in r.stderr
    with Store("outputs/ingester.db") as st:
        first, second = [r.id for r in st.scene_rows(1)]
        assert {r.status for r in st.scene_rows(1)} == {"FAILED"}
    r = cli("retry", "--scene", str(first))
    assert r.exit_code == 2
    assert "status FAILED->PENDING" in r.stderr and f"ingester retry --force --scene {first}" in r.stderr
    r = aoi(cli, payload, "--scenes", scenes)  # re-running aoi skips them: still FAILED, still exit 4
    assert r.exit_code == 4
    r = cli("retry", "--force", "--scene", str(first), "--workers", "1", "--scene-worker", f"{W}:succeed",
            "--tile-worker", f"{W}:succeed", "--json")
    assert r.exit_code == 4  # the other scene is still FAILED
    with Store("outputs/ingester.db") as st:
        assert st.scene_row(first).status == "DONE" and st.scene_row(second).status == "FAILED"
        assert {t.status for t in st.tile_rows(1, scene_id=first)} == {"DONE"}
        assert st.scene_row(first).retry_countdown == 1  # a fresh budget (payload retry_count)
    r = cli("retry", "--force", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker",
            f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    with Store("outputs/ingester.db") as st:
        assert {s for (s,) in st.execute("SELECT status FROM scene UNION SELECT status FROM tile")} == {"DONE"}


def test_bulk_retry_is_one_transaction(cli, payload, tmp_path, markers, monkeypatch):
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    assert aoi(cli, payload, "--scenes", scenes, "--create-layers", worker="succeed", tile_worker="fail").exit_code == 4
    import ingester.workflow as workflow

    real, calls = workflow.set_status, []

    def breaks_on_the_third(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise workflow.TransitionError("simulated failure halfway")
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "set_status", breaks_on_the_third)
    before = counts()
    with Store("outputs/ingester.db") as st:
        statuses = st.execute("SELECT id, status, retry_countdown FROM tile ORDER BY id").fetchall()
    r = cli("retry", S2, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 2 and "simulated failure halfway" in r.stderr and "nothing was changed" in r.stderr
    assert len(calls) == 3
    with Store("outputs/ingester.db") as st:
        assert st.execute("SELECT id, status, retry_countdown FROM tile ORDER BY id").fetchall() == statuses
        assert st.one("SELECT lock_run FROM aoi") is None
    assert counts() == before


# --- the store is created only for valid input; an AOI keeps its storage and layers --------------------

@pytest.mark.parametrize("case", ["missing scenes file", "missing payload", "unknown layer"])
def test_bad_input_in_an_empty_directory_creates_no_store(cli, payload, tmp_path, case):
    args: list = [payload, "--scenes", tmp_path / "missing.json"]
    if case == "missing payload":
        args = [tmp_path / "nope.json", "--scenes", write_s2_scenes(tmp_path / "s.json", 1)]
    if case == "unknown layer":
        args = [payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1)]  # no --create-layers
    r = cli("aoi", *args)
    assert r.exit_code == 2, r.stderr
    assert not Path("outputs").exists() and not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize("change", ["storage_uri", "layers"])
def test_rerunning_with_another_storage_or_layer_set_is_refused(cli, payload, tmp_path, markers, change):
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "one.json", 1), "--create-layers").exit_code == 0
    with Store("outputs/ingester.db") as st:
        settings_before = st.one("SELECT settings FROM aoi")
    doc = json.loads(payload.read_text())
    if change == "storage_uri":
        doc["storage_uri"] = str(tmp_path / "elsewhere")
        expected = "storage_uri"
    else:
        doc["layers"].pop(sorted(doc["layers"])[0])
        expected = "layers "
    payload.write_text(json.dumps(doc))
    before = counts()
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "two.json", 2), "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert "already exists with other settings" in r.stderr and expected in r.stderr
    assert counts() == before
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT settings FROM aoi") == settings_before


def test_an_aoi_ingested_by_another_run_meanwhile_gives_a_clear_message(cli, payload, tmp_path, markers,
                                                                         monkeypatch):
    import ingester.ingest as ingest

    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "one.json", 1), "--create-layers").exit_code == 0
    real_prepare = ingest.prepare

    def prepare_then_another_run_ingests(store, *args, **kwargs):
        plan = real_prepare(store, *args, **kwargs)
        other = Store(store.path)  # another process, between our check and our commit
        try:
            ingest.commit(other, real_prepare(other, *args, **kwargs), "other")
            from ingester.coordinator import release_lock
            release_lock(other, S2, "other")
        finally:
            other.close()
        return plan

    monkeypatch.setattr(ingest, "prepare", prepare_then_another_run_ingests)
    r = aoi(cli, payload, "--scenes", scenes)
    assert r.exit_code == 1
    assert "changed while the input was checked" in r.stderr and "re-run the command" in r.stderr
    assert "cannot store it" not in r.stderr
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT lock_run FROM aoi") is None
    monkeypatch.setattr(ingest, "prepare", real_prepare)
    assert aoi(cli, payload, "--scenes", scenes).exit_code == 0  # the re-run skips what the other run ingested


def test_a_provider_typo_is_refused_by_the_real_check_before_the_store_exists(cli, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTER_PROVIDERS", "locl")
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1), "--create-layers")
    assert r.exit_code == 2 and "locl" in r.stderr
    assert not Path("outputs").exists()


def test_a_scenes_file_given_as_tiles_and_misspelt_graphs_are_input_errors_before_any_write(cli, payload, tmp_path,
                                                                                            markers, repo, testdata):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    r = aoi(cli, payload, "--tiles", scenes, "--create-layers")
    assert r.exit_code == 2 and "it is a scenes file, not a tiles file" in r.stderr
    doc = json.loads(payload.read_text())
    doc["tile_graph_name"] = "ExtractS2Bandz"
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 2 and "field 'tile_graph_name': graph 'ExtractS2Bandz' not found" in r.stderr
    # a tiles file whose own graph name is misspelt (with --tiles, graph names come from the file)
    legacy = json.loads((testdata / "payloads" / "tiles.json").read_text())
    legacy["features"][0]["properties"]["Tiles"][0]["Data"]["graph_name"] = "S1BackscatterCoherense"
    (tmp_path / "tiles.json").write_text(json.dumps(legacy))
    s1 = json.loads((repo / "payloads" / "denmark-s1.json").read_text())
    s1["name"] = "DenmarkDemo"
    (tmp_path / "s1.json").write_text(json.dumps(s1))
    r = aoi(cli, tmp_path / "s1.json", "--tiles", tmp_path / "tiles.json", "--create-layers")
    assert r.exit_code == 2 and "graph 'S1BackscatterCoherense' not found" in r.stderr
    assert "field 'properties.tiles[0].data.graph_name'" in r.stderr
    # a scenes file whose scene graph is misspelt (with --scenes, the scene graph comes from the file)
    doc["tile_graph_name"] = "ExtractS2Bands"
    payload.write_text(json.dumps(doc))
    edited = json.loads(scenes.read_text())
    edited["features"][1]["properties"]["data"]["graph_name"] = "CopyProductToStorag"
    scenes.write_text(json.dumps(edited))
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert "features[1]: field 'properties.data.graph_name': graph 'CopyProductToStorag' not found" in r.stderr
    assert not (tmp_path / "outputs").exists() and executions(markers) == []


def test_an_other_processing_of_an_acquisition_already_in_the_aoi_is_skipped_with_a_warning(
        cli, payload, tmp_path, markers, monkeypatch):
    """Scenes files listed on different days (or pages of an older version) may hold two processings of
    one acquisition: the AOI keeps one, the other is skipped with a warning naming both."""
    from datetime import UTC, datetime

    from shapely.geometry import box

    from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product

    t = datetime(2022, 1, 2, 10, 34, 31, tzinfo=UTC)
    over = box(9.0, 54.1, 10.6, 55.9)
    old = s2_product(sensing=t, geometry=over, tile="32UNF", baseline="0301", relative_orbit=108)
    new = s2_product(sensing=t, geometry=over, tile="32UNF", baseline="0510", relative_orbit=108)
    other = s2_product(sensing=t, geometry=over, tile="32UNG", relative_orbit=108)
    with FakeCdseCatalogue([old, other]) as fake:
        monkeypatch.setenv("INGESTER_CDSE_CATALOGUE_URL", fake.url)
        assert cli("scenes", payload, "-o", tmp_path / "monday.json").exit_code == 0
        fake.add([new])  # reprocessed since
        assert cli("scenes", payload, "-o", tmp_path / "friday.json").exit_code == 0
    friday = json.loads((tmp_path / "friday.json").read_text())
    assert {f["properties"]["source_id"] for f in friday["features"]} == {new["Name"][:-5], other["Name"][:-5]}

    r = aoi(cli, payload, "--scenes", tmp_path / "monday.json", "--create-layers")
    assert r.exit_code == 0, r.stderr
    r = aoi(cli, payload, "--scenes", tmp_path / "friday.json", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 0
    assert (f"warning: {new['Name'][:-5]} is another processing of {old['Name'][:-5]}, which is already in the "
            "AOI DenmarkDemoS2: not ingested") in r.stderr
    with Store("outputs/ingester.db") as st:
        assert sorted(st.scene_ids_in_aoi(S2)) == sorted([old["Name"][:-5], other["Name"][:-5]])

    # one file with both processings (pages joined by hand): the newest is ingested, the older skipped
    both = json.loads((tmp_path / "monday.json").read_text())
    both["features"] += [f for f in friday["features"] if f["properties"]["source_id"] == new["Name"][:-5]]
    (tmp_path / "both.json").write_text(json.dumps(both))
    r = aoi(cli, payload, "--scenes", tmp_path / "both.json", "--db", "other.db", "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 2
    assert f"warning: {old['Name'][:-5]} is an older processing of {new['Name'][:-5]} (same file)" in r.stderr
    with Store("other.db") as st:
        assert sorted(st.scene_ids_in_aoi(S2)) == sorted([new["Name"][:-5], other["Name"][:-5]])


WRITE_ONE = """
import sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
open(args["out"], "w").write("one of two")
"""


def test_a_tile_whose_graph_misses_declared_outputs_is_not_done_and_the_summary_names_them(
        cli, payload, tmp_path, markers):
    """The tile graph declares two outputs and writes one: the tile ends RETRY (not DONE with 1 of 2),
    and the run summary, the job message and history say which output is missing."""
    (tmp_path / "write_one.py").write_text(WRITE_ONE)
    (tmp_path / "TwoOutputs.json").write_text(json.dumps({
        "config": {}, "envs": [],
        "processing_steps": [{"engine": "python", "command": "write_one.py",
                              "args": {"out": {"type": "out", "layer": "first", "extension": "txt"}}}],
        "in_files": [[], [], []],
        "out_files": [[{"layer": "first", "extension": "txt", "action": "to_create"},
                       {"layer": "second", "extension": "txt", "action": "to_create"}]]}))
    doc = json.loads(payload.read_text())
    payload.write_text(json.dumps({**doc, "tile_graph_name": "TwoOutputs.json", "retry_count": 0}))
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1",
            "--scene-worker", f"{W}:succeed", "--json")
    assert r.exit_code == 4, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["tiles"]["retry"] == 1
    (missing,) = out["missing_outputs"]
    assert missing["outputs"] == ["second"] and missing["status"] == "RETRY" and missing["kind"] == "tile"
    scene_id = json.loads(scenes.read_text())["features"][0]["properties"]["source_id"]
    assert (f"warning: tile {scene_id} of scene {scene_id} (tile id {missing['id']}): declared outputs not "
            "produced: second (job now RETRY)") in r.stderr
    r = cli("history", "--tile", str(missing["id"]), "--json")
    assert r.exit_code == 0, r.stderr
    (attempt,) = json.loads(r.stdout)["attempts"]
    assert "graph TwoOutputs: 1 declared output(s) not produced: second" in attempt["message"]
    log = Path(attempt["log_path"]).read_text()  # the job log says what happened, in the workflow's words
    assert "[ingester] graph failed (outcome error): graph TwoOutputs: 1 declared output(s)" in log
    assert log.rstrip().endswith("[ingester] attempt 1: error → RETRY (waits for `ingester retry`)")



def test_a_job_missing_outputs_on_every_attempt_is_reported_once_with_its_last_status(
        cli, payload, tmp_path, markers, monkeypatch):
    """The graph misses an output on each of the tile's 3 attempts in one run: the summary names the
    tile once (text and --json), with the status it ended in, not once per attempt."""
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    (tmp_path / "write_one.py").write_text(WRITE_ONE)
    (tmp_path / "TwoOutputs.json").write_text(json.dumps({
        "config": {}, "envs": [],
        "processing_steps": [{"engine": "python", "command": "write_one.py",
                              "args": {"out": {"type": "out", "layer": "first", "extension": "txt"}}}],
        "in_files": [[], [], []],
        "out_files": [[{"layer": "first", "extension": "txt", "action": "to_create"},
                       {"layer": "second", "extension": "txt", "action": "to_create"}]]}))
    doc = json.loads(payload.read_text())
    payload.write_text(json.dumps({**doc, "tile_graph_name": "TwoOutputs.json", "retry_count": 2}))
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1",
            "--scene-worker", f"{W}:succeed", "--json")
    assert r.exit_code == 4, r.stderr
    out = json.loads(r.stdout)
    (missing,) = out["missing_outputs"]
    assert missing["outputs"] == ["second"] and missing["kind"] == "tile"
    assert r.stderr.count("declared outputs not produced") == 1
    (tile,) = json.loads(cli("list", "tiles", S2, "--json").stdout)
    assert tile["id"] == missing["id"] and missing["status"] == tile["status"] == "RETRY"
    assert f"(job now {tile['status']})" in r.stderr
    attempts = json.loads(cli("history", "--tile", str(missing["id"]), "--json").stdout)["attempts"]
    assert len(attempts) == 3


def test_the_run_summary_counts_jobs_and_attempts_apart_and_history_says_outcome_and_status(
        cli, payload, tmp_path, markers, monkeypatch):
    """3 scenes and 3 tiles are 6 jobs; one scene and its tile are temporary once, another scene and its
    tile an error once (re-run automatically): 10 attempts. The summary says both; history says what
    each attempt led to."""
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    ids = [f["properties"]["source_id"] for f in json.loads(scenes.read_text())["features"]]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({ids[0]: ["temporary", "done"], ids[1]: ["error", "done"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json", worker="scripted")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["jobs"], out["attempts"]) == (6, 10)
    assert out["outcomes"] == {"done": 6, "temporary": 2, "error": 2}
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--db", "text.db", worker="scripted")
    assert r.exit_code == 0, r.stderr
    assert "AOI DenmarkDemoS2: 6 jobs, 10 attempts in this run (6 done, 2 temporary, 2 error); AOI status DONE" \
        in r.stderr
    with Store("outputs/ingester.db") as st:
        first, second = (st.one("SELECT id FROM scene WHERE source_id = ?", (i,)) for i in ids[:2])
    text = cli("history", "--scene", str(first)).stdout
    lines = text.splitlines()
    assert lines[0].startswith("attempt 1\t") and "\ttemporary → PENDING (re-queued)\t" in lines[0]
    assert lines[1].startswith("attempt 2\t") and "\tdone → DONE\t" in lines[1]
    text = cli("history", "--scene", str(second)).stdout
    assert "\terror → PENDING (automatic re-run)\t" in text.splitlines()[0]
    history = json.loads(cli("history", "--scene", str(second), "--json").stdout)
    assert [(a["outcome"], a["status"], a["result"]) for a in history["attempts"]] == [
        ("error", "PENDING", "error → PENDING (automatic re-run)"), ("done", "DONE", "done → DONE")]


def _delete_line(path: Path, index: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    del lines[index]
    path.write_text("".join(lines))


def test_a_scenes_file_whose_last_feature_line_was_deleted_is_read_with_a_warning(cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    lines = scenes.read_text().splitlines()
    assert lines[3].startswith('{"type": "Feature"') and lines[4].startswith("]")  # one feature per line
    _delete_line(scenes, 3)  # the last feature: the line before now ends with a trailing comma
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 2
    assert (f"warning: {scenes}: line 3: trailing comma before the ']' of line 4 ignored (left by deleting the "
            "last item's line?); remove it to silence this warning") in r.stderr


@pytest.mark.parametrize("edit, where, cause", [
    (lambda t: t.replace('},\n{"type": "Feature"', '}\n{"type": "Feature"', 1), "line 3, column 1",
     "a missing comma between two items (a line joined or a comma deleted?)"),
    (lambda t: t.replace('"false"}}', '"false",}}'), "line 5", "a trailing comma before '}' (JSON allows none)"),
    (lambda t: t[:-60], "line 4", "the file ends too early (truncated, or a closing bracket deleted?)"),
    (lambda t: t.replace('"type": "FeatureCollection"', "'type': 'FeatureCollection'"), "line 1, column 2",
     "single quotes: JSON strings and keys take double quotes"),
    (lambda t: "", "line 1, column 1", "the file is empty"),
    (lambda t: t + t, "line 6, column 1", "more text after the end of the JSON document (two documents pasted?)"),
])  # fmt: skip
def test_other_broken_json_gets_line_column_and_the_likely_cause(cli, payload, tmp_path, edit, where, cause):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    scenes.write_text(edit(scenes.read_text()))
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert f"error: {scenes}: invalid JSON at {where}" in r.stderr
    assert f"(likely cause: {cause})" in r.stderr
    assert not Path("outputs/ingester.db").exists()


# --- worker processes: capped (issue 15 item 16) -----------------------------------------------------------

@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("maximum, requested", [(None, 100000), (2, 3)])
def test_more_workers_than_the_maximum_is_exit_2_before_anything_starts(cli, payload, tmp_path, markers, monkeypatch,
                                                                         how, maximum, requested):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    if maximum is not None:
        monkeypatch.setenv("INGESTER_MAX_WORKERS", str(maximum))
    if how == "option":
        r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", str(requested))
    else:
        monkeypatch.setenv("INGESTER_WORKERS", str(requested))
        r = cli("aoi", payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert f"{requested} worker processes is more than INGESTER_MAX_WORKERS ({maximum or 32})" in r.stderr
    assert not Path("outputs").exists() and executions(markers) == []
    monkeypatch.setenv("INGESTER_MAX_WORKERS", str(requested))  # the maximum is a setting
    monkeypatch.setenv("INGESTER_WORKERS", str(requested))
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--json", "--scene-worker", f"{W}:succeed",
            "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["workers"] == 2  # one scene and its tile: two processes, not `requested`


def test_a_run_starts_no_more_worker_processes_than_it_has_jobs(cli, payload, tmp_path, markers):
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 2), "--create-layers", "--json",
            "--workers", "8", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["workers"] == 4 and out["executed"] == 4  # 2 scenes + 2 tiles
    assert len({p.name.split("-")[3] for p in markers.iterdir()}) <= 4
    r = cli("run", S2, "--json", "--workers", "8")
    assert r.exit_code == 0 and json.loads(r.stdout)["workers"] == 0  # nothing to run: no process started


@pytest.mark.parametrize("option", ["--scenes", "--tiles"])
def test_an_empty_scenes_or_tiles_file_is_exit_2_and_creates_neither_store_nor_aoi(cli, payload, tmp_path, option):
    from ingester.scenes import write_scenes

    empty = tmp_path / "empty.json"
    write_scenes(empty, [])
    r = aoi(cli, payload, option, empty, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert str(empty) in r.stderr and "no scene" in r.stderr
    assert not Path("outputs").exists() and not list(tmp_path.rglob("*.db"))
    # a store that exists (another AOI in it) gets no AOI either
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "one.json", 1), "--create-layers").exit_code == 0
    with Store("outputs/ingester.db") as st, st.transaction():
        st.execute("DELETE FROM aoi")  # the store stays, without the AOI
    before = counts()
    r = aoi(cli, payload, option, empty, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert counts() == before and counts()["aoi"] == 0


FAR_AWAY = "POLYGON ((150 -30, 151 -30, 151 -29, 150 -29, 150 -30))"  # Australia: nowhere near Denmark


def _move_away(path: Path, index: int) -> str:
    """Give scene `index` of a written scenes file a footprint outside the AOI, as a hand edit would."""
    lines = path.read_text().split("\n")
    feature = json.loads(lines[1 + index].rstrip(","))
    feature["properties"]["wkt"] = FAR_AWAY
    feature["geometry"] = {"type": "Polygon", "coordinates": [[[150, -30], [151, -30], [151, -29], [150, -29],
                                                               [150, -30]]]}
    lines[1 + index] = json.dumps(feature) + ("," if lines[1 + index].endswith(",") else "")
    path.write_text("\n".join(lines))
    return feature["properties"]["source_id"]


def test_a_hand_edited_scene_outside_the_aoi_is_skipped_with_a_warning_naming_it_and_its_line(
        cli, payload, tmp_path, markers):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    outside = _move_away(scenes, 1)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 2
    assert f"{scenes}: line 3: scene {outside}: its footprint does not intersect the AOI" in r.stderr
    with Store("outputs/ingester.db") as st:
        assert outside not in st.scene_ids_in_aoi(S2) and len(st.scene_ids_in_aoi(S2)) == 2


def test_a_scenes_file_whose_scenes_are_all_outside_the_aoi_is_exit_2_and_writes_nothing(cli, payload, tmp_path):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    outside = _move_away(scenes, 0)
    r = aoi(cli, payload, "--scenes", scenes, "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert f"line 2: scene {outside}: its footprint does not intersect the AOI" in r.stderr
    assert "no scene of this scenes file intersects the AOI" in r.stderr
    assert not Path("outputs/ingester.db").exists()
