"""Graph steps run in their own process group and die with the run (issue 15 item 9): SIGTERM or a
broken pool stops them; after kill -9 of the run, the next run first kills the steps its leases
were running (verified by pid and process start time, so a recycled pid is never touched)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ingester.graph import engines
from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import write_s2_scenes

STEP = '''
import os, subprocess, sys, time
marks = os.environ["STEP_MARKS"]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(os.path.join(marks, f"{os.getpid()}.start"), "w") as fh:
    fh.write(str(child.pid))
time.sleep(float(os.environ.get("STEP_SLEEP", "120")))
open(os.path.join(marks, f"{os.getpid()}.end"), "w").close()
child.kill()
'''


@pytest.fixture
def project(tmp_path, repo):
    """A payload whose tile graph is one python step that sleeps (with a child) and leaves markers."""
    (tmp_path / "step.py").write_text(STEP)
    graph = {"processing_steps": [{"engine": "python", "command": str(tmp_path / "step.py"), "args": {}}],
             "out_files": [[]]}
    (tmp_path / "Sleeper.json").write_text(json.dumps(graph))
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload["tile_graph_name"] = "Sleeper.json"
    (tmp_path / "p.json").write_text(json.dumps(payload))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = subprocess_env({"STEP_MARKS": str(marks), "INGESTER_SCENE_WORKER": "tests.fakes.workers:succeed"})
    return tmp_path / "p.json", write_s2_scenes(tmp_path / "scenes.json", 1), marks, env


def started_steps(marks: Path, timeout: float = 120) -> list[tuple[int, int]]:
    """(step pid, its child's pid) of the steps that started, waiting for the first one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [(int(p.stem), int(p.read_text() or 0)) for p in marks.glob("*.start") if p.read_text()]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("no step started")


def dead(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def start_run(command: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def cleanup(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_steps_of_a_run_die_with_it_on_sigterm_and_ctrl_c(project, tmp_path, signum):
    payload, scenes, marks, env = project
    run = start_run([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes), "--create-layers",
                     "--workers", "1"], env, tmp_path)
    steps = []
    try:
        steps = started_steps(marks)
        run.send_signal(signum)  # to the run alone: its steps are in their own process groups
        _, err = run.communicate(timeout=120)
        assert run.returncode in (130, 143), err.decode()
        for step, child in steps:
            assert dead(step), f"step {step} survived the run"
            assert dead(child), f"the child {child} of step {step} survived the run"
        assert not list(marks.glob("*.end"))
    finally:
        cleanup([p for pair in steps for p in pair])
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


@pytest.mark.parametrize("victims", ["run and workers", "run alone"])
def test_after_kill_9_the_rerun_kills_the_old_step_before_running_the_tile_again(project, tmp_path, victims):
    """kill -9 of the run and its worker processes (the OOM killer, `kill -9 -PGID`): only the next run
    can stop the step. kill -9 of the run alone: its orphaned worker kills its step, or the next run does."""
    payload, scenes, marks, env = project
    run = start_run([PYTHON, "-m", "ingester", "aoi", str(payload), "--scenes", str(scenes), "--create-layers",
                     "--workers", "1"], env, tmp_path)
    old = []
    try:
        old = started_steps(marks)
        if victims == "run and workers":
            os.killpg(run.pid, signal.SIGKILL)  # the steps are in sessions of their own: they live on
        else:
            os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        run.stderr.close()
        rerun = subprocess.run([PYTHON, "-m", "ingester", "run", "DenmarkDemoS2", "--workers", "1"],
                               env={**env, "STEP_SLEEP": "0"}, cwd=tmp_path, capture_output=True, timeout=180)
        assert rerun.returncode == 0, rerun.stderr.decode()
        for step, child in old:
            assert dead(step, within=0.5), "the old step was still running after the re-run"
            assert dead(child, within=0.5)
            assert not (marks / f"{step}.end").exists()  # it never finished: killed, not waited for
        new = [int(p.stem) for p in marks.glob("*.end")]
        assert len(new) == 1 and new[0] not in {s for s, _ in old}  # the re-run ran the step once, itself
        if victims == "run and workers":
            assert "a dead run had left" in rerun.stderr.decode() and "killed" in rerun.stderr.decode()
        with Store(tmp_path / "outputs" / "ingester.db") as st:
            assert {s for (s,) in st.execute("SELECT status FROM tile")} == {"DONE"}
    finally:
        cleanup([p for pair in old for p in pair])
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def record_of(proc: subprocess.Popen | psutil.Process, start: float | None = None) -> dict:
    pid = proc.pid
    return {"host": os.uname().nodename, "pid": pid,
            "start": psutil.Process(pid).create_time() if start is None else start,
            "label": "step 0 (python sleep.py)"}


def test_a_recorded_step_is_killed_only_when_pid_and_start_time_both_match(tmp_path):
    folder = tmp_path / ".steps"
    folder.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (folder / "tile-1-1.json").write_text(json.dumps(record_of(victim)))
        # the same pid recorded with another start time: a recycled pid, another program now
        (folder / "tile-2-1.json").write_text(json.dumps(record_of(bystander, start=record_of(bystander)["start"] - 5)))
        (folder / "tile-3-1.json").write_text(json.dumps({**record_of(bystander), "host": "another-host"}))
        (folder / "tile-4-1.json").write_text("{not json")
        said = engines.stop_recorded_steps(folder)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None  # never killed: wrong start time, or another host's record
        assert any("tile-1-1" in s and "killed step pid" in s for s in said)
        assert not (folder / "tile-1-1.json").exists() and not (folder / "tile-2-1.json").exists()
        assert (folder / "tile-3-1.json").exists()  # another host's step: left for that host
    finally:
        for p in (victim, bystander):
            p.kill()
            p.wait()


def test_a_finished_step_leaves_no_record(tmp_path):
    record = tmp_path / ".steps" / "tile-1-1.json"
    inv = engines.Invocation(engine="python", command=str(_script(tmp_path)), args={},
                             workdir=tmp_path, timeout=30, record=record)
    engines.run_step(inv, tmp_path / "log.txt")
    assert not record.exists() and not list(record.parent.glob("*"))


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "ok.py"
    path.write_text("print('ok')\n")
    return path


def test_a_step_recorded_before_its_pid_was_known_is_found_by_its_step_id(tmp_path):
    """The worker died between starting the step and recording its pid: the step id in its environment
    (inherited by its children) finds it."""
    folder = tmp_path / ".steps"
    folder.mkdir()
    step_id = "f" * 32
    env = {**os.environ, engines.STEP_ID_VARIABLE: step_id}
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, engines.STEP_ID_VARIABLE: "e" * 32}, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the environment is readable (after exec)
            try:
                if psutil.Process(stray.pid).environ().get(engines.STEP_ID_VARIABLE) == step_id:
                    break
            except psutil.Error:
                pass
            time.sleep(0.05)
        (folder / "tile-5-1.json").write_text(json.dumps({"host": os.uname().nodename, "step_id": step_id,
                                                          "pid": None, "start": None, "label": "step 0"}))
        said = engines.stop_recorded_steps(folder)
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
        assert any(str(stray.pid) in s for s in said)
    finally:
        for p in (stray, other):
            p.kill()
            p.wait()
