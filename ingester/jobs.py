"""The worker interface: job descriptions the coordinator sends, and the result a worker returns.

Workers are pure functions `worker(job, settings) -> JobResult`: they never open the SQLite store;
the coordinator writes their result in one transaction. Descriptions and results are plain
picklable dataclasses, so the same worker runs in a local process pool or on a Dask cluster.

The worker reports *what happened* (`outcome`); the workflow decides the status from it and the
job's `is_retriable` flag (docs/workflow.md, "Job outcomes"):

| outcome     | meaning                                           | status                          |
|-------------|---------------------------------------------------|---------------------------------|
| `done`      | success                                           | DONE                            |
| `temporary` | may pass by itself (network, 429, offline, …)     | re-queued with backoff          |
| `fatal`     | will never succeed (`FATAL ERROR:` from a step)   | FAILED                          |
| `error`     | anything else                                     | RETRY if is_retriable, else FAILED |
| `deferred`  | waits for something outside (offline product being | PENDING until `retry_at`; no retry |
|             | restored, an order processed): try at `retry_at`  | consumed, bounded by a deadline  |

A deferral is not a failure: it keeps the job's place in the queue with a time to try again
(`retry_at`, epoch seconds), consumes neither the retry budget nor the temporary-failure count, and
is bounded by the total deadline `INGESTER_DEFER_DEADLINE` counted from the job's first deferral
(then it is an `error`). A run does not wait for a deferred job beyond `--max-wait`: it ends with
exit 5 and a later run picks the job up once due.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from ingester.http.tokens import AccessToken
from ingester.payload import Layer
from ingester.scenes import Scene, Tile

Outcome = Literal["done", "temporary", "fatal", "error", "deferred"]


@dataclasses.dataclass(frozen=True)
class SceneJob:
    """Download a scene's product and run the scene graph on each of its tiles."""

    job_id: int  # the store's scene id
    attempt: int
    aoi: str
    scene: Scene  # with its tiles
    storage_uri: str  # resolved: scene.storage_uri or the payload's or the settings' default
    workdir: str  # a folder of this job alone
    graph_dirs: tuple[str, ...] = ()  # where relative graph names are looked up (payload folder, …)
    tokens: dict[str, AccessToken] = dataclasses.field(default_factory=dict)  # service → short-lived token


@dataclasses.dataclass(frozen=True)
class TileJob:
    """Run the tile graph on one tile, with its previous and reference tiles (T0, T1, T2)."""

    job_id: int  # the store's tile id
    attempt: int
    aoi: str
    scene: Scene
    tile: Tile
    previous: Tile | None
    previous_scene: Scene | None
    reference: Tile | None
    reference_scene: Scene | None
    storage_uri: str
    workdir: str
    layers: dict[str, Layer] = dataclasses.field(default_factory=dict)
    graph_config: dict[str, str] = dataclasses.field(default_factory=dict)
    graph_dirs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class IndexedOutput:
    """An out-file with action `to_index`, stored at `uri`, to become a dataset of the scene's record."""

    layer: str
    uri: str
    tile_source_id: str
    bands: tuple[int, ...] = (1,)
    dtype: str = "float32"
    nodata: float = 0.0
    min_value: float = 0.0
    max_value: float = 1.0
    real_min: float = 0.0
    real_max: float = 1.0
    exponent: float = 1.0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class JobResult:
    outcome: Outcome
    message: str = ""
    outputs: tuple[IndexedOutput, ...] = ()
    log_path: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    retry_at: float | None = None  # `deferred`: when to try again (epoch seconds)

    @classmethod
    def done(cls, message: str = "", **kwargs: Any) -> JobResult:
        return cls("done", message, **kwargs)

    @classmethod
    def deferred(cls, message: str, retry_at: float, **kwargs: Any) -> JobResult:
        """Wait for something outside; try again at `retry_at` (epoch seconds)."""
        return cls("deferred", message, retry_at=retry_at, **kwargs)


Worker = Callable[[Any, Any], JobResult]
