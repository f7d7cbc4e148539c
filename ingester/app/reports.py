"""What the application layer's calls return: typed reports that the command line only renders (text,
or `--json` through each report's `to_json`). The run's own report is `coordinator.RunReport`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # models load only with the commands that need them
    from ingester.integrity import Problem
    from ingester.preflight import Report, Work
    from ingester.scene_ops import Refreshed, Removed
    from ingester.store import SceneRow, TileRow


@dataclasses.dataclass(frozen=True)
class IngestReport:
    """`ingester aoi`, ingestion: what was written (the run follows)."""

    aoi: str
    source: str  # "tiles file", "scenes file", "catalogue"
    scenes: int
    tiles: int
    records_created: int
    records_reused: int
    skipped: list[tuple[str, str]]  # (scene id, why)

    def to_json(self) -> dict[str, Any]:
        return {"scenes": self.scenes, "tiles": self.tiles, "skipped": len(self.skipped),
                "records_created": self.records_created, "records_reused": self.records_reused}


@dataclasses.dataclass(frozen=True)
class OrderApproval:
    """`ingester aoi --order`: what the ingestion may order, priced before anything is written."""

    source: str  # who allowed it: "--order" or "the payload"
    estimate: str  # the estimate, as text (products, price, unit)
    max_cost: float | None  # the budget, if any


@dataclasses.dataclass(frozen=True)
class DryRunReport:
    """`ingester aoi --dry-run`: what would be ingested, downloaded and processed, and the checks."""

    source: str
    scenes: int
    tiles: int
    skipped: list[tuple[str, str]]
    work: Work
    checks: Report

    @property
    def graphs(self) -> list[str]:
        return sorted({name for (name, _scene) in self.work.graphs})

    def to_json(self) -> dict[str, Any]:
        total, unknown = self.work.announced
        return {"dry_run": True, "ingest": {"scenes": self.scenes, "tiles": self.tiles, "skipped": len(self.skipped),
                                            "source": self.source},
                "download": {"products": len(self.work.downloads), "bytes": total, "without_size": unknown},
                "process": {"scene_jobs": self.work.scene_jobs, "tile_jobs": self.work.tile_jobs,
                            "graphs": self.graphs},
                "checks": self.checks.to_json(), "exit_code": self.checks.exit_code}


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """`ingester check`: the pre-flight checks alone."""

    payload: str
    aoi: str
    checks: Report

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks.failed]

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "aoi": self.aoi, "checks": self.checks.to_json(), "ok": not self.failed,
                "exit_code": self.checks.exit_code}


@dataclasses.dataclass(frozen=True)
class RetryReport:
    """`ingester retry`, before its run: what was brought back. `target` is None for the whole AOI."""

    aoi: str
    kind: str | None
    job_id: int | None
    force: bool
    made_due: int = 0  # PENDING jobs waiting for a later try, made due now
    revived: int = 0  # --force: jobs brought back (a scene with its tiles)
    retried: int = 0  # RETRY → PENDING


@dataclasses.dataclass(frozen=True)
class FailReport:
    aoi: str
    kind: str
    row: SceneRow | TileRow  # the job after the change

    def to_json(self) -> dict[str, Any]:
        return {"aoi": self.aoi, "kind": self.kind, **self.row.to_json()}


@dataclasses.dataclass(frozen=True)
class RefreshReport:
    aoi: str
    result: Refreshed

    def to_json(self) -> dict[str, Any]:
        return {"aoi": self.aoi, **self.result.to_json()}


@dataclasses.dataclass(frozen=True)
class RemoveReport:
    aoi: str
    result: Removed

    def to_json(self) -> dict[str, Any]:
        return {"aoi": self.aoi, **self.result.to_json()}


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    aoi: str
    checked: dict[str, int]  # products, datasets
    problems: list[Problem]
    reset: dict[str, list[str]]  # scenes, tiles set back (source ids)

    def to_json(self) -> dict[str, Any]:
        return {"aoi": self.aoi, "checked": self.checked, "problems": [p.to_json() for p in self.problems],
                "reset": self.reset}


@dataclasses.dataclass(frozen=True)
class TilesReport:
    """`ingester tiles`: the tiles file written."""

    output: str
    scenes: int
    tiles: int
    chained: int  # tiles chained to a previous acquisition
    skipped: list[tuple[str, str]]  # scenes without tiles (scene id, why)
    without_annotation: int  # of those, the scenes no annotation source had
    in_store: bool  # the store holds scenes of the AOI: those of the input are left out
    left_out: int  # scenes already in the AOI, left out
    existing_tiles: int  # the AOI's tiles the new bursts chain onto


@dataclasses.dataclass(frozen=True)
class History:
    """`ingester history`: every attempt of one job."""

    aoi: str
    kind: str
    job_id: int
    attempts: list[dict[str, Any]]  # AttemptRow fields, plus `result` (outcome → status) and `duration_s`

    def to_json(self) -> dict[str, Any]:
        return {"aoi": self.aoi, "kind": self.kind, "id": self.job_id, "attempts": self.attempts}
