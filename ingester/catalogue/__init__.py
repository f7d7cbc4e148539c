"""Catalogues: one module per catalogue behind one interface, `search(payload, settings, page, limit)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingester.catalogue.result import SearchResult

__all__ = ["SUPPORTED", "SearchResult", "search"]

if TYPE_CHECKING:
    from ingester.config import Settings
    from ingester.http.clients import Clients
    from ingester.payload import Payload


SUPPORTED = ("sentinel1", "sentinel2", "landsat89", "phr", "spot")


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None,
           clients: Clients | None = None) -> SearchResult:
    """The payload's scenes: acquisitions page·limit … page·limit+limit−1 of the ordered catalogue
    result, reprocessed copies counted once (limit 0: all of them). `page`/`limit` default to the
    payload's. Raises InputError for a constellation without a catalogue, CatalogueError when the
    catalogue fails. `clients`: the command's HTTP clients (a catalogue that needs a login uses theirs).

    An empty answer for an AOI larger than a hemisphere is warned about: catalogues that read the
    area as a geography may take such a polygon for its complement, or refuse it silently."""
    result = _search(payload, settings, page, limit, clients)
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


def _search(payload: Payload, settings: Settings, page: int | None, limit: int | None,
            clients: Clients | None = None) -> SearchResult:
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

        return oneatlas.search(payload, settings, page, limit, clients=clients)
    if payload.constellation in SUPPORTED:
        from ingester.catalogue import cdse

        return cdse.search(payload, settings, page, limit)
    raise InputError(
        f"{payload.path}: field 'scene_type.constellation': no catalogue is configured for "
        f"{payload.constellation!r} in this version (supported: {', '.join(SUPPORTED)}; any constellation can "
        "name a STAC API with 'scene_type.catalogue')"
    )
