"""One failure vocabulary: the scene worker, the tile worker and the executor (a worker that raises)
give one exception one outcome (ingester.failures.classify; docs/workflow.md, "Which failure gives
which outcome")."""

from __future__ import annotations

import errno
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests

from ingester.errors import (
    AuthError,
    ConfigError,
    Deferred,
    DownloadError,
    GraphError,
    HTTPError,
    InputError,
    NotFound,
    ProcessingError,
    RateLimited,
    StorageError,
    Unavailable,
)
from ingester.executor import call_worker
from ingester.jobs import SceneJob
from ingester.providers.unpack import ArchiveError, UnsafeArchiveError
from ingester.scenes import Scene
from tests.fakes.graph_jobs import s1_scene, settings, tile_job

S2_ID = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"


def raised_from(cause: BaseException, exc: BaseException) -> BaseException:
    """`exc` as raised while handling `cause` (`raise exc from None`, as storage.py does)."""
    try:
        try:
            raise cause
        except type(cause):
            raise exc from None
    except type(exc) as caught:
        return caught


CASES: list[tuple[str, Callable[[], BaseException], str]] = [
    ("provider unavailable", lambda: Unavailable("cdse: 503"), "temporary"),
    ("provider rate limited", lambda: RateLimited("cdse: 429"), "temporary"),
    ("no provider has it", lambda: NotFound("no provider has it"), "error"),
    ("credentials refused", lambda: AuthError("cdse: 401"), "error"),
    ("product offline", lambda: Deferred("cdse: offline", retry_at=1_900_000_000.0), "deferred"),
    ("broken archive", lambda: ArchiveError("not a valid zip archive"), "temporary"),
    ("unsafe archive", lambda: UnsafeArchiveError("a member would escape"), "error"),
    ("http 503", lambda: HTTPError("answered 503", status=503), "temporary"),
    ("http 429", lambda: HTTPError("answered 429", status=429), "temporary"),
    ("http without answer", lambda: HTTPError("no answer", status=None), "temporary"),
    ("http 404", lambda: HTTPError("answered 404", status=404), "error"),
    ("requests connection error", lambda: requests.ConnectionError("reset by peer"), "temporary"),
    ("connection reset", lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "temporary"),
    ("timeout", lambda: TimeoutError("timed out"), "temporary"),
    ("i/o error", lambda: OSError(errno.EIO, "Input/output error"), "temporary"),
    ("permission denied", lambda: PermissionError(errno.EACCES, "Permission denied", "/storage/x"), "error"),
    ("disk full", lambda: OSError(errno.ENOSPC, "No space left on device"), "error"),
    ("storage error from an i/o error",
     lambda: raised_from(OSError(errno.EIO, "Input/output error"), StorageError("cannot store x: I/O")), "temporary"),
    ("storage error from a refusal",
     lambda: raised_from(PermissionError(errno.EACCES, "denied"), StorageError("cannot store x: denied")), "error"),
    ("storage error, not found", lambda: StorageError("x: not found in storage"), "error"),
    ("settings to fix", lambda: ConfigError("INGESTER_PROVIDERS: unknown provider"), "error"),
    ("graph to fix", lambda: GraphError("graph g.json: step 0: unknown engine"), "error"),
    ("invalid input in a job", lambda: InputError("scene name not allowed in storage paths"), "fatal"),
    ("step timed out", lambda: ProcessingError("step 0 timed out", "temporary"), "temporary"),
    ("step said fatal", lambda: ProcessingError("FATAL ERROR: corrupt", "fatal"), "fatal"),
    ("step failed", lambda: ProcessingError("step 0 failed"), "error"),
    ("step failed, older word", lambda: ProcessingError("step 0 failed", "permanent"), "error"),
    ("download check failed", lambda: DownloadError("size mismatch"), "error"),
    ("a bug", lambda: RuntimeError("bug in the worker"), "error"),
]


def scene_worker_outcome(make: Callable[[], BaseException], tmp_path, monkeypatch):
    import ingester.providers.worker as worker

    def fetch_product(*args, **kwargs):
        raise make()

    monkeypatch.setattr(worker, "fetch_product", fetch_product)
    scene = Scene(source_id=S2_ID, aoi="aoi", date=datetime(2018, 1, 1, tzinfo=UTC),
                  wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name="CopyProductToStorage")
    job = SceneJob(job_id=1, attempt=1, aoi="aoi", scene=scene, storage_uri=str(tmp_path / "storage"),
                   workdir=str(tmp_path / "work" / "scene-1-1"))
    return worker.run_scene_job(job, settings(workdir=str(tmp_path / "work")))


def tile_worker_outcome(make: Callable[[], BaseException], tmp_path, monkeypatch):
    import ingester.graph.worker as worker

    def load_graph(*args, **kwargs):
        raise make()

    monkeypatch.setattr(worker, "load_graph", load_graph)
    scene, tile = s1_scene(4, graph="Pass")
    job = tile_job(scene, tile, tmp_path / "storage", tmp_path / "work" / "tile-1-1", "Pass")
    return worker.run_tile_job(job, settings(workdir=str(tmp_path / "work")))


def executor_outcome(make: Callable[[], BaseException], tmp_path):
    def raising(job, settings):
        raise make()

    return call_worker("tests:raising", None, settings(), cache={"tests:raising": raising})


@pytest.mark.parametrize("what, make, outcome", CASES, ids=[c[0] for c in CASES])
def test_both_workers_and_the_executor_give_one_failure_one_outcome(what, make, outcome, tmp_path, monkeypatch):
    scene = scene_worker_outcome(make, tmp_path, monkeypatch)
    tile = tile_worker_outcome(make, tmp_path, monkeypatch)
    raised = executor_outcome(make, tmp_path)
    assert (scene.outcome, tile.outcome, raised.outcome) == (outcome, outcome, outcome), (what, scene.message)
    if outcome == "deferred":  # the time to try again goes through every path
        assert scene.retry_at == tile.retry_at == raised.retry_at == 1_900_000_000.0
    else:
        assert scene.retry_at is tile.retry_at is raised.retry_at is None


@pytest.mark.parametrize("what, make, outcome", CASES, ids=[c[0] for c in CASES])
def test_the_classification_function_gives_the_outcome_of_each_failure(what, make, outcome):
    from ingester.failures import classify

    assert classify(make()).outcome == outcome


def test_a_failure_message_names_what_happened():
    from ingester.failures import classify

    assert classify(Unavailable("cdse: 503 after 3 requests")).message == "cdse: 503 after 3 requests"
    assert classify(PermissionError(errno.EACCES, "Permission denied", "/s/x")).message == \
        "PermissionError: Permission denied: /s/x"
    assert classify(TimeoutError("timed out")).message == "TimeoutError: timed out"
    bug = classify(raised_from(KeyError("k"), RuntimeError("bug")))
    assert bug.message.startswith("unexpected RuntimeError: bug at ") and "test_failures.py" in bug.message
