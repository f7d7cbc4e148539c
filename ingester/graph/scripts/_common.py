"""Shared helpers of the graph scripts (run as `python script.py --name=value …` in the work folder)."""

from __future__ import annotations

import sys
from typing import NoReturn

# A step reads and writes the files of its work folder only. When boto3 is installed, rasterio imports it at
# start-up for its AWS sessions: 0.15-0.2 s of every step's 0.3-0.4 s of imports, more than a tenth of a
# small job (bench.process). A None entry makes that import fail, and rasterio carries on without AWS
# sessions (GDAL still reads its own AWS_* settings). A script that imports boto3 itself first keeps it.
sys.modules.setdefault("boto3", None)  # type: ignore[arg-type]

import numpy as np  # noqa: E402

DTYPES = {
    "uint8": "uint8", "byte": "uint8", "u1": "uint8", "int8": "int8", "i1": "int8", "uint16": "uint16", "u2": "uint16",
    "uint32": "uint32", "u4": "uint32", "int16": "int16", "i2": "int16", "int32": "int32", "i4": "int32",
    "float32": "float32", "f4": "float32", "float64": "float64", "f8": "float64",
    "complex64": "complex64", "c4": "complex64",
}  # fmt: skip

COG_OPTIONS = {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "OVERVIEWS": "AUTO", "RESAMPLING": "AVERAGE",
               "NUM_THREADS": "ALL_CPUS"}


def asset_entries(folder) -> dict[str, dict]:
    """File name → its entry of the `stac-assets.json` manifest of a scene fetched as COG assets (in the
    folder or one level down); empty for any other product."""
    import json
    from pathlib import Path

    for candidate in (Path(folder) / "stac-assets.json", *sorted(Path(folder).glob("*/stac-assets.json"))):
        if candidate.is_file():
            try:
                manifest = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                fail(f"{candidate}: not a readable manifest ({exc})", fatal=True)
            return {str(e.get("file")): e for e in (manifest.get("assets") or {}).values() if isinstance(e, dict)}
    return {}


def window_note(path, entry: dict | None) -> str:
    """For a window extract (manifest `fetched: window`), check that the file has the window's grid
    (a fatal error otherwise: it is not what the provider verified) and say which window it is; ""
    for a whole asset."""
    if not entry or entry.get("fetched") != "window":
        return ""
    import rasterio
    from affine import Affine

    window = entry.get("window") or {}
    with rasterio.open(path) as src:
        shape_ok = (src.width, src.height) == (window.get("width"), window.get("height"))
        grid_ok = shape_ok and src.transform.almost_equals(Affine(*window.get("transform", [0] * 6)), precision=1e-9)
    if not grid_ok:
        fail(f"{path}: the window extract does not have the grid its manifest records "
             f"({window.get('width')}×{window.get('height')}, transform {window.get('transform')})", fatal=True)
    height, width = window.get("asset_shape", ["?", "?"])
    return (f"; window {window['width']}×{window['height']} px at column {window['col_off']}, row "
            f"{window['row_off']} of the {width}×{height} asset")


def fail(message: str, fatal: bool = False) -> NoReturn:
    """Print the error the way the engine classifies it (docs/graphs.md, "Error classification") and exit 1."""
    print(("FATAL ERROR: " if fatal else "ERROR: ") + message, file=sys.stderr, flush=True)
    raise SystemExit(1)


def parse_dformat(text: str) -> tuple[str, float, float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        fail(f"dformat {text!r} must be dtype,nodata,min,max")
    dtype = DTYPES.get(parts[0].lower())
    if dtype is None:
        fail(f"dformat {text!r}: unknown dtype {parts[0]!r}")
    try:
        nodata, lo, hi = (float(p) for p in parts[1:])
    except ValueError:
        fail(f"dformat {text!r}: nodata, min, max must be numbers")
    if not lo < hi:
        fail(f"dformat {text!r}: min must be lower than max")
    return dtype, nodata, lo, hi


def to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Cast with rounding and saturation for integer types."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def write_cog(path: str, data: np.ndarray, profile: dict, blocksize: int = 512, scales=None, offsets=None,
              descriptions=None) -> None:
    """Write a Cloud-Optimized GeoTIFF through GDAL's COG driver (bands × rows × cols)."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    if data.ndim == 2:
        data = data[np.newaxis]
    mem_profile = {k: v for k, v in profile.items() if k in ("crs", "transform", "nodata")}
    mem_profile.update(driver="GTiff", count=data.shape[0], height=data.shape[1], width=data.shape[2],
                       dtype=data.dtype.name, tiled=True, blockxsize=blocksize, blockysize=blocksize)
    with MemoryFile() as mem:
        with mem.open(**mem_profile) as tmp:
            tmp.write(data)
            if scales is not None:
                tmp.scales = scales
            if offsets is not None:
                tmp.offsets = offsets
            if descriptions is not None:
                for i, text in enumerate(descriptions, start=1):
                    tmp.set_band_description(i, text)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", BLOCKSIZE=str(blocksize), **COG_OPTIONS)
