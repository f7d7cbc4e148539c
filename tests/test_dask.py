"""The Dask back-end (`--executor dask`) on real Dask clusters of worker processes: a full ingestion
with the real download and tile workers, a worker dying mid-job, the scheduler lost mid-run then
`ingester run`, secrets kept out of the task graph, tokens, cluster-wide download slots, resources."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester.config import SECRET_FIELDS, Settings
from ingester.http.tokens import AccessToken
from ingester.jobs import SceneJob
from ingester.scenes import Scene, write_scenes
from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import S2_IDS, s2_scene, write_s2_scenes

distributed = pytest.importorskip("distributed", reason="the Dask back-end needs `pip install 'ingester[dask]'`")

from ingester.dask_executor import DaskExecutor, check_worker_threads, sent_settings  # noqa: E402

W = "tests.fakes.dask_workers"
OWN_SECRETS = {f"INGESTER_{name.upper()}": f"worker-own-{name}" for name in SECRET_FIELDS}
DASK = str(Path(sys.executable).with_name("dask"))


def job(i: int, attempt: int = 1, workdir: str = "", tokens: dict | None = None) -> SceneJob:
    return SceneJob(job_id=i, attempt=attempt, aoi="A", scene=s2_scene(S2_IDS[i % len(S2_IDS)]),
                    storage_uri="outputs/storage", workdir=workdir or f"w{i}", tokens=tokens or {})


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes whose environment holds secrets of their own."""
    saved = {k: os.environ.get(k) for k in OWN_SECRETS}
    os.environ.update(OWN_SECRETS)  # the workers' own environment (they are spawned with it)
    executor = DaskExecutor(2, Settings())
    try:
        yield executor
    finally:
        executor.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_secrets_never_travel_in_the_task_graph_workers_use_their_own(cluster, monkeypatch):
    coordinator_secrets = {name: f"coordinator-{name}-s3cr3t" for name in SECRET_FIELDS}
    monkeypatch.setattr(cluster, "_sent", sent_settings(Settings(**coordinator_secrets)))
    sent: list = []

    def spy(method):
        def call(*args, **kwargs):
            sent.append((args, kwargs))
            return method(*args, **kwargs)
        return call

    for name in ("submit", "map"):  # every way a task reaches the scheduler
        monkeypatch.setattr(cluster.client, name, spy(getattr(cluster.client, name)))
    token = AccessToken("cdse", "short-lived-access-token", time.time() + 600)
    result = cluster.submit(f"{W}:secrets_seen", job(1, tokens={"cdse": token})).result(timeout=60)
    assert result.outcome == "done", result.message
    assert sent
    graph = pickle.dumps(sent)
    assert [name for name, value in coordinator_secrets.items() if value.encode() in graph] == []
    assert b"short-lived-access-token" in graph  # at most the job's access token travels
    seen = json.loads(result.message)
    # FTP, S3 and ASF secrets come from the worker's own environment; the CDSE password and the
    # OneAtlas key never reach a worker (it asks the coordinator for tokens)
    assert {k: v["set"] for k, v in seen.items()} == {
        "asf_token": True, "cdse_password": False, "ftp_password": True, "oneatlas_api_key": False,
        "s3_secret_access_key": True}
    assert all(v["own"] for k, v in seen.items() if v["set"])


def test_a_worker_asks_the_coordinator_for_a_fresh_token(cluster):
    issued = []

    def source(service: str, stale: str | None) -> AccessToken:
        issued.append((service, stale))
        return AccessToken(service, "fresh-token", time.time() + 600)

    cluster.token_source = source
    token = AccessToken("cdse", "first-token", time.time() + 600)
    result = cluster.submit(f"{W}:fresh_token", job(2, tokens={"cdse": token})).result(timeout=60)
    assert result.outcome == "done", result.message
    assert json.loads(result.message) == {"first": "first-token", "fresh": "fresh-token"}
    assert issued == [("cdse", "first-token")]


