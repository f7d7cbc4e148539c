"""kill -9 in the middle of `ingester aoi`, then the same command again: nothing lost, nothing done twice."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import write_s2_scenes

W = "tests.fakes.workers"


def done_attempts(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with Store(db) as st:
            return st.one("SELECT count(*) FROM job_attempt WHERE outcome = 'done'")
    except Exception:  # the schema may not be there yet
        return 0


def test_sigkill_mid_run_then_rerun_finishes_every_job_done_exactly_once(tmp_path, repo):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 5)  # 5 scene jobs + 5 tile jobs
    markers = tmp_path / "markers"
    markers.mkdir()
    db = tmp_path / "outputs" / "ingester.db"
    env = subprocess_env({"FAKE_WORKER_MARKERS": str(markers), "FAKE_WORKER_SLEEP": "0.4",
                          "INGESTER_SCENE_WORKER": f"{W}:sleep", "INGESTER_TILE_WORKER": f"{W}:sleep"})
    command = [PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes), "--create-layers",
               "--workers", "2", "-q"]
    recorded_before_kill: set[tuple[str, int]] = set()
    for kill_after in (2, 5):  # two crashes at different points of the run
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while done_attempts(db) < kill_after and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()}"
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its worker processes, like a reboot
        proc.wait(timeout=30)
        proc.stderr.close()
        with Store(db) as st:
            recorded_before_kill |= {(k, j) for k, j in st.execute(
                "SELECT kind, job_id FROM job_attempt WHERE outcome = 'done'")}
            assert st.one("SELECT lock_run FROM aoi") is not None  # the dead run's lock is left behind
    final = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()

    with Store(db) as st:
        statuses = {s for (s,) in st.execute("SELECT status FROM scene UNION SELECT status FROM tile")}
        assert statuses == {"DONE"}
        jobs = {(k, j) for k, j in st.execute("SELECT 'scene', id FROM scene UNION SELECT 'tile', id FROM tile")}
        assert len(jobs) == 10
        done = collections.Counter((k, j) for k, j in st.execute(
            "SELECT kind, job_id FROM job_attempt WHERE outcome = 'done'"))
        assert done == collections.Counter(dict.fromkeys(jobs, 1))  # DONE exactly once per job
        abandoned = {(k, j) for k, j in st.execute(
            "SELECT kind, job_id FROM job_attempt WHERE outcome = 'abandoned'")}
        assert abandoned  # something was in flight at each kill, and was re-queued
    executed = collections.Counter()
    for marker in (m for m in markers.iterdir() if not m.name.endswith(".tmp")):  # a kill may leave a .tmp
        kind, job_id = marker.name.split("-")[:2]
        executed[kind, int(job_id)] += 1
        assert json.loads(marker.read_text())["outcome"] == "done"
    assert set(executed) == jobs
    for job in recorded_before_kill:
        assert executed[job] == 1  # work recorded DONE is never redone
    # a job may run twice only if it finished in a worker after the kill hit the coordinator
    # (nothing recorded its result); it was then in flight, so it has an abandoned attempt
    assert all(n == 1 or (n == 2 and job in abandoned) for job, n in executed.items())


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                      (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_stops_at_once_releases_the_lock_and_requeues_the_jobs_in_flight(tmp_path, repo, signum, code, word):
    """Ctrl-C, and SIGTERM from cron's `timeout` or systemd, unwind the run the same way."""
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    db = tmp_path / "outputs" / "ingester.db"
    env = subprocess_env({"FAKE_WORKER_SLEEP": "300", "INGESTER_SCENE_WORKER": f"{W}:sleep",
                          "INGESTER_TILE_WORKER": f"{W}:sleep"})
    proc = subprocess.Popen([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes),
                             "--create-layers", "--workers", "2"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180  # generous: the machine may be busy
    running = 0
    while running < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if db.exists():
            with Store(db) as st:
                running = st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") or 0
    assert running == 2, "the two scene jobs were never claimed"
    proc.send_signal(signum)  # whenever it lands (even between claim and submit), leases come back
    _, err = proc.communicate(timeout=120)  # the 300 s jobs are not waited for
    assert proc.returncode == code, err.decode()
    assert word in err.decode() and "Traceback" not in err.decode()
    with Store(db) as st:
        assert st.one("SELECT lock_run FROM aoi") is None
        assert st.one("SELECT count(*) FROM scene WHERE lease_run IS NOT NULL") == 0
        assert st.one("SELECT count(*) FROM scene WHERE status = 'PENDING'") == 2
        assert {o for (o,) in st.execute("SELECT outcome FROM job_attempt")} == {"abandoned"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie waiting to be reaped is dead


def test_workers_die_with_a_killed_coordinator_instead_of_racing_the_next_run(tmp_path, repo):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = subprocess_env({"FAKE_WORKER_GATE": str(tmp_path / "never"), "FAKE_WORKER_PIDS": str(pids),
                          "INGESTER_SCENE_WORKER": f"{W}:gate", "INGESTER_TILE_WORKER": f"{W}:gate"})
    proc = subprocess.Popen([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes),
                             "--create-layers", "--workers", "1", "--quiet"], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not any(pids.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p.name) for p in pids.iterdir()]
    assert workers, "no worker started"
    proc.kill()  # the coordinator alone, as the OOM killer or `kill -9 <pid>` would
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
