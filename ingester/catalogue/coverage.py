"""What every catalogue does with the scenes it keeps: the share of the AOI each covers, and the payload's
`min_coverage` filter (docs/catalogues.md, "Coverage of the AOI")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ingester.payload import Payload
    from ingester.scenes import Scene

BELOW_MIN_COVERAGE = "below min_coverage"  # the `dropped` reason of scenes covering too little of the AOI


def cover_scenes(scenes: Sequence[Scene], payload: Payload,
                 footprints: Sequence[BaseGeometry | None] | None = None) -> tuple[list[Scene], int]:
    """What every catalogue does with the scenes that passed its exact-AOI check: tag each with the share
    of the AOI its footprint covers (`aoiCoverage`, 0…1 with 4 decimals, measured on the WGS84 ellipsoid:
    `ingester.geodesy.coverage`), and keep those covering at least the payload's `min_coverage`.

    `footprints` are the scenes' parsed footprints when the catalogue has them (else each `wkt` is
    parsed). Returns (the kept scenes in their order, how many fell below `min_coverage`). A payload
    `record_tags` entry `aoiCoverage` must agree, like any catalogue tag."""
    from ingester.errors import PayloadError
    from ingester.geodesy import COVERAGE_TAG, tag_coverage

    shares = tag_coverage(scenes, payload.aoi, footprints)
    wanted = payload.record_tags.get(COVERAGE_TAG)
    kept: list[Scene] = []
    below = 0
    for scene, share in zip(scenes, shares, strict=True):
        if wanted is not None and scene.tags.get(COVERAGE_TAG, wanted) != wanted:
            raise PayloadError(f"{payload.path}: field 'record_tags.{COVERAGE_TAG}': {wanted!r} conflicts with scene "
                               f"{scene.source_id!r}, whose catalogue tag {COVERAGE_TAG!r} is "
                               f"{scene.tags[COVERAGE_TAG]!r}")
        if share is not None and share < payload.min_coverage:
            below += 1
            continue
        kept.append(scene)
    return kept, below
