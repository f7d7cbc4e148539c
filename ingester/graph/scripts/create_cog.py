"""Write a raster as a Cloud-Optimized GeoTIFF, optionally reprojected (docs/graphs.md, "Helper scripts")."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import COG_OPTIONS, fail  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filepath", required=True)
    parser.add_argument("--fileout", required=True)
    parser.add_argument("--blocksize", type=int, default=512)
    parser.add_argument("--projection", default="", help="target CRS, e.g. EPSG:4326 (default: keep)")
    args = parser.parse_args(argv)
    import rasterio
    import rasterio.shutil
    from rasterio.vrt import WarpedVRT

    try:
        with rasterio.open(args.filepath) as src:
            if args.projection:
                with WarpedVRT(src, crs=args.projection) as vrt:
                    rasterio.shutil.copy(vrt, args.fileout, driver="COG", BLOCKSIZE=str(args.blocksize),
                                         **COG_OPTIONS)
            else:
                rasterio.shutil.copy(src, args.fileout, driver="COG", BLOCKSIZE=str(args.blocksize), **COG_OPTIONS)
    except rasterio.errors.RasterioError as exc:
        fail(f"cannot convert {args.filepath}: {exc}")


if __name__ == "__main__":
    main()
