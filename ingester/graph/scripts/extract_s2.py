"""Extract the bands of a Sentinel-2 L1C/L2A SAFE as one COG per band, in a reflectance encoding that is
the same for every processing baseline.

Stored value v (uint16, no-data 0) for a digital number DN ≠ 0 of the product:

    v = round((DN + OFFSET) × 10000 / QUANTIFICATION_VALUE) + 1000, clipped to [1, 65535]

OFFSET is the band's RADIO_ADD_OFFSET (L1C) or BOA_ADD_OFFSET (L2A) of the product metadata
(baseline ≥ 04.00: −1000; earlier baselines have none: 0), QUANTIFICATION_VALUE is QUANTIFICATION_VALUE
(L1C) or BOA_QUANTIFICATION_VALUE (L2A), 10000 in practice. So

    reflectance = (v − 1000) / 10000        i.e. dformat uint16,0,1,65535 ↔ real range [−0.0999, 6.4535]

which for a baseline ≥ 04.00 product means v = DN unchanged, and for older products v = DN + 1000.
The GeoTIFF band carries the same scale (0.0001) and offset (−0.1), so GDAL, QGIS and stackstac read
reflectance directly; STAC `raster:bands` repeats them.

A scene fetched by the `stac-assets` provider is a folder of COG assets with a `stac-assets.json`
manifest (asset → file, band name, `raster:bands` scale/offset, the item's processing baseline and
`earthsearch:boa_offset_applied`). Reflectance = DN × scale + offset, with scale 0.0001 by default and
offset from `raster:bands`, else −0.1 from baseline 04.00 on, and 0 when the catalogue says the offset
is already applied to the pixels. A band whose encoding is then v = DN and that already is a valid
COG (uint16, no-data 0) is copied as it is; any other is re-encoded. An asset the provider read as a
window (manifest `fetched: window`: only the tiles of the COG around the AOI) gives an output covering
that window, with the window's georeferencing; its grid is checked against the manifest.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fail, window_note, write_cog  # noqa: E402

MANIFEST = "stac-assets.json"

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
BAND_INDEX = {name: i for i, name in enumerate(BANDS)}  # the band_id of the metadata
TARGET_SCALE = 10000.0
TARGET_SHIFT = 1000.0
_BAND_FILE = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))(?:_(\d+)m)?\.jp2$")


def radiometry(safe: Path) -> tuple[float, dict[str, float]]:
    """(quantification value, offset per band name) from MTD_MSIL1C.xml or MTD_MSIL2A.xml."""
    for name in ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml"):
        path = safe / name
        if path.is_file():
            break
    else:
        fail(f"{safe}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml", fatal=True)
    root = ET.parse(path).getroot()
    quant = None
    offsets: dict[str, float] = {}
    for elem in root.iter():
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and elem.text:
            quant = float(elem.text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and elem.text:
            band_id = int(elem.get("band_id", "-1"))
            if 0 <= band_id < len(BANDS):
                offsets[BANDS[band_id]] = float(elem.text)
    if quant is None or quant == 0:
        fail(f"{path}: no QUANTIFICATION_VALUE", fatal=True)
        raise AssertionError  # fail() exits; the script's own import of it is not typed for mypy
    return quant, offsets


def band_files(safe: Path) -> dict[str, Path]:
    """The finest-resolution JPEG 2000 file of each band under GRANULE/*/IMG_DATA."""
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(safe.glob("GRANULE/*/IMG_DATA/**/*.jp2")):
        match = _BAND_FILE.search(path.name)
        if not match:
            continue
        band, res = match.group(1), int(match.group(2) or 0)
        if band not in found or res < found[band][0]:
            found[band] = (res, path)
    return {band: path for band, (_, path) in found.items()}


def encode(dn: np.ndarray, quant: float, offset: float) -> np.ndarray:
    """DN → stored value (see the module docstring); DN 0 (no data) stays 0."""
    if quant == TARGET_SCALE:
        shift = offset + TARGET_SHIFT  # exact integer arithmetic in the usual case
        values = dn.astype(np.int32) + int(shift) if shift == int(shift) else dn + shift
    else:
        values = (dn.astype(np.float64) + offset) * (TARGET_SCALE / quant) + TARGET_SHIFT
    out = np.clip(np.rint(values), 1, 65535).astype(np.uint16)
    out[dn == 0] = 0
    return out


def find_manifest(folder: Path) -> Path | None:
    """The `stac-assets.json` of a scene fetched as COG assets (in the folder or one level down)."""
    for candidate in (folder / MANIFEST, *sorted(folder.glob(f"*/{MANIFEST}"))):
        if candidate.is_file():
            return candidate
    return None


