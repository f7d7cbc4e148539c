"""Test workers, selected by import path (`--scene-worker tests.fakes.workers:succeed`, or the
INGESTER_SCENE_WORKER / INGESTER_TILE_WORKER settings). They run in real worker processes.

Every worker writes a marker file per execution in $FAKE_WORKER_MARKERS (when set), named
`<kind>-<job id>-<attempt>-<pid>-<n>`, so tests count executions without trusting the store.
`scripted` reads $FAKE_WORKER_SCRIPT: a JSON object `source id → [outcome, …]`, one per attempt
(the last one repeats); an outcome is done/temporary/fatal/error/deferred/crash/raise; unlisted jobs
succeed. `deferred` (and the `defer` worker) asks to be tried again in $FAKE_WORKER_DEFER seconds (3600).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from pathlib import Path

from ingester.jobs import IndexedOutput, JobResult, SceneJob, TileJob

_counter = itertools.count()


def _name(job: SceneJob | TileJob) -> tuple[str, str]:
    if isinstance(job, TileJob):
        return "tile", f"{job.scene.source_id}/{job.tile.source_id}"
    return "scene", job.scene.source_id


def _mark(job: SceneJob | TileJob, outcome: str) -> None:
    folder = os.environ.get("FAKE_WORKER_MARKERS")
    if not folder:
        return
    kind, name = _name(job)
    path = Path(folder) / f"{kind}-{job.job_id}-{job.attempt}-{os.getpid()}-{next(_counter)}"
    tmp = path.with_name(path.name + ".tmp")  # a kill -9 between write and rename leaves no half marker
    tmp.write_text(json.dumps({"name": name, "outcome": outcome}))
    tmp.rename(path)


def _outputs(job: SceneJob | TileJob) -> tuple[IndexedOutput, ...]:
    layers = os.environ.get("FAKE_WORKER_LAYERS", "")
    if not isinstance(job, TileJob) or not layers:
        return ()
    return tuple(IndexedOutput(layer=layer, uri=f"{job.storage_uri}/{job.aoi}/{job.tile.source_id}_{layer}.tif",
                               tile_source_id=job.tile.source_id, dtype="uint16", max_value=10000.0)
                 for layer in layers.split(","))


def succeed(job: SceneJob | TileJob, settings: object) -> JobResult:
    delay = float(os.environ.get("FAKE_WORKER_SLEEP", "0") or 0)
    if delay:
        time.sleep(delay)
    _mark(job, "done")
    return JobResult.done("ok", outputs=_outputs(job))


def noop(job: SceneJob | TileJob, settings: object) -> JobResult:
    """No marker, no sleep: the benchmark's worker."""
    return JobResult("done")


def fail(job: SceneJob | TileJob, settings: object) -> JobResult:
    _mark(job, "error")
    return JobResult("error", f"ERROR: cannot process {_name(job)[1]}")


def fatal(job: SceneJob | TileJob, settings: object) -> JobResult:
    _mark(job, "fatal")
    return JobResult("fatal", "FATAL ERROR: corrupt product")


def temporary(job: SceneJob | TileJob, settings: object) -> JobResult:
    _mark(job, "temporary")
    return JobResult("temporary", "503 Service Unavailable")


def _defer_seconds() -> float:
    return float(os.environ.get("FAKE_WORKER_DEFER", "3600") or 3600)


def defer(job: SceneJob | TileJob, settings: object) -> JobResult:
    """Waits for something outside (an offline product, an order): try again in $FAKE_WORKER_DEFER s."""
    _mark(job, "deferred")
    return JobResult.deferred(f"waiting for {_name(job)[1]}", time.time() + _defer_seconds())


def crash(job: SceneJob | TileJob, settings: object) -> JobResult:
    _mark(job, "crash")
    os._exit(17)


def sleep(job: SceneJob | TileJob, settings: object) -> JobResult:
    time.sleep(float(os.environ.get("FAKE_WORKER_SLEEP", "0.2") or 0.2))
    _mark(job, "done")
    return JobResult.done("slept")


def bad_output(job: SceneJob | TileJob, settings: object) -> JobResult:
    """A tile output the store cannot record: $FAKE_WORKER_BAD_OUTPUT is `min_none` (min_value None, a
    NOT NULL column) or `extra` (a set in `extra`, not JSON)."""
    _mark(job, "done")
    if not isinstance(job, TileJob):
        return JobResult.done("ok")
    (good,) = _outputs(job)[:1]
    bad = (dataclasses.replace(good, min_value=None) if os.environ["FAKE_WORKER_BAD_OUTPUT"] == "min_none"
           else dataclasses.replace(good, extra={"bands": {1, 2}}))
    return JobResult.done("ok", outputs=(bad,))


def gate(job: SceneJob | TileJob, settings: object) -> JobResult:
    """Runs until the file $FAKE_WORKER_GATE exists (at most 300 s): a run that lasts as long as a test
    needs, whatever the machine's load."""
    gate_file = Path(os.environ["FAKE_WORKER_GATE"])
    if os.environ.get("FAKE_WORKER_PIDS"):
        (Path(os.environ["FAKE_WORKER_PIDS"]) / str(os.getpid())).touch()
    deadline = time.monotonic() + 300
    while not gate_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _mark(job, "done")
    return JobResult.done("gate opened")


def scripted(job: SceneJob | TileJob, settings: object) -> JobResult:
    script = json.loads(Path(os.environ["FAKE_WORKER_SCRIPT"]).read_text())
    kind, name = _name(job)
    key = name if name in script else (job.tile.source_id if isinstance(job, TileJob) else name)
    plan = script.get(key) or ["done"]
    outcome = plan[min(job.attempt, len(plan)) - 1]
    if outcome == "crash":
        _mark(job, "crash")
        os._exit(17)
    if outcome == "raise":
        _mark(job, "raise")
        raise RuntimeError(f"bug in the worker for {name}")
    _mark(job, outcome)
    if outcome == "done":
        return JobResult.done("ok", outputs=_outputs(job))
    if outcome == "deferred":
        return JobResult.deferred(f"deferred for {kind} {name} (attempt {job.attempt})", time.time() + _defer_seconds())
    return JobResult(outcome, f"{outcome} for {kind} {name} (attempt {job.attempt})")


def report_progress(job: SceneJob | TileJob, settings: object) -> JobResult:
    """A download's progress as a real transfer reports it (start, 3 × 1000 bytes, finish), through
    the progress the worker process was given; says whether it had one."""
    from ingester.providers.progress import default_progress

    progress = default_progress()
    if progress is None:
        return JobResult.done("no progress display")
    progress.start(f"{_name(job)[1]}.zip", 3000, 0)
    for _ in range(3):
        time.sleep(0.3)  # slower than the display's refresh: every chunk is seen
        progress.advance(1000)
    progress.finish()
    _mark(job, "done")
    return JobResult.done(f"progress sent by {type(progress).__name__}")
