"""Landsat 8/9 scenes from the USGS STAC server (docs/catalogues.md, "STAC catalogues").

`constellation: landsat89` (or `landsat`, `landsat-8`, `landsat-9`) searches INGESTER_LANDSAT_STAC_URL
(https://landsatlook.usgs.gov/stac-server): collection `landsat-c2l1` (`producttype` L1, the default)
or `landsat-c2l2-sr` (`producttype` L2), platforms LANDSAT_8 and LANDSAT_9 (or the one of
`platformname` / the constellation alias) and `cloudcoverpercentage` as `eo:cloud_cover`, sent with
the query extension; the AOI as `intersects` and the payload's exact times (the original rounded them
to whole days). Paging, client-side checks and de-duplication are those of `catalogue.stac`:
reprocessings of one acquisition (sensor, WRS path, row, date) keep the newest processing date.

Tags: `sourceID`, `productType` (`LC_C02_L1TP`), `cloudCoverPercentage`, `landCloudCoverPercentage`,
`ingestionDate` (= `datetime`), `sunAzimuth`, `sunElevation`, `constellation` LANDSAT, `satellite`
LANDSAT08/09, `relativeOrbit` (= WRS path), `path`, `row`. Metadata keeps the asset hrefs and the
requester-pays `s3://usgs-landsat/…/<product>/` folder that the `landsat-aws` provider copies.
"""

from __future__ import annotations

from ingester.catalogue.result import SearchResult
from ingester.catalogue.stac import StacQuery, cloud_range, search_stac
from ingester.config import Settings
from ingester.payload import Payload

COLLECTIONS = {"L1": "landsat-c2l1", "L2": "landsat-c2l2-sr"}
PLATFORMS = ("LANDSAT_8", "LANDSAT_9")


def query_of(payload: Payload, settings: Settings) -> StacQuery:
    level = payload.parameters.get("producttype", "L1").upper()
    platform = payload.parameters.get("platformname")
    platforms = (platform.upper(),) if platform else PLATFORMS
    return StacQuery(
        url=settings.landsat_stac_url.rstrip("/"), catalogue="usgs-landsat", collections=(COLLECTIONS[level],),
        start=payload.start_time, end=payload.end_time, cloud_cover=cloud_range(payload), platforms=platforms,
        server_platforms=platforms,
    )


def search(payload: Payload, settings: Settings, page: int | None = None, limit: int | None = None) -> SearchResult:
    level = payload.parameters.get("producttype", "L1").upper()
    return search_stac(payload, settings, query_of(payload, settings), page, limit, {"producttype": level})