def asset_radiometry(manifest: dict, asset: dict) -> tuple[float, float]:
    """(scale, offset) that turn the asset's DN into reflectance (see the module docstring)."""
    props = manifest.get("properties") or {}
    raster = asset.get("raster") or {}
    scale = float(raster.get("scale") or 0.0001)
    if props.get("earthsearch:boa_offset_applied") is True:
        return scale, 0.0
    if raster.get("offset") is not None:
        return scale, float(raster["offset"])
    try:
        baseline = float(props.get("s2:processing_baseline") or 0)
    except (TypeError, ValueError):
        baseline = 0.0
    return scale, -0.1 if baseline >= 4.0 else 0.0


def is_cog_uint16(path: Path) -> bool:
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    try:
        with rasterio.open(path) as src:
            if src.count != 1 or src.dtypes[0] != "uint16" or src.nodata is None or float(src.nodata) != 0:
                return False
        return bool(cog_validate(str(path), quiet=True)[0])
    except Exception:  # noqa: BLE001 - anything unreadable is re-encoded (which reports the real error)
        return False


def extract_assets(manifest_path: Path, workdir: Path, pattern_out: str, wanted: list[str], blocksize: int) -> int:
    """COG-assets mode: one output per wanted band present in the manifest; returns how many."""
    import json
    import shutil

    import rasterio

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    by_band = {str(a.get("name")): a for a in (manifest.get("assets") or {}).values() if a.get("name")}
    written = 0
    for band in wanted:
        asset = by_band.get(band)
        if asset is None:
            print(f"warning: band {band} not among the fetched assets", file=sys.stderr)
            continue
        source = manifest_path.parent / str(asset["file"])
        window = window_note(source, asset)
        scale, offset = asset_radiometry(manifest, asset)
        out = workdir / pattern_out.replace("*", band)
        quant, shift = 1.0 / scale, offset / scale
        if abs(quant - TARGET_SCALE) < 1e-6 and abs(shift + TARGET_SHIFT) < 1e-6 and is_cog_uint16(source):
            tmp = out.with_name(f".{out.name}.part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, out)
            how = "copied"
        else:
            with rasterio.open(source) as src:
                dn = src.read(1)
                profile = dict(src.profile)
            stored = encode(dn, round(quant, 6), round(shift, 6))
            write_cog(str(out), stored, dict(profile, nodata=0), blocksize, scales=[1 / TARGET_SCALE],
                      offsets=[-TARGET_SHIFT / TARGET_SCALE], descriptions=[band])
            how = "encoded"
        written += 1
        print(f"{band}: {source.name} → {out.name} ({how}; scale {scale:g}, offset {offset:g}{window})")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--product", default="", help="the .SAFE folder (default: the only one in the workdir)")
    parser.add_argument("--pattern-out", required=True, help="output name with '*' for the band, e.g. D_T_*.tif")
    parser.add_argument("--bands", default=",".join(BANDS))
    parser.add_argument("--blocksize", type=int, default=512)
    args = parser.parse_args(argv)
    import rasterio

    workdir = Path(args.workdir)
    if args.product:
        safe = workdir / args.product
    else:
        safes = sorted(workdir.glob("*.SAFE"))
        if len(safes) != 1:
            fail(f"{workdir}: expected one .SAFE folder, found {len(safes)}", fatal=True)
        safe = safes[0]
    if not safe.is_dir():
        fail(f"{safe}: not a SAFE folder", fatal=True)
    if "*" not in args.pattern_out:
        fail(f"--pattern-out {args.pattern_out!r} must contain '*'")
    manifest = find_manifest(safe)
    if manifest is not None:
        wanted = [b.strip() for b in args.bands.split(",") if b.strip()]
        if not extract_assets(manifest, workdir, args.pattern_out, wanted, args.blocksize):
            fail(f"{safe.name}: none of the bands {', '.join(wanted)} among the fetched assets", fatal=True)
        return
    quant, offsets = radiometry(safe)
    files = band_files(safe)
    wanted = [b.strip() for b in args.bands.split(",") if b.strip()]
    written = 0
    for band in wanted:
        if band not in files:
            print(f"warning: band {band} not in {safe.name}", file=sys.stderr)
            continue
        with rasterio.open(files[band]) as src:
            dn = src.read(1)
            profile = dict(src.profile)
        stored = encode(dn, quant, offsets.get(band, 0.0))
        out = workdir / args.pattern_out.replace("*", band)
        write_cog(str(out), stored, dict(profile, nodata=0), args.blocksize, scales=[1 / TARGET_SCALE],
                  offsets=[-TARGET_SHIFT / TARGET_SCALE], descriptions=[band])
        written += 1
        print(f"{band}: {files[band].name} → {out.name} (quantification {quant:g}, offset {offsets.get(band, 0):g})")
    if not written:
        fail(f"{safe.name}: none of the bands {', '.join(wanted)} found", fatal=True)


if __name__ == "__main__":
    main()
