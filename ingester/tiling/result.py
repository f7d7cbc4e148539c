"""What the tile inventory returns (shared by the package and its burst inventory)."""

from __future__ import annotations

import dataclasses

from ingester.scenes import Scene


@dataclasses.dataclass
class TilingResult:
    scenes: list[Scene]  # scenes that have at least one tile, tiles filled and chained
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (scene id, reason)


NO_ANNOTATION = "no annotation found"  # the start of a skip reason: no annotation source had the scene
