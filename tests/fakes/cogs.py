"""GeoTIFF assets made of real Sentinel-2 pixels (the B01 band of tests/data/s2, 1830 × 1830, +1000 as in
products of baseline ≥ 04.00), laid on the real 60 m grid of tile T32UNG, the tile of the Denmark
payloads: Earth Search's COG assets in small (deflate, predictor 2, internal overviews).

The excerpt has no data beyond its orbit's edge (the upper-right 40 %, a diagonal); `textured` fills
that part with the valid pixels of the same row, mirrored, so that every window holds real texture
(a window of constant values would compress to nothing and prove little)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

JP2 = (Path(__file__).resolve().parent.parent / "data" / "s2" /
       "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE" / "GRANULE" /
       "L1C_T31TDH_A013204_20180101T105435" / "IMG_DATA" / "T31TDH_20180101T105441_B01.jp2")
T32UNG = from_origin(499980, 6200040, 60, 60)  # upper-left corner of MGRS tile 32UNG, 60 m pixels
CRS = "EPSG:32632"


def textured(data: np.ndarray) -> np.ndarray:
    """A band whose no-data (0) lies right of an edge, each row's valid pixels mirrored into it."""
    out = data.copy()
    cols = np.arange(data.shape[1])
    for row in range(data.shape[0]):
        valid = np.flatnonzero(data[row])
        k = int(valid[-1]) + 1 if valid.size else 0
        if 0 < k < data.shape[1]:
            m = cols % (2 * k)
            out[row] = data[row, np.where(m < k, m, 2 * k - 1 - m)]
    return out


@functools.lru_cache(maxsize=1)
def b01() -> np.ndarray:
    """The excerpt's B01 digital numbers, no-data filled (`textured`); read-only."""
    import rasterio

    with rasterio.open(JP2) as src:
        data = textured(src.read(1))
    data.setflags(write=False)
    return data


@functools.lru_cache(maxsize=1)
def _pixels() -> np.ndarray:
    return b01() + 1000


def real_pixels() -> np.ndarray:
    """1830 × 1830 uint16 (a copy: callers may change it)."""
    return _pixels().copy()


def cog_bytes(data: np.ndarray | None = None, *, block: int = 256, nodata: float | None = 0, transform=T32UNG,
              crs: str = CRS) -> bytes:
    """A COG (GDAL's COG driver: tiled, deflate + predictor, overviews) of one band."""
    from rasterio.io import MemoryFile

    data = real_pixels() if data is None else data
    with MemoryFile() as mem:
        with mem.open(driver="COG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                      crs=crs, transform=transform, nodata=nodata, BLOCKSIZE=block, COMPRESS="DEFLATE",
                      PREDICTOR="YES") as dst:
            dst.write(data, 1)
        return mem.read()


def striped_tiff_bytes(data: np.ndarray | None = None, *, nodata: float | None = 0, transform=T32UNG) -> bytes:
    """A plain GeoTIFF in strips (not tiled): a window cannot be read from it tile by tile."""
    from rasterio.io import MemoryFile

    data = real_pixels() if data is None else data
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                      crs=CRS, transform=transform, nodata=nodata, COMPRESS="DEFLATE") as dst:
            dst.write(data, 1)
        return mem.read()
