"""The local process pool: results, worker errors, missing workers, and worker processes that die."""

from __future__ import annotations

import json
import time

import pytest

from ingester.config import Settings
from ingester.executor import ExecutorBroken, InlineExecutor, LocalExecutor, resolve_worker
from ingester.jobs import SceneJob
from tests.fakes.aoi_data import S2_IDS, s2_scene

W = "tests.fakes.workers"


def job(i: int, attempt: int = 1) -> SceneJob:
    return SceneJob(job_id=i, attempt=attempt, aoi="A", scene=s2_scene(S2_IDS[i % len(S2_IDS)]),
                    storage_uri="outputs/storage", workdir=f"w{i}")


@pytest.fixture(scope="module")
def pool():
    ex = LocalExecutor(workers=2, settings=Settings())
    yield ex
    ex.shutdown()


def test_jobs_run_in_other_processes_and_return_their_results(pool, tmp_path, monkeypatch):
    results = [pool.submit(f"{W}:succeed", job(i)).result(timeout=60) for i in range(4)]
    assert [r.outcome for r in results] == ["done"] * 4
    assert pool.submit(f"{W}:fail", job(1)).result(timeout=60).outcome == "error"
    assert pool.submit(f"{W}:fatal", job(1)).result(timeout=60).message == "FATAL ERROR: corrupt product"
    assert pool.submit(f"{W}:temporary", job(1)).result(timeout=60).outcome == "temporary"


