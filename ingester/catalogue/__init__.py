"""Catalogues: one module per catalogue behind one interface, `search(payload, settings, page, limit)`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ingester.scenes import Scene

if TYPE_CHECKING:
    from collections.abc import Sequence

    from shapely.geometry.base import BaseGeometry

    from ingester.config import Settings
    from ingester.payload import Payload


@dataclasses.dataclass
class SearchResult:
    scenes: list[Scene]
    next: bool  # more scenes exist beyond this page
    pages: int = 0  # provider pages fetched
    requests: int = 0  # HTTP requests sent
    catalogue: str = ""  # which catalogue answered
    rows: int = 0  # catalogue rows examined (before client-side checks and de-duplication)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason → products set aside
    filters: dict[str, str] = dataclasses.field(default_factory=dict)  # catalogue parameters applied (defaults too)


SUPPORTED = ("sentinel1", "sentinel2", "landsat89", "phr", "spot")
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


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None) -> SearchResult:
    """The payload's scenes: acquisitions page·limit … page·limit+limit−1 of the ordered catalogue
    result, reprocessed copies counted once (limit 0: all of them). `page`/`limit` default to the
    payload's. Raises InputError for a constellation without a catalogue, CatalogueError when the
    catalogue fails.

    An empty answer for an AOI larger than a hemisphere is warned about: catalogues that read the
    area as a geography may take such a polygon for its complement, or refuse it silently."""
    result = _search(payload, settings, page, limit)
    if not result.scenes and not page:
        import warnings

        from ingester.errors import CatalogueWarning
        from ingester.geometry import earth_fraction

        share = earth_fraction(payload.aoi)
        if share > 0.5:
            warnings.warn(f"{payload.path}: the AOI covers more than a hemisphere ({share:.0%} of the Earth) and the "
                          f"{result.catalogue or 'catalogue'} search found nothing; some catalogues cannot search an "
                          "area that large: split the AOI into smaller polygons (a MultiPolygon) and search again",
                          CatalogueWarning, stacklevel=2)
    return result


def _search(payload: Payload, settings: Settings, page: int | None, limit: int | None) -> SearchResult:
    from ingester.errors import InputError

    if settings.cdse_page_size < 1 or settings.cdse_page_size > 1000:
        from ingester.errors import ConfigError

        raise ConfigError(f"cdse_page_size must be 1 … 1000, got {settings.cdse_page_size}")
    if payload.catalogue:  # any STAC API, named by the payload
        from ingester.catalogue import stac

        return stac.search(payload, settings, page, limit)
    if payload.constellation == "landsat89":
        from ingester.catalogue import landsat

        return landsat.search(payload, settings, page, limit)
    if payload.constellation in ("phr", "spot"):
        from ingester.catalogue import oneatlas

        return oneatlas.search(payload, settings, page, limit)
    if payload.constellation in SUPPORTED:
        from ingester.catalogue import cdse

        return cdse.search(payload, settings, page, limit)
    raise InputError(
        f"{payload.path}: field 'scene_type.constellation': no catalogue is configured for "
        f"{payload.constellation!r} in this version (supported: {', '.join(SUPPORTED)}; any constellation can "
        "name a STAC API with 'scene_type.catalogue')"
    )
