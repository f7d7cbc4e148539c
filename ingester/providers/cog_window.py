"""The AOI's window of a Cloud-Optimized GeoTIFF, read with HTTP range requests through GDAL.

A COG is tiled: GDAL reads its header (the tile index) and then only the tiles a window touches, each
with a range request (`/vsicurl/` for http(s), `/vsis3/` for s3). `plan_window` turns the AOI's
bounds (WGS84) into a pixel window of the asset: buffered by a margin, then widened to whole tiles of
the COG's own grid, so that every tile fetched is used whole, and clipped to the raster. `extract`
copies those pixels, unchanged, into a local COG with the window's georeferencing and the asset's
CRS, data type, nodata, scale/offset and band descriptions; `check_extract` verifies what a partial
read can be checked against (the grid, the data type, nodata, the COG structure).

The reads go through GDAL's HTTP client configured by `gdal_options`: 429 and 5xx answers retried
(GDAL_HTTP_MAX_RETRY/GDAL_HTTP_RETRY_DELAY/GDAL_HTTP_RETRY_CODES from the ingester's HTTP settings),
no directory listing (no sibling .ovr/.aux.xml/.msk probes), nothing kept in GDAL's process-wide cache
once the file is closed (a later attempt really reads again).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any

from ingester.errors import DownloadError

GDAL_RETRY_CODES = "429,500,502,503,504"
METRES_PER_DEGREE = 111_320.0  # for a margin around an asset in a geographic CRS


@dataclasses.dataclass(frozen=True)
class Window:
    """A window of an asset, in whole tiles of its grid (clipped at the raster's right and bottom)."""

    col_off: int
    row_off: int
    width: int
    height: int
    asset_width: int
    asset_height: int
    block: tuple[int, int]  # (width, height) of the COG's tiles
    crs: str
    transform: tuple[float, float, float, float, float, float]  # of the window: a, b, c, d, e, f
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in the asset's CRS
    bbox: tuple[float, float, float, float]  # west, south, east, north (WGS84)

    @property
    def share(self) -> float:
        """The window's share of the asset's pixels."""
        return self.width * self.height / (self.asset_width * self.asset_height)

    def as_dict(self) -> dict[str, Any]:
        return {"col_off": self.col_off, "row_off": self.row_off, "width": self.width, "height": self.height,
                "asset_shape": [self.asset_height, self.asset_width], "block": list(self.block), "crs": self.crs,
                "transform": list(self.transform), "bounds": list(self.bounds), "bbox": list(self.bbox),
                "share": round(self.share, 6)}


def aoi_bbox(aoi: Any, footprint_wkt: str) -> list[float] | None:
    """WGS84 bounds of the part of the AOI inside a scene's footprint (the AOI's when the footprint
    cannot be read or does not meet it); None for an empty AOI. What `stac-assets` reads of the scene."""
    from ingester.geometry import GeometryError, from_wkt

    if aoi is None or aoi.is_empty:
        return None
    part = aoi
    try:
        footprint = from_wkt(footprint_wkt) if footprint_wkt else None
        if footprint is not None and footprint.is_valid and not footprint.is_empty:
            inside = aoi.intersection(footprint)
            if not inside.is_empty:
                part = inside
    except (GeometryError, ValueError, Exception):  # noqa: BLE001 - a broken footprint: the AOI's own bounds
        part = aoi
    return [round(float(v), 7) for v in part.bounds]


def valid_bbox(value: Any) -> tuple[float, float, float, float] | None:
    """A WGS84 (west, south, east, north) read from scene metadata, or None when it is not one."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        west, south, east, north = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        return None
    return west, south, east, north


_QUERY = re.compile(r"\?[^\s'\"]*")
_RASTERIO_LOGGERS = ("rasterio", "rasterio._env", "rasterio._base", "rasterio._io", "rasterio.env",
                     "rasterio._err", "rasterio._filepath")


class _RedactQueries(logging.Filter):
    """Query strings (SAS tokens, pre-signed signatures) out of what rasterio logs from GDAL: GDAL's
    warnings name the URL it retries, and rasterio logs dataset names."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is left as it is
            return True
        if "?" in text:
            record.msg, record.args = _QUERY.sub("?…", text), ()
        return True


def redact_gdal_logs() -> None:
    """Install the query-redacting filter on rasterio's loggers (once per process)."""
    for name in _RASTERIO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQueries) for f in logger.filters):
            logger.addFilter(_RedactQueries())


