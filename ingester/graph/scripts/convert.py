"""Convert a raster to a data format `dtype,nodata,min,max`: linear map of --range-in onto [min, max],
clipped, rounded and saturated for integers, no-data kept; written as a COG (docs/graphs.md, "Helper scripts")."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fail, parse_dformat, to_dtype, write_cog  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file-in", required=True)
    parser.add_argument("--file-out", default="")
    parser.add_argument("--range-in", required=True, help="min,max of the real input values")
    parser.add_argument("--dformat-out", required=True, help="dtype,nodata,min,max")
    parser.add_argument("--tiling", type=int, default=256)
    args = parser.parse_args(argv)
    import rasterio

    dtype, nodata, lo, hi = parse_dformat(args.dformat_out)
    try:
        rmin, rmax = (float(v) for v in args.range_in.split(","))
    except ValueError:
        fail(f"--range-in {args.range_in!r} must be min,max")
    if not rmin < rmax:
        fail(f"--range-in {args.range_in!r}: min must be lower than max")
    try:
        with rasterio.open(args.file_in) as src:
            data = src.read(masked=False).astype("float64")
            profile = src.profile
            in_nodata = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        fail(f"cannot read {args.file_in}: {exc}")
    invalid = np.isnan(data)
    if in_nodata is not None and not np.isnan(in_nodata):
        invalid |= data == in_nodata
    scaled = lo + (np.clip(data, rmin, rmax) - rmin) * (hi - lo) / (rmax - rmin)
    out = to_dtype(np.where(invalid, 0, scaled), dtype)
    has_nodata = not np.isnan(nodata) or not np.issubdtype(np.dtype(dtype), np.integer)
    if has_nodata:
        out[invalid] = nodata
    profile = dict(profile, nodata=nodata if has_nodata else None)
    scale = (rmax - rmin) / (hi - lo)
    write_cog(args.file_out or args.file_in, out, profile, args.tiling,
              scales=[scale] * out.shape[0], offsets=[rmin - lo * scale] * out.shape[0])


if __name__ == "__main__":
    main()
