"""Erode the valid area of a raster: no-data and NaN are masked, the convex hull of all valid shapes is
kept, and the invalid area is dilated N times with a 3×3 element (docs/graphs.md, "Helper scripts")."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fail, write_cog  # noqa: E402


def dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation with a 3×3 square, `iterations` times (numpy only)."""
    for _ in range(iterations):
        padded = np.pad(mask, 1, constant_values=False)
        grown = np.zeros_like(mask)
        h, w = mask.shape
        for dy in range(3):
            for dx in range(3):
                grown |= padded[dy:dy + h, dx:dx + w]
        mask = grown
    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file-in", required=True)
    parser.add_argument("--file-out", default="")
    parser.add_argument("--no-data", type=float, default=0.0)
    parser.add_argument("--iterations", type=int, default=0)
    args = parser.parse_args(argv)
    import rasterio
    from rasterio import features
    from shapely.geometry import shape
    from shapely.ops import unary_union

    out_path = args.file_out or args.file_in
    with rasterio.open(args.file_in) as src:
        data = src.read()
        profile = dict(src.profile)
    if args.iterations <= 0:
        if out_path != args.file_in:
            write_cog(out_path, data, dict(profile, nodata=args.no_data))
        return
    invalid = np.zeros(data.shape[1:], dtype=bool)
    for band in data:
        invalid |= band == args.no_data
        if np.issubdtype(band.dtype, np.floating):
            invalid |= np.isnan(band)
    valid = (~invalid).astype("uint8")
    shapes = [shape(geom) for geom, value in features.shapes(valid, mask=valid.astype(bool),
                                                              transform=profile["transform"]) if value]
    if not shapes:
        fail(f"{args.file_in} empty", fatal=True)
    hull = unary_union(shapes).convex_hull
    inside = features.rasterize([(hull, 1)], out_shape=invalid.shape, transform=profile["transform"],
                                fill=0, dtype="uint8").astype(bool)
    invalid = dilate(invalid | ~inside, args.iterations)
    if invalid.all():
        fail(f"{args.file_in} empty", fatal=True)
    data[:, invalid] = args.no_data
    write_cog(out_path, data, dict(profile, nodata=args.no_data))


if __name__ == "__main__":
    main()