def gdal_options(settings: Any, url: str | None = None) -> dict[str, str]:
    """GDAL configuration for reading a remote COG (see the module docstring). An http(s) URL gets the
    proxy that `requests` would use for it (HTTP_PROXY/HTTPS_PROXY/NO_PROXY), as the provider's own
    transfers do: libcurl would not read the upper-case HTTP_PROXY by itself."""
    from ingester.http.session import USER_AGENT

    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/:/vsis3/",
        "GDAL_HTTP_MAX_RETRY": str(int(settings.http_retries)),
        "GDAL_HTTP_RETRY_DELAY": f"{max(float(settings.http_backoff), 0.001):g}",
        "GDAL_HTTP_RETRY_CODES": GDAL_RETRY_CODES,
        "GDAL_HTTP_TIMEOUT": str(max(1, round(float(settings.http_timeout)))),
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_USERAGENT": USER_AGENT,
        "GDAL_PAM_ENABLED": "NO",
        "VSI_CACHE": "FALSE",
        "CPL_DEBUG": "OFF",
    }
    if url and url.lower().startswith(("http://", "https://")):
        from requests.utils import get_environ_proxies

        proxies = get_environ_proxies(url)
        proxy = proxies.get(url.split(":", 1)[0].lower()) or proxies.get("all")
        if proxy:
            options["GDAL_HTTP_PROXY"] = proxy
    return options


_SESSION_CLASS: Any = None


def credential_session(options: dict[str, str]) -> Any:
    """A rasterio session handing GDAL the AWS options it is given (credentials resolved by botocore, as
    the provider's own S3 reads do). rasterio refuses AWS credentials among plain `Env` options, and its
    AWSSession needs boto3, which the ingester does not depend on. (Built on first use: importing
    rasterio costs start-up time.)"""
    global _SESSION_CLASS
    if _SESSION_CLASS is None:
        from rasterio.session import Session

        class CredentialOptions(Session):
            def __init__(self, options: dict[str, str]):
                self._session = None
                self.credentials = dict(options)

            @classmethod
            def hascreds(cls, config: dict) -> bool:
                return "AWS_ACCESS_KEY_ID" in config and "AWS_SECRET_ACCESS_KEY" in config

            def get_credential_options(self) -> dict[str, str]:
                return dict(self.credentials)

            def __repr__(self) -> str:  # never the keys
                return f"<CredentialOptions {sorted(self.credentials)}>"

        _SESSION_CLASS = CredentialOptions
    return _SESSION_CLASS(options)


def _margin_in_crs_units(crs: Any, metres: float) -> float:
    if not metres:
        return 0.0
    if crs.is_geographic:
        return metres / METRES_PER_DEGREE
    try:
        _name, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - a CRS without a linear unit: assume metres
        factor = 1.0
    return metres / (factor or 1.0)