def test_the_download_cap_holds_across_workers_that_share_no_disk(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOT_LIMIT", "1")
    futures = [cluster.submit(f"{W}:hold_download_slot", job(10 + i, workdir=str(tmp_path / f"job{i}")))
               for i in range(2)]  # one slot folder per job: only a cluster-wide semaphore makes them wait
    (a_start, a_end), (b_start, b_end) = sorted(json.loads(f.result(timeout=60).message) for f in futures)
    assert {f.result().details["ran_on"] for f in futures} <= set(cluster.client.nthreads())
    assert b_start >= a_end  # never two downloads at once


def test_a_job_whose_graph_needs_a_resource_waits_for_a_worker_that_has_it(cluster, tmp_path, monkeypatch):
    from tests.fakes.graph_jobs import s1_scene, tile_job, write_graph

    write_graph(tmp_path, "NeedsSnap", {"resources": {"snap": 1}, "processing_steps": [],
                                        "in_files": [[], [], []], "out_files": [[]]})
    scene, tile = s1_scene(1, graph="NeedsSnap")
    tj = tile_job(scene, tile, tmp_path / "storage", tmp_path / "work", "NeedsSnap", graph_dirs=(str(tmp_path),))
    future = cluster.submit("tests.fakes.workers:noop", tj)
    time.sleep(2)
    assert not future.done()  # no worker of the cluster has `snap`
    address = cluster.client.scheduler.address
    worker = subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--resources", "snap=1",
                               "--no-dashboard", "--name", "snap-worker"], env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = future.result(timeout=120)
        snap = [a for a, info in cluster.client.scheduler_info()["workers"].items() if info["name"] == "snap-worker"]
        assert result.outcome == "done" and [result.details["ran_on"]] == snap
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_workers_that_run_jobs_in_several_threads_are_refused():
    from ingester.errors import ConfigError

    check_worker_threads({"tcp://10.0.0.6:40001": 1, "tcp://10.0.0.7:40001": 1})
    with pytest.raises(ConfigError, match=r"tcp://10.0.0.7:40001 runs 4 threads.*--nthreads 1"):
        check_worker_threads({"tcp://10.0.0.6:40001": 1, "tcp://10.0.0.7:40001": 4})


# --- whole runs ------------------------------------------------------------------------------------

def _attempts(db: Path) -> list[tuple[str, int, str, str]]:
    with Store(db) as st:
        return list(st.execute("SELECT kind, job_id, outcome, message FROM job_attempt ORDER BY id"))


