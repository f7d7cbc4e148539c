"""ExtractS2Bands on the real Sentinel-2 excerpt (B01, 1830 × 1830): COGs whose pixels map back to reflectance."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from ingester.graph.loader import load_graph
from ingester.graph.model import DFormat
from ingester.graph.worker import run_scene_graph, run_tile_job
from ingester.payload import Layer
from ingester.scenes import Scene, Tile
from ingester.times import parse_time
from tests.fakes.graph_jobs import S2_ID, WKT, complete_s2_safe, scene_job, settings, tile_job

SCRIPTS = Path(__file__).resolve().parent.parent / "ingester" / "graph" / "scripts"
JP2 = f"{S2_ID}.SAFE/GRANULE/L1C_T31TDH_A013204_20180101T105435/IMG_DATA/T31TDH_20180101T105441_B01.jp2"


def s2_scene() -> tuple[Scene, Tile]:
    date = parse_time("2018-01-01T10:54:41Z")
    tile = Tile(source_id=S2_ID, scene_id=S2_ID, date=date, wkt=WKT, graph_name="ExtractS2Bands")
    scene = Scene(source_id=S2_ID, aoi="aoi", date=date, wkt=WKT, graph_name="CopyProductToStorage", tiles=[tile])
    return scene, tile


def reflectance(stored: np.ndarray, fmt: DFormat, real_min: float, real_max: float) -> np.ndarray:
    """real = real_min + (real_max − real_min) × (v − min) / (max − min)
    (docs/indexing.md, "Data formats and pixel values")."""
    return real_min + (real_max - real_min) * (stored.astype(float) - fmt.min_value) / (fmt.max_value - fmt.min_value)


def test_copy_then_extract_gives_a_cog_per_band_that_maps_back_to_reflectance(testdata, tmp_path):
    scene, tile = s2_scene()
    storage = tmp_path / "storage"
    download = tmp_path / "download"
    download.mkdir()
    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", download / f"{S2_ID}.SAFE")
    complete_s2_safe(download / f"{S2_ID}.SAFE")
    copied = run_scene_graph(scene_job(scene, storage, download), download / f"{S2_ID}.SAFE", settings())
    assert copied.outcome == "done", copied.message
    prefix = storage / "aoi" / S2_ID / "tiles" / S2_ID
    assert (prefix / f"{S2_ID}.zip").exists()

    layers = {b: Layer(b, "reflectance") for b in ("B01", "B02")}
    result = run_tile_job(tile_job(scene, tile, storage, tmp_path / "work" / "t1", "ExtractS2Bands", layers=layers),
                          settings())
    assert result.outcome == "done", result.message
    assert "optional output(s) not produced: B10" in result.details["notes"]
    assert len(list(prefix.glob("*.tif"))) == 12  # every band stored, the payload's two indexed
    out, _b02 = result.outputs
    cog = prefix / f"20180101_{S2_ID}_B01.tif"
    assert out.layer == "B01" and out.uri == str(cog)
    assert (out.dtype, out.nodata, out.min_value, out.max_value) == ("uint16", 0, 1, 65535)
    assert (out.real_min, out.real_max, out.exponent) == (-0.0999, 6.4535, 1.0)
    assert out.extra["proj_code"] == "EPSG:32631" and out.extra["shape"] == [1830, 1830]
    # the product zip is deleted after a successful extraction
    assert not (prefix / f"{S2_ID}.zip").exists()

    valid, errors, _warnings = cog_validate(str(cog))
    assert valid, errors
    with rasterio.open(testdata / "s2" / JP2) as src, rasterio.open(cog) as dst:
        dn = src.read(1)
        stored = dst.read(1)
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert dst.nodata == 0 and dst.scales == (0.0001,) and dst.offsets == (-0.1,)
        assert dst.overviews(1)
    fmt = DFormat.parse("uint16,0,1,65535")
    valid_px = dn != 0
    assert valid_px.any()
    # baseline 02.06: no RADIO_ADD_OFFSET, QUANTIFICATION_VALUE 10000 → reflectance = DN / 10000
    expected = dn[valid_px] / 10000.0
    got = reflectance(stored[valid_px], fmt, out.real_min, out.real_max)
    step = (out.real_max - out.real_min) / (fmt.max_value - fmt.min_value)
    assert np.abs(got - expected).max() <= step / 2 + 1e-9
    assert (stored[~valid_px] == 0).all()


def test_a_product_missing_bands_is_an_error_naming_them_and_keeps_the_product(testdata, tmp_path):
    """The excerpt has B01 only: the graph's other declared bands are missing, so the tile is not DONE
    with 1 of 12 outputs; the stored product stays for the retry (a retriable tile)."""
    scene, tile = s2_scene()
    tile.is_retriable = True
    storage = tmp_path / "storage"
    download = tmp_path / "download"
    download.mkdir()
    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", download / f"{S2_ID}.SAFE")
    assert run_scene_graph(scene_job(scene, storage, download), download / f"{S2_ID}.SAFE",
                           settings()).outcome == "done"
    prefix = storage / "aoi" / S2_ID / "tiles" / S2_ID
    layers = {b: Layer(b, "reflectance") for b in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                                    "B09", "B10", "B11", "B12")}
    result = run_tile_job(tile_job(scene, tile, storage, tmp_path / "work" / "t1", "ExtractS2Bands", layers=layers),
                          settings())
    assert result.outcome == "error" and result.outputs == ()
    missing = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    assert f"graph ExtractS2Bands: 11 declared output(s) not produced: {', '.join(missing)}" in result.message
    assert result.details["missing_outputs"] == missing
    assert "warning: band B02 not in" in Path(result.log_path).read_text()
    assert sorted(p.name for p in prefix.iterdir()) == [f"{S2_ID}.zip"]  # nothing stored, the product kept


def _with_offset(safe: Path, offset: int, quantification: int = 10000) -> None:
    """Turn the excerpt's metadata into a baseline ≥ 04.00 one (RADIO_ADD_OFFSET per band)."""
    mtd = safe / "MTD_MSIL1C.xml"
    text = mtd.read_text()
    offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">{offset}</RADIO_ADD_OFFSET>' for i in range(13))
    text = text.replace("</QUANTIFICATION_VALUE>", "</QUANTIFICATION_VALUE>" + offsets, 1)
    text = text.replace('<QUANTIFICATION_VALUE unit="none">10000<',
                        f'<QUANTIFICATION_VALUE unit="none">{quantification}<')
    mtd.chmod(0o644)
    mtd.write_text(text)


