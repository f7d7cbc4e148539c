"""Workers for the Dask back-end's tests (selected by import path; they run on Dask worker processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ingester.config import SECRET_FIELDS, Settings
from ingester.job_context import current
from ingester.jobs import JobResult, SceneJob, TileJob
from ingester.providers.slots import slot


def secrets_seen(job: SceneJob | TileJob, settings: Settings) -> JobResult:
    """Which secrets the worker holds, and whether each is the one of its own environment (never the values)."""
    seen = {name: {"set": bool(getattr(settings, name)),
                   "own": getattr(settings, name) == os.environ.get(f"INGESTER_{name.upper()}", "")}
            for name in sorted(SECRET_FIELDS)}
    return JobResult.done(json.dumps(seen))


def fresh_token(job: SceneJob | TileJob, settings: Settings) -> JobResult:
    """Refuses the CDSE token the job carries and asks the coordinator for a fresh one."""
    tokens = current().tokens
    holder = tokens.holder("cdse") if tokens is not None else None
    assert holder is not None
    first = holder.access_token()
    holder.invalidate()
    return JobResult.done(json.dumps({"first": first, "fresh": holder.access_token()}))


def hold_download_slot(job: SceneJob | TileJob, settings: Settings) -> JobResult:
    """Holds one of $FAKE_SLOT_LIMIT CDSE download slots for $FAKE_WORKER_SLEEP seconds. The slot folder
    is the job's own (as on machines that share no disk): only a cluster-wide cap makes them wait."""
    limit = int(os.environ.get("FAKE_SLOT_LIMIT", "1"))
    with slot(Path(job.workdir) / ".slots" / "cdse", limit):
        start = time.time()
        time.sleep(float(os.environ.get("FAKE_WORKER_SLEEP", "0.5")))
        end = time.time()
    return JobResult.done(json.dumps([start, end]))