def test_a_worker_dying_mid_job_reruns_that_job_only(cli, repo, tmp_path, monkeypatch):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({S2_IDS[1]: ["crash", "done"]}))
    for key, value in {"FAKE_WORKER_SCRIPT": str(script), "INGESTER_RETRY_BACKOFF": "0.1",
                       "INGESTER_PROVIDERS": "local"}.items():
        monkeypatch.setenv(key, value)
    result = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--json", "--executor", "dask",
                 "--workers", "2", "--scene-worker", "tests.fakes.workers:scripted",
                 "--tile-worker", "tests.fakes.workers:scripted")
    assert result.exit_code == 0, result.stderr
    attempts = _attempts(tmp_path / "outputs" / "ingester.db")
    died = [a for a in attempts if a[2] != "done"]  # scene 2 and its tile (same source id) crash once each
    assert {("scene", 2), ("tile", 2)} <= {(k, j) for k, j, _o, _m in died}
    # a job Dask had already queued on the dying worker is re-run as well (temporary), never failed
    assert all(o == "temporary" and "the Dask worker running the job died" in m for _k, _j, o, m in died)
    assert sorted((k, j) for k, j, o, _ in attempts if o == "done") == sorted(
        {("scene", i) for i in (1, 2, 3)} | {("tile", i) for i in (1, 2, 3)})  # each job done once
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        ran_on = {r for (r,) in st.execute("SELECT ran_on FROM job_attempt")}
    assert ran_on and all(r.startswith("tcp://") for r in ran_on)
    history = cli("history", "--scene", "2", "--json")
    assert history.exit_code == 0 and json.loads(history.stdout)["attempts"][0]["ran_on"].startswith("tcp://")


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie is dead
    except FileNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(port: int) -> list[subprocess.Popen]:
    env = subprocess_env()
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 env={**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([DASK, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--nworkers", "2",
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [scheduler, worker]


def _stop(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_losing_the_scheduler_stops_the_run_with_exit_1_and_the_next_run_resumes(cli, repo, tmp_path):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 4)
    db = tmp_path / "outputs" / "ingester.db"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = subprocess_env({"FAKE_WORKER_SLEEP": "1", "INGESTER_SCENE_WORKER": "tests.fakes.workers:sleep",
                          "INGESTER_TILE_WORKER": "tests.fakes.workers:sleep", "INGESTER_PROVIDERS": "local",
                          "INGESTER_EXECUTOR": "dask", "INGESTER_DASK_SCHEDULER": address})
    command = [PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes), "--create-layers", "-q"]
    # a local storage path and a remote scheduler: refused before anything is written
    refused = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert refused.returncode == 2 and "--shared-storage" in refused.stderr.decode()
    assert not db.exists()

    cluster = _start_cluster(port)
    try:
        proc = subprocess.Popen([*command, "--shared-storage"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if db.exists() and any(o == "done" for _k, _j, o, _m in _attempts(db)):
                break
        assert proc.poll() is None, proc.stderr.read().decode()
        _stop(cluster[:1], signal.SIGKILL)  # the scheduler dies mid-run
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err.decode()
        assert "Dask" in err.decode() and "Traceback" not in err.decode()
        with Store(db) as st:
            assert st.one("SELECT lock_run FROM aoi") is None
            assert st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") == 0
            assert st.one("SELECT count(*) FROM tile WHERE lease_run IS NOT NULL") == 0
            assert st.one("SELECT count(*) FROM scene WHERE status != 'DONE'") > 0
    finally:
        _stop(cluster)
    cluster = _start_cluster(port)
    try:
        again = subprocess.run([PYTHON, "-m", "ingester", "run", "DenmarkDemoS2", "--shared-storage", "-q"],
                               env=env, cwd=tmp_path, capture_output=True, timeout=300)
        assert again.returncode == 0, again.stderr.decode()
    finally:
        _stop(cluster)
    with Store(db) as st:
        assert {s for (s,) in st.execute("SELECT status FROM scene UNION SELECT status FROM tile")} == {"DONE"}


def test_an_ingestion_runs_on_a_local_dask_cluster_with_the_real_download_and_tile_workers(
        cli, repo, testdata, tmp_path, monkeypatch):
    from blake3 import blake3
    from rio_cogeo.cogeo import cog_validate

    from tests.fakes.cdse_download import FakeCdse
    from tests.fakes.graph_jobs import S2_ID, complete_s2_safe
    from tests.fakes.views_data import box_payload

    # the example payload, its AOI moved onto the product's footprint (a tile in southern France)
    payload = box_payload(repo, tmp_path / "denmark-s2.json", (1.77, 42.4, 3.1, 43.4))
    safe = shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", tmp_path / "safe" / f"{S2_ID}.SAFE")
    complete_s2_safe(safe)
    zipped = tmp_path / "product.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in sorted(safe.rglob("*")):
            zf.write(path, path.relative_to(safe.parent).as_posix())
    data = zipped.read_bytes()
    wkt = "POLYGON ((1.77 43.4, 3.1 43.4, 3.1 42.4, 1.77 42.4, 1.77 43.4))"
    with FakeCdse("127.0.0.1") as fake:
        pid = fake.add_product(data)
        scene = Scene(source_id=S2_ID, aoi="DenmarkDemoS2", date=datetime(2018, 1, 1, 10, 54, 41, tzinfo=UTC),
                      wkt=wkt, graph_name="CopyProductToStorage", is_retriable=True,
                      tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                            "constellation": "SENTINEL2", "satellite": "SENTINEL2A"},
                      metadata={"uuid": pid, "checksums": {"MD5": "", "BLAKE3": blake3(data).hexdigest()},
                                "size": len(data), "online": True})
        write_scenes(tmp_path / "scenes.json", [scene], next_=False)
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                           "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                           "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse"}.items():
            monkeypatch.setenv(key, value)
        result = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--json",
                     "--executor", "dask", "--workers", "2")
        assert result.exit_code == 0, result.stderr
        assert fake.logins == 1  # the coordinator's one login; the worker used the token it was handed
    storage = tmp_path / "outputs" / "storage" / "DenmarkDemoS2" / S2_ID / "tiles" / S2_ID
    assert cog_validate(str(storage / f"20180101_{S2_ID}_B01.tif"))[0]
    listed = cli("datasets", "DenmarkDemoS2", "--json")
    assert len(json.loads(listed.stdout)) == 11
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        assert {(k, o) for k, o in st.execute("SELECT kind, outcome FROM job_attempt")} == {("scene", "done"),
                                                                                           ("tile", "done")}
        assert all(r.startswith("tcp://") for (r,) in st.execute("SELECT ran_on FROM job_attempt"))


def test_asking_for_dask_without_distributed_is_exit_2_with_the_install_command(cli, repo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    result = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--executor", "dask")
    assert result.exit_code == 2
    assert "pip install 'ingester[dask]'" in result.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()


def test_sigterm_cancels_the_tasks_releases_the_lock_and_leaves_no_worker_behind(repo, tmp_path):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    db = tmp_path / "outputs" / "ingester.db"
    pids = tmp_path / "pids"
    pids.mkdir()
    env = subprocess_env({"FAKE_WORKER_GATE": str(tmp_path / "never"), "FAKE_WORKER_PIDS": str(pids),
                          "INGESTER_SCENE_WORKER": "tests.fakes.workers:gate", "INGESTER_PROVIDERS": "local",
                          "INGESTER_TILE_WORKER": "tests.fakes.workers:gate", "INGESTER_EXECUTOR": "dask"})
    proc = subprocess.Popen([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes),
                             "--create-layers", "--workers", "2"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert len(list(pids.iterdir())) == 2, "the two scene jobs never started on the Dask workers"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    assert "terminated" in err.decode() and "Traceback" not in err.decode()
    with Store(db) as st:
        assert st.one("SELECT lock_run FROM aoi") is None
        assert st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") == 0
        assert st.one("SELECT count(*) FROM scene WHERE status = 'PENDING'") == 2
        assert {o for (o,) in st.execute("SELECT outcome FROM job_attempt")} == {"abandoned"}
    time.sleep(1)
    assert [p.name for p in pids.iterdir() if _alive(int(p.name))] == []  # the cluster's workers went with the run


@pytest.mark.parametrize("options,expected", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "the executor is 'local', which would ignore it"),
    (["--executor", "dask", "--scheduler", "bogus"], "'bogus' is not a Dask scheduler address"),
    (["--executor", "dask", "--scheduler", "http://127.0.0.1:8786"], "is not a Dask scheduler address"),
])
def test_a_scheduler_for_a_local_run_or_not_an_address_is_exit_2_before_anything_is_written(
        cli, repo, tmp_path, monkeypatch, options, expected):
    monkeypatch.setenv("INGESTER_PROVIDERS", "local")
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers",
            "--tile-worker", "tests.fakes.workers:noop", "--scene-worker", "tests.fakes.workers:noop", *options)
    assert r.exit_code == 2, r.stderr
    assert expected in r.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()


def test_a_scheduler_that_does_not_answer_fails_the_pre_flight_and_nothing_is_written(cli, repo, tmp_path,
                                                                                        monkeypatch):
    for key, value in {"INGESTER_PROVIDERS": "local", "INGESTER_SCENE_WORKER": "tests.fakes.workers:noop",
                       "INGESTER_TILE_WORKER": "tests.fakes.workers:noop"}.items():
        monkeypatch.setenv(key, value)
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    nobody = f"tcp://127.0.0.1:{_free_port()}"
    options = ["--executor", "dask", "--scheduler", nobody, "--shared-storage"]
    checked = cli("check", payload, "--scenes", scenes, "--create-layers", *options)
    assert checked.exit_code == 1 and f"cannot reach the Dask scheduler {nobody}" in checked.stdout + checked.stderr
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", *options)
    assert r.exit_code == 1, r.stderr
    assert "scheduler" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()