@pytest.mark.parametrize("offset, quantification", [(-1000, 10000), (-1000, 8000)])
def test_extract_s2_applies_the_product_offset_and_quantification(testdata, tmp_path, offset, quantification):
    safe = tmp_path / f"{S2_ID}.SAFE"
    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", safe)
    for path in safe.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    _with_offset(safe, offset, quantification)
    proc = subprocess.run([sys.executable, str(SCRIPTS / "extract_s2.py"), f"--workdir={tmp_path}",
                           "--pattern-out=x_*.tif", "--bands=B01"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(safe / JP2.split("/", 1)[1]) as src, rasterio.open(tmp_path / "x_B01.tif") as dst:
        dn, stored = src.read(1), dst.read(1)
    valid = dn != 0
    fmt = DFormat.parse("uint16,0,1,65535")
    got = reflectance(stored[valid], fmt, -0.0999, 6.4535)
    expected = (dn[valid].astype(float) + offset) / quantification
    inside = (expected > -0.0999) & (expected < 6.4535)
    assert np.abs(got[inside] - expected[inside]).max() <= 0.00005 + 1e-9
    if quantification == 10000:
        assert (stored[valid] == np.clip(dn[valid], 1, 65535)).all()  # ≥ 04.00: stored = DN unchanged


def test_extract_s2_without_metadata_is_fatal(tmp_path):
    (tmp_path / "X.SAFE").mkdir()
    proc = subprocess.run([sys.executable, str(SCRIPTS / "extract_s2.py"), f"--workdir={tmp_path}",
                           "--pattern-out=x_*.tif"], capture_output=True, text=True)
    assert proc.returncode == 1 and "FATAL ERROR:" in proc.stderr and "MTD_MSIL1C.xml" in proc.stderr


def test_extract_graph_documents_its_format():
    graph = load_graph("ExtractS2Bands")
    assert graph.config["dformat_out"] == "uint16,0,1,65535"
    indexed = [o for o in graph.out_files[0] if o.action == "to_index"]
    assert [o.layer for o in indexed] == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                          "B10", "B11", "B12"]
    assert {(o.ext_min_value, o.ext_max_value) for o in indexed} == {(-0.0999, 6.4535)}


def test_l2a_layout_takes_the_finest_resolution_and_boa_metadata(testdata, tmp_path):
    safe = tmp_path / "S2B_MSIL2A_20240101T105441_N0510_R051_T31TDH_20240101T124911.SAFE"
    img = safe / "GRANULE" / "L2A_T31TDH_A000001_20240101T105435" / "IMG_DATA"
    src = testdata / "s2" / JP2
    for res in ("R20m", "R60m"):
        (img / res).mkdir(parents=True)
        shutil.copy(src, img / res / f"T31TDH_20240101T105441_B01_{res[1:]}.jp2")
    shutil.copy(src, img / "R60m" / "T31TDH_20240101T105441_SCL_60m.jp2")
    (safe / "MTD_MSIL2A.xml").write_text(
        '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
        "<BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
        '<BOA_ADD_OFFSET band_id="0">-1000</BOA_ADD_OFFSET></n1:Level-2A_User_Product>')
    sys.path.insert(0, str(SCRIPTS))
    try:
        import extract_s2
    finally:
        sys.path.remove(str(SCRIPTS))
    assert extract_s2.radiometry(safe) == (10000.0, {"B01": -1000.0})
    assert {b: p.parent.name for b, p in extract_s2.band_files(safe).items()} == {"B01": "R20m"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "extract_s2.py"), f"--workdir={tmp_path}",
                           "--pattern-out=l2a_*.tif"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(src) as s, rasterio.open(tmp_path / "l2a_B01.tif") as d:
        dn, stored = s.read(1), d.read(1)
    assert (stored[dn != 0] == np.clip(dn[dn != 0], 1, 65535)).all()  # ≥ 04.00: stored = DN


def test_a_graph_step_starts_without_loading_boto3_which_rasterio_would_import():
    """A step works on local files: rasterio's optional AWS sessions (boto3, 0.15-0.2 s of imports at every
    step's start) are left out, and rasterio still reads and writes."""
    pytest.importorskip("boto3")  # installed here (moto, s3 storage): otherwise there is nothing to leave out
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _common, rasterio, rasterio.shutil; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') and sys.modules[m]))")
    out = subprocess.run([sys.executable, "-c", code, str(SCRIPTS)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
