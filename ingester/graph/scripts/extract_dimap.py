"""Pléiades / SPOT DIMAP V2 product → the multispectral image (4 bands) and the panchromatic image (1 band)
as tiled GeoTIFF files, for the scene graphs PhrPreProcessing and SpotPreProcessing.

    python extract_dimap.py --workdir W --file-ms-out MS.tif --file-pan-out P.tif --constellation PHR
                            [--dformat-out int16,0,0,32767] [--blocksize 512]

The product's volume file (`VOL_PHR.XML` for Pléiades; `SPOT_VOL.XML`, `VOL_SPOT6.XML` or `VOL_SPOT7.XML`
for SPOT) is looked for anywhere under the work folder and opened with GDAL's DIMAP driver, which lists
one component per DIM_*.XML (a bundle has two: `SPECTRAL_PROCESSING` `MS` and `P`). Each component is
copied block by block (memory does not grow with the image) into a tiled, deflated GeoTIFF in
`dformat_out`: digital numbers are kept, 0 (the products' no-data) stays 0, values above the type's
maximum are saturated, valid values are at least 1. A component that is not georeferenced (a primary
product in sensor geometry) cannot be indexed: FATAL ERROR, as for a missing component or volume file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fail, parse_dformat  # noqa: E402

VOLUMES = {"PHR": ("VOL_PHR.XML",), "SPOT": ("SPOT_VOL.XML", "VOL_SPOT6.XML", "VOL_SPOT7.XML")}
BANDS = {"MS": 4, "P": 1}


def find_volume(workdir: Path, constellation: str) -> Path:
    names = {n.upper() for n in VOLUMES[constellation]}
    found = sorted(p for p in workdir.rglob("*") if p.is_file() and p.name.upper() in names)
    if not found:
        fail(f"no DIMAP volume file ({', '.join(VOLUMES[constellation])}) under {workdir}: not a "
             f"{constellation} DIMAP product", fatal=True)
    return found[0]


def components(volume: Path) -> dict[str, str]:
    """SPECTRAL_PROCESSING (MS, P, …) → the GDAL name of that component."""
    import rasterio

    out: dict[str, str] = {}
    try:
        with rasterio.open(volume) as ds:
            names = list(ds.subdatasets) or [str(volume)]
        for name in names:
            with rasterio.open(name) as sub:
                kind = str(sub.tags().get("SPECTRAL_PROCESSING") or "").upper()
            if kind and kind not in out:
                out[kind] = name
    except rasterio.errors.RasterioIOError as exc:
        fail(f"{volume}: cannot be read as DIMAP ({exc})", fatal=True)
    return out


def convert(block: np.ndarray, dtype: str, nodata: float, hi: float) -> np.ndarray:
    """Digital numbers in the output type: no-data kept, saturated at `hi`, valid values ≥ 1."""
    valid = block != 0
    values = np.clip(block.astype("float64"), 1, hi)
    return np.where(valid, values, nodata).astype(dtype)


def extract(source: str, out: Path, kind: str, dformat: str, blocksize: int) -> str:
    import rasterio

    dtype, nodata, _lo, hi = parse_dformat(dformat)
    with rasterio.open(source) as src:
        if src.count != BANDS[kind]:
            fail(f"{source}: the {kind} component has {src.count} band(s), {BANDS[kind]} expected", fatal=True)
        if src.crs is None or src.transform.is_identity:
            fail(f"{source}: the {kind} component is not georeferenced (a product in sensor geometry): order an "
                 "orthorectified product", fatal=True)
        profile = {"driver": "GTiff", "dtype": dtype, "nodata": nodata, "count": src.count, "width": src.width,
                   "height": src.height, "crs": src.crs, "transform": src.transform, "tiled": True,
                   "blockxsize": blocksize, "blockysize": blocksize, "compress": "DEFLATE", "predictor": 2,
                   "BIGTIFF": "IF_SAFER"}
        tmp = out.with_name(f".{out.name}.part")
        with rasterio.open(tmp, "w", **profile) as dst:
            for _ij, window in dst.block_windows(1):
                dst.write(convert(src.read(window=window), dtype, nodata, hi), window=window)
            for i in range(1, src.count + 1):
                if src.descriptions[i - 1]:
                    dst.set_band_description(i, src.descriptions[i - 1])
        os.replace(tmp, out)
        return f"{out.name}: {kind}, {src.count} band(s), {src.width}×{src.height} px, {dformat}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--file-ms-out", required=True)
    parser.add_argument("--file-pan-out", required=True)
    parser.add_argument("--constellation", required=True, type=str.upper, choices=sorted(VOLUMES))
    parser.add_argument("--dformat-out", default="int16,0,0,32767")
    parser.add_argument("--blocksize", type=int, default=512)
    args = parser.parse_args(argv)
    if args.blocksize <= 0 or args.blocksize % 16:
        fail(f"--blocksize {args.blocksize}: a positive multiple of 16")
    workdir = Path(args.workdir)
    volume = find_volume(workdir, args.constellation)
    found = components(volume)
    missing = [kind for kind in BANDS if kind not in found]
    if missing:
        fail(f"{volume}: no {' and no '.join(missing)} component (found: {', '.join(sorted(found)) or 'none'}): "
             "a bundle product (panchromatic and multispectral delivered separately) is needed", fatal=True)
    for kind, name in (("MS", args.file_ms_out), ("P", args.file_pan_out)):
        out = Path(name) if os.path.isabs(name) else workdir / name
        print(extract(found[kind], out, kind, args.dformat_out, args.blocksize), flush=True)


if __name__ == "__main__":
    main()