def test_a_worker_that_raises_is_an_error_outcome(tmp_path, monkeypatch):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({S2_IDS[0]: ["raise"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))  # read by the worker process (spawned with this env)
    with LocalExecutor(workers=1, settings=Settings()) as fresh:
        result = fresh.submit(f"{W}:scripted", job(0)).result(timeout=60)
    assert result.outcome == "error"
    assert "RuntimeError: bug in the worker" in result.message


@pytest.mark.parametrize("path,problem", [
    ("ingester.nothing_here:run", "No module named 'ingester.nothing_here'"),
    (f"{W}:no_such_function", "has no function 'no_such_function'"),
    ("no_colon_path", "not an import path of the form 'module:function'"),
])  # fmt: skip
def test_a_missing_worker_ends_the_job_with_a_clear_error(pool, path, problem):
    result = pool.submit(path, job(0)).result(timeout=60)
    assert result.outcome == "error"
    assert problem in result.message and path in result.message


def test_a_worker_process_that_dies_is_a_temporary_failure_of_its_job_only(pool):
    futures = [pool.submit(f"{W}:succeed", job(i)) for i in range(3)]
    dead = pool.submit(f"{W}:crash", job(3))
    futures += [pool.submit(f"{W}:succeed", job(i)) for i in range(4, 8)]
    result = dead.result(timeout=60)
    assert result.outcome == "temporary"  # killed (OOM, SIGKILL): not the job's fault, re-queued (bounded)
    assert "died (exit code 17)" in result.message
    assert [f.result(timeout=60).outcome for f in futures] == ["done"] * 7
    assert pool.deaths >= 1
    assert pool.submit(f"{W}:succeed", job(9)).result(timeout=60).outcome == "done"  # the pool goes on


def test_the_default_workers_are_named_by_import_path():
    s = Settings()
    assert s.scene_worker == "ingester.providers.worker:run_scene_job"
    assert s.tile_worker == "ingester.graph.worker:run_tile_job"
    assert resolve_worker(f"{W}:succeed").__name__ == "succeed"


def test_inline_executor_runs_in_process():
    ex = InlineExecutor()
    assert ex.submit(f"{W}:succeed", job(0)).result().outcome == "done"


def test_shutdown_without_wait_kills_the_jobs_in_flight(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_SLEEP", "30")
    ex = LocalExecutor(workers=1, settings=Settings())
    futures = [ex.submit(f"{W}:sleep", job(i)) for i in range(3)]
    time.sleep(0.5)
    ex.shutdown(wait=False)
    results = [f.result(timeout=5) for f in futures]  # a finished job would say "done" (after 30 s)
    assert [r.outcome for r in results] == ["error"] * 3
    assert all(not p.process.is_alive() for p in ex._procs)


def test_a_broken_dispatcher_raises_executor_broken_instead_of_failing_the_jobs(monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_SLEEP", "5")
    ex = LocalExecutor(workers=1, settings=Settings())
    try:
        running = ex.submit(f"{W}:gate", job(0))
        while not running.running():
            time.sleep(0.01)

        def broken() -> None:
            raise RuntimeError("dispatcher bug")

        ex._dispatch = broken  # type: ignore[method-assign]
        waiting = ex.submit(f"{W}:succeed", job(1))
        for future in (running, waiting):
            with pytest.raises(ExecutorBroken, match="dispatcher bug"):
                future.result(timeout=60)
        with pytest.raises(ExecutorBroken):
            ex.submit(f"{W}:succeed", job(2))
    finally:
        ex.shutdown(wait=False)


def test_jobs_sent_to_a_worker_process_that_just_died_are_run_elsewhere_not_failed(monkeypatch):
    """The dispatcher may send to a process that died an instant before (its death not yet seen): a
    dead pipe is not the job's fault. Made deterministic by killing the idle process just before a
    dispatch that has jobs to send."""
    ex = LocalExecutor(workers=2, settings=Settings(), prefetch=2)
    try:
        victim = ex._procs[0]
        original = ex._dispatch
        armed = [True]

        def dispatch_after_a_death() -> None:
            if armed[0] and ex._pending:
                armed[0] = False
                victim.process.kill()
                victim.process.join(timeout=30)
            original()

        ex._dispatch = dispatch_after_a_death  # type: ignore[method-assign]
        futures = [ex.submit(f"{W}:succeed", job(i)) for i in range(6)]
        results = [f.result(timeout=60) for f in futures]
        assert [r.outcome for r in results] == ["done"] * 6, [r.message for r in results]
        assert not armed[0] and not victim.process.is_alive()
        assert ex.deaths == 1 and ex._procs[0] is not victim  # replaced, and the pool goes on
        assert ex.submit(f"{W}:succeed", job(7)).result(timeout=60).outcome == "done"
    finally:
        ex.shutdown()


def test_an_unpicklable_job_is_still_an_error_of_that_job_alone(pool):
    bad = pool.submit(f"{W}:succeed", lambda: None)
    good = pool.submit(f"{W}:succeed", job(1))
    assert bad.result(timeout=60).outcome == "error"
    assert "cannot send the job" in bad.result().message
    assert good.result(timeout=60).outcome == "done"
    assert pool.submit(f"{W}:succeed", job(2)).result(timeout=60).outcome == "done"


def test_only_the_job_running_on_a_dead_process_is_charged_not_those_sent_after_its_death(monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_WORKER_GATE", str(tmp_path / "never"))  # runs until its process is killed
    ex = LocalExecutor(workers=2, settings=Settings(), prefetch=2)
    try:
        victim = ex._procs[0]
        running = ex.submit(f"{W}:gate", job(0))  # dispatched to process 0 (the first with room)
        while not victim.queue:
            time.sleep(0.01)
        original = ex._dispatch
        armed = [True]

        def dispatch_after_a_death() -> None:
            if armed[0] and ex._pending:
                armed[0] = False
                victim.process.kill()
                victim.process.join(timeout=30)
            original()

        ex._dispatch = dispatch_after_a_death  # type: ignore[method-assign]
        others = [ex.submit(f"{W}:succeed", job(i)) for i in range(1, 5)]
        result = running.result(timeout=60)
        assert result.outcome == "temporary" and "died (exit code -9)" in result.message
        assert [f.result(timeout=60).outcome for f in others] == ["done"] * 4
        assert ex.deaths == 1
    finally:
        ex.shutdown(wait=False)


def test_download_progress_in_a_worker_process_reaches_the_coordinators_queue():
    import multiprocessing
    import queue as queues

    events = multiprocessing.get_context("spawn").Queue()
    received: list[tuple] = []
    with LocalExecutor(workers=1, settings=Settings(), progress_queue=events) as ex:
        result = ex.submit(f"{W}:report_progress", job(0)).result(timeout=60)
        while not received or received[-1][0] != "finish":  # read while the pool runs, as the display does
            try:
                received.append(events.get(timeout=60))
            except queues.Empty:
                break
    assert result.message == "progress sent by QueueProgress"
    kinds = [e[0] for e in received]
    assert kinds[0] == "start" and kinds[-1] == "finish" and set(kinds[1:-1]) == {"advance"}
    assert received[0][2:] == (f"{S2_IDS[0]}.zip", 3000, 0)
    assert sum(e[2] for e in received if e[0] == "advance") == 3000
    assert len({e[1] for e in received}) == 1  # one download, one key


def test_without_a_display_worker_processes_report_no_progress(pool):
    assert pool.submit(f"{W}:report_progress", job(0)).result(timeout=60).message == "no progress display"