def plan_window(src: Any, bbox: tuple[float, float, float, float], margin: float,
                max_share: float) -> tuple[Window | None, str]:
    """(the window of `bbox` in the open dataset `src`, "") or (None, why the whole asset is read)."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import from_bounds

    if src.driver != "GTiff":
        return None, f"not a GeoTIFF (GDAL driver {src.driver})"
    if src.crs is None:
        return None, "the GeoTIFF has no CRS"
    t = src.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        return None, "the GeoTIFF's grid is not north-up"
    shapes = set(src.block_shapes)
    if len(shapes) != 1 or len(set(src.dtypes)) != 1:
        return None, "the GeoTIFF's bands differ in tiling or data type"
    bh, bw = shapes.pop()
    if bw >= src.width and bh >= src.height:
        return None, "the whole raster is one tile"
    if not src.profile.get("tiled") or bw >= src.width:
        return None, "the GeoTIFF is not tiled (strips)"
    left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, *bbox, densify_pts=21)
    m = _margin_in_crs_units(src.crs, margin)
    win = from_bounds(left - m, bottom - m, right + m, top + m, transform=t)
    eps = 1e-6
    col0 = max(0, math.floor(win.col_off / bw + eps) * bw)
    col1 = min(src.width, math.ceil((win.col_off + win.width) / bw - eps) * bw)
    row0 = max(0, math.floor(win.row_off / bh + eps) * bh)
    row1 = min(src.height, math.ceil((win.row_off + win.height) / bh - eps) * bh)
    if col1 <= col0 or row1 <= row0:
        return None, "the AOI is outside the asset's raster"
    from rasterio.windows import Window as RasterWindow

    rw = RasterWindow(col0, row0, col1 - col0, row1 - row0)
    wt = src.window_transform(rw)
    box = window_bounds(rw, t)
    epsg = src.crs.to_epsg()
    window = Window(col0, row0, col1 - col0, row1 - row0, src.width, src.height, (bw, bh),
                    f"EPSG:{epsg}" if epsg else src.crs.to_wkt(), tuple(wt)[:6],  # type: ignore[arg-type]
                    tuple(box),  # type: ignore[arg-type]
                    tuple(round(v, 7) for v in transform_bounds(src.crs, "EPSG:4326", *box,  # type: ignore[arg-type]
                                                                densify_pts=21)))
    if window.share > max_share:
        return None, (f"the AOI's window is {window.share:.0%} of the asset's pixels, more than "
                      f"INGESTER_STAC_WINDOW_MAX_SHARE ({max_share:g})")
    return window, ""


def extract(src: Any, window: Window, dest: Path) -> None:
    """Copy the window's pixels into a local COG `dest` (through `dest`.part files): read one row of
    tiles at a time (bounded memory; GDAL fetches the tiles of a row with parallel range requests),
    written to a tiled GeoTIFF, then laid out as a COG (overviews by nearest neighbour: no new value)."""
    import numpy as np
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.windows import Window as RasterWindow

    bw, bh = window.block
    dtype = src.dtypes[0]
    integer = np.issubdtype(np.dtype(dtype), np.integer)
    profile = {"driver": "GTiff", "width": window.width, "height": window.height, "count": src.count,
               "dtype": dtype, "crs": src.crs, "transform": Affine(*window.transform), "nodata": src.nodata,
               "tiled": True, "blockxsize": bw, "blockysize": bh, "compress": "deflate",
               "predictor": 2 if integer else 3, "bigtiff": "if_safer",
               "interleave": "pixel" if src.count > 1 and src.interleaving
               and src.interleaving.name.upper() == "PIXEL" else "band"}
    if dtype in ("int8", "complex64", "complex128", "complex_int16"):
        profile.pop("predictor")
    staged = dest.with_name(f".{dest.name}.tiles.part")
    part = dest.with_name(f".{dest.name}.part")
    try:
        with rasterio.open(staged, "w", **profile) as out:
            for row in range(0, window.height, bh):
                rows = min(bh, window.height - row)
                data = src.read(window=RasterWindow(window.col_off, window.row_off + row, window.width, rows))
                out.write(data, window=RasterWindow(0, row, window.width, rows))
            out.scales = src.scales
            out.offsets = src.offsets
            for i, text in enumerate(src.descriptions, start=1):
                if text:
                    out.set_band_description(i, text)
            units = [u or "" for u in src.units]
            if any(units):
                out.units = units
            if src.count in (3, 4):
                out.colorinterp = src.colorinterp
            tags = src.tags()
            if tags:
                out.update_tags(**tags)
            for i in range(1, src.count + 1):
                band_tags = src.tags(i)
                if band_tags:
                    out.update_tags(i, **band_tags)
        blocksize = bw if bw == bh and bw % 16 == 0 else 512
        rasterio.shutil.copy(staged, part, driver="COG", BLOCKSIZE=str(blocksize), COMPRESS="DEFLATE",
                             PREDICTOR="YES" if "predictor" in profile else "NO", OVERVIEWS="AUTO",
                             RESAMPLING="NEAREST", BIGTIFF="IF_SAFER")
        part.replace(dest)
    finally:
        staged.unlink(missing_ok=True)
        part.unlink(missing_ok=True)


def check_extract(path: Path, window: Window, src_profile: dict[str, Any]) -> None:
    """DownloadError unless `path` is a valid COG with the window's shape and transform and the
    asset's CRS, band count, data type and nodata."""
    import rasterio
    from affine import Affine
    from rio_cogeo.cogeo import cog_validate

    problems: list[str] = []
    with rasterio.open(path) as out:
        if (out.width, out.height) != (window.width, window.height):
            problems.append(f"shape {out.width}×{out.height}, the window is {window.width}×{window.height}")
        if not out.transform.almost_equals(Affine(*window.transform), precision=1e-9):
            problems.append(f"transform {tuple(out.transform)[:6]}, the window's is {window.transform}")
        if out.crs != src_profile["crs"]:
            problems.append(f"CRS {out.crs}, the asset's is {src_profile['crs']}")
        if out.count != src_profile["count"] or out.dtypes[0] != src_profile["dtype"]:
            problems.append(f"{out.count} band(s) of {out.dtypes[0]}, the asset has {src_profile['count']} of "
                            f"{src_profile['dtype']}")
        if not _same_nodata(out.nodata, src_profile.get("nodata")):
            problems.append(f"nodata {out.nodata}, the asset's is {src_profile.get('nodata')}")
    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid:
        problems.append("not a valid COG (" + "; ".join(errors) + ")")
    if problems:
        raise DownloadError(f"{path.name}: the window extract does not match the asset: {'; '.join(problems)}")


def _same_nodata(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (math.isnan(a) and math.isnan(b)) or a == b


__all__ = ["Window", "aoi_bbox", "valid_bbox", "gdal_options", "plan_window", "extract", "check_extract",
           "credential_session", "redact_gdal_logs"]
