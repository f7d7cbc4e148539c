"""Extract the bands of a Landsat 8/9 Collection 2 product (Level 1 or Level 2) as one COG per band,
with the scale and offset of the product's MTL file.

The product is a folder holding the files of the USGS scene folder (`<id>_B4.TIF`, `<id>_SR_B4.TIF`,
`<id>_ST_B10.TIF`, `<id>_QA_PIXEL.TIF`, `<id>_MTL.txt` or `<id>_MTL.json`), as the `landsat-aws`
provider copies it or as `stac-assets` fetches the assets of a STAC item (files keep their names).

Layers: B01 … B11 (Level 1: bands 1–11; Level 2: SR_B1–SR_B7 and ST_B10) and QA_PIXEL. Pixels are
kept as they are (uint16 digital numbers): a band that already is a valid COG in that format is
copied, any other is written as a COG (deflate) without changing a value. What a value means comes
from the MTL, written beside each output as `<output>.format.json` (read by the ingester when it
indexes the file, and carried into the dataset's real range and the STAC `raster:bands`):

- Level 1 bands 1–9: top-of-atmosphere reflectance = v × REFLECTANCE_MULT_BAND_n + REFLECTANCE_ADD_BAND_n
  (without the sun-angle correction); bands 10–11: radiance = v × RADIANCE_MULT_BAND_n + RADIANCE_ADD_BAND_n;
- Level 2 SR_Bn: surface reflectance with the REFLECTANCE_MULT/ADD of LEVEL2_SURFACE_REFLECTANCE_PARAMETERS;
  ST_B10: surface temperature (K) with TEMPERATURE_MULT_BAND_ST_B10 / TEMPERATURE_ADD_BAND_ST_B10;
- QA_PIXEL: bit flags, value = v (no-data 1, the fill bit).

The stored format is `uint16,0,0,65535` (`uint16,1,0,65535` for QA_PIXEL) and the real range
[offset, offset + 65535 × scale], so that real = v × scale + offset.

A band that `stac-assets` read as a window (its `stac-assets.json` says `fetched: window`: only the
tiles of the COG around the AOI) gives an output covering that window; its grid is checked against
the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import asset_entries, fail, window_note, write_cog  # noqa: E402

LAYERS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "QA_PIXEL")
_FILE = re.compile(r"_(SR_B\d|ST_B10|B\d{1,2}|QA_PIXEL)\.TIF$", re.IGNORECASE)
_MTL_LINE = re.compile(r"^\s*([A-Z0-9_]+)\s*=\s*\"?([^\"]*)\"?\s*$")


def parse_mtl_text(text: str) -> dict[str, dict[str, str]]:
    """GROUP → {KEY: value} of an MTL text file (ODL: `GROUP = X` … `END_GROUP = X`, `KEY = value`)."""
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        m = _MTL_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif key == "END_GROUP":
            if stack:
                stack.pop()
        elif stack:
            groups[stack[-1]][key] = value
    return groups


def parse_mtl_json(text: str) -> dict[str, dict[str, str]]:
    """The same from an MTL JSON file ({"LANDSAT_METADATA_FILE": {GROUP: {KEY: "value"}}})."""
    doc = json.loads(text)
    root = doc.get("LANDSAT_METADATA_FILE", doc)
    return {group: {k: str(v) for k, v in values.items() if not isinstance(v, dict)}
            for group, values in root.items() if isinstance(values, dict)}


def read_mtl(folder: Path) -> dict[str, dict[str, str]]:
    for pattern, parse in (("*_MTL.txt", parse_mtl_text), ("*_MTL.json", parse_mtl_json)):
        found = sorted(folder.rglob(pattern))
        if found:
            try:
                return parse(found[0].read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                fail(f"{found[0].name}: cannot read the MTL file ({exc})", fatal=True)
    fail(f"{folder}: no *_MTL.txt or *_MTL.json: the scale and offset of the bands are unknown", fatal=True)
    return {}


def band_files(folder: Path) -> dict[str, tuple[str, Path]]:
    """layer → (file band id, path): B4 or SR_B4 → B04, ST_B10 → B10, QA_PIXEL."""
    out: dict[str, tuple[str, Path]] = {}
    for path in sorted(folder.rglob("*")):
        m = _FILE.search(path.name)
        if not m or not path.is_file():
            continue
        band = m.group(1).upper()
        if band == "QA_PIXEL":
            layer = band
        else:
            digits = re.sub(r"\D", "", band)
            layer = f"B{int(digits):02d}"
        if layer not in out or band.startswith(("SR_", "ST_")):  # an L2 folder may also hold L1 names: prefer L2
            out[layer] = (band, path)
    return out


def scale_offset(mtl: dict[str, dict[str, str]], band: str) -> tuple[float, float, str]:
    """(scale, offset, unit) of a band from the MTL groups."""
    def value(group: str, key: str) -> float:
        try:
            return float(mtl[group][key])
        except (KeyError, ValueError):
            fail(f"MTL: {group}.{key} missing or not a number", fatal=True)
            return 0.0

    if band == "QA_PIXEL":
        return 1.0, 0.0, ""
    if band.startswith("SR_B"):
        n = band[4:]
        group = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
        return value(group, f"REFLECTANCE_MULT_BAND_{n}"), value(group, f"REFLECTANCE_ADD_BAND_{n}"), ""
    if band == "ST_B10":
        group = "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"
        return value(group, "TEMPERATURE_MULT_BAND_ST_B10"), value(group, "TEMPERATURE_ADD_BAND_ST_B10"), "K"
    n = band[1:]
    group = "LEVEL1_RADIOMETRIC_RESCALING"
    if n in ("10", "11"):
        return value(group, f"RADIANCE_MULT_BAND_{n}"), value(group, f"RADIANCE_ADD_BAND_{n}"), "W/(m2.sr.um)"
    return value(group, f"REFLECTANCE_MULT_BAND_{n}"), value(group, f"REFLECTANCE_ADD_BAND_{n}"), ""


def is_cog_in_format(path: Path, dtype: str, nodata: float) -> bool:
    """A valid COG with the stored format already: it can be copied as it is."""
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    try:
        with rasterio.open(path) as src:
            if src.count != 1 or src.dtypes[0] != dtype or src.nodata is None or float(src.nodata) != nodata:
                return False
        valid, _errors, _warnings = cog_validate(str(path), quiet=True)
        return bool(valid)
    except Exception:  # noqa: BLE001 - anything unreadable is re-encoded (which reports the real error)
        return False


def write_band(source: Path, out: Path, nodata: float, blocksize: int, scale: float, offset: float,
               description: str) -> str:
    """Copy or re-encode one band; returns 'copied' or 'encoded'."""
    import numpy as np
    import rasterio

    if is_cog_in_format(source, "uint16", nodata):
        tmp = out.with_name(f".{out.name}.part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, out)
        return "copied"
    with rasterio.open(source) as src:
        data = src.read(1)
        profile = dict(src.profile)
    if data.dtype != np.uint16:
        fail(f"{source.name}: data type {data.dtype} (expected uint16 digital numbers)", fatal=True)
    write_cog(str(out), data, dict(profile, nodata=nodata), blocksize, scales=[scale], offsets=[offset],
              descriptions=[description])
    return "encoded"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--product", required=True, help="the product folder (in the workdir)")
    parser.add_argument("--pattern-out", required=True, help="output name with '*' for the layer, e.g. D_T_*.tif")
    parser.add_argument("--bands", default=",".join(LAYERS), help="layers to write (B01 … B11, QA_PIXEL)")
    parser.add_argument("--blocksize", type=int, default=512)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    folder = workdir / args.product
    if not folder.is_dir():
        fail(f"{folder}: not a product folder", fatal=True)
    if "*" not in args.pattern_out:
        fail(f"--pattern-out {args.pattern_out!r} must contain '*'")
    mtl = read_mtl(folder)
    files = band_files(folder)
    entries = asset_entries(folder)
    wanted = [b.strip().upper() for b in args.bands.split(",") if b.strip()]
    written = 0
    for layer in wanted:
        if layer not in files:
            print(f"warning: {layer} not in {folder.name}", file=sys.stderr)
            continue
        band, source = files[layer]
        window = window_note(source, entries.get(source.name))
        scale, offset, unit = scale_offset(mtl, band)
        nodata = 1.0 if layer == "QA_PIXEL" else 0.0
        out = workdir / args.pattern_out.replace("*", layer)
        how = write_band(source, out, nodata, args.blocksize, scale, offset, f"{layer} ({band})")
        fmt = {"dformat": f"uint16,{nodata:g},0,65535", "ext_min_value": offset,
               "ext_max_value": offset + 65535 * scale, "scale": scale, "offset": offset, "unit": unit}
        Path(f"{out}.format.json").write_text(json.dumps(fmt) + "\n")
        written += 1
        print(f"{layer}: {source.name} → {out.name} ({how}; scale {scale:g}, offset {offset:g}{window})")
    if not written:
        fail(f"{folder.name}: none of the bands {', '.join(wanted)} found", fatal=True)


if __name__ == "__main__":
    main()
