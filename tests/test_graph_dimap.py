"""The DIMAP graphs: `extract_dimap.py` (PhrPreProcessing, SpotPreProcessing) on the small Pléiades and
SPOT bundle products of tests/data/oneatlas, and the tile graphs PhrProcessing/SpotProcessing, which
index MS (4 bands) and P (1 band) of the tile itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ingester.graph.loader import SCRIPTS_DIR, indexed_formats, load_graph
from ingester.graph.worker import run_tile_job
from ingester.jobs import TileJob
from ingester.payload import Layer
from ingester.scenes import Scene, Tile

SCRIPT = SCRIPTS_DIR / "extract_dimap.py"


def product(testdata: Path, tmp_path: Path, constellation: str) -> Path:
    src = next((testdata / "oneatlas").glob(f"{constellation}_*"))
    work = tmp_path / "work"
    shutil.copytree(src, work / src.name)
    return work


def extract(work: Path, constellation: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), f"--workdir={work}", "--file-ms-out=x_MS.tif",
                           "--file-pan-out=x_P.tif", f"--constellation={constellation}"],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("constellation", ["PHR", "SPOT"])
def test_extract_dimap_writes_ms_and_p_as_tiled_int16_geotiff(testdata, tmp_path, constellation):
    work = product(testdata, tmp_path, constellation)
    r = extract(work, constellation)
    assert r.returncode == 0, r.stderr
    folder = next(work.glob(f"{constellation}_*"))
    for name, bands, size, component in (("x_MS.tif", 4, 16, "MS"), ("x_P.tif", 1, 64, "P")):
        with rasterio.open(work / name) as out:
            assert (out.count, out.width, out.height) == (bands, size, size)
            assert out.dtypes == ("int16",) * bands and out.nodata == 0
            assert out.profile.get("tiled") is True and out.block_shapes == [(512, 512)] * bands  # not strips
            assert out.crs.to_epsg() == 4326
            data = out.read()
        dim = next(folder.glob(f"IMG_*_{component}_001/DIM_*.XML"))
        with rasterio.open(dim) as src:  # the component through GDAL's DIMAP driver (tiles mosaicked)
            assert out.transform.almost_equals(src.transform)
            raw = src.read().astype("int64")
        expected = np.where(raw == 0, 0, np.clip(raw, 1, 32767))
        assert np.array_equal(data, expected)
        assert data.max() == 32767 and (data == 0).any()  # saturated above int16, no-data kept


def test_a_product_of_the_other_constellation_is_a_fatal_error(testdata, tmp_path):
    work = product(testdata, tmp_path, "PHR")
    r = extract(work, "SPOT")
    assert r.returncode == 1 and "FATAL ERROR: no DIMAP volume file (SPOT_VOL.XML" in r.stderr


def test_a_product_without_panchromatic_is_a_fatal_error_naming_it(testdata, tmp_path):
    work = product(testdata, tmp_path, "PHR")
    volume = next(work.glob("PHR_*/VOL_PHR.XML"))
    text = volume.read_text()
    start = text.index("<Component>")
    volume.write_text(text[:start] + text[text.index("</Component>") + len("</Component>"):])
    r = extract(work, "PHR")
    assert r.returncode == 1 and "FATAL ERROR" in r.stderr and "no P component (found: MS)" in r.stderr


def test_the_test_products_are_what_the_generator_makes(testdata, tmp_path):
    from tests.fakes.dimap import write_product

    for constellation in ("PHR", "SPOT"):
        made = write_product(tmp_path, constellation)
        kept = testdata / "oneatlas" / made.name
        names = sorted(p.relative_to(made) for p in made.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(kept) for p in kept.rglob("*") if p.is_file())
        for name in names:
            if name.suffix == ".XML":
                assert (made / name).read_text() == (kept / name).read_text()
            else:
                with rasterio.open(made / name) as a, rasterio.open(kept / name) as b:
                    assert np.array_equal(a.read(), b.read()) and a.transform == b.transform


@pytest.mark.parametrize("name", ["PhrProcessing", "SpotProcessing"])
def test_tile_graphs_index_ms_and_p_of_the_tile_itself(name):
    graph = load_graph(name)
    assert [(f.layer, f.extension) for f in graph.in_files[0]] == [("MS", "tif"), ("P", "tif")]
    assert not graph.in_files[1] and not graph.in_files[2]  # never T1: the original read SPOT's P from T1
    outs = {o.layer: o for o in graph.out_files[0]}
    assert (outs["MS"].nbands, outs["P"].nbands) == (4, 1)
    formats = indexed_formats(graph)
    assert {k: str(v) for k, v in formats.items()} == {"MS": "int16,0,0,32767", "P": "int16,0,0,32767"}


def test_spot_processing_indexes_the_p_of_its_own_tile_when_it_has_a_previous(testdata, tmp_path):
    """A tile chained to a previous acquisition (T1 ≠ T0): the indexed P is T0's own, not T1's."""
    storage = tmp_path / "storage"
    date0, date1 = datetime(2022, 4, 13, 10, 32, 15, tzinfo=UTC), datetime(2022, 4, 1, 10, 32, 15, tzinfo=UTC)
    ids = ("DS_SPOT6_202204131032150_FR1_FR1_FR1_FR1_E001N43_01234",
           "DS_SPOT6_202204011032150_FR1_FR1_FR1_FR1_E001N43_01111")
    work = product(testdata, tmp_path, "SPOT")
    assert extract(work, "SPOT").returncode == 0
    for sid, date in zip(ids, (date0, date1), strict=True):
        folder = storage / "A" / sid / "tiles" / sid
        folder.mkdir(parents=True)
        for layer in ("MS", "P"):
            shutil.copy(work / f"x_{layer}.tif", folder / f"{date:%Y%m%d}_{sid}_{layer}.tif")
    scenes = [Scene(sid, "A", date, "POLYGON ((1 43, 2 43, 2 44, 1 43))") for sid, date in zip(ids, (date0, date1),
                                                                                                   strict=True)]
    tiles = [Tile(sid, sid, date, scenes[0].wkt, graph_name="SpotProcessing") for sid, date in
             zip(ids, (date0, date1), strict=True)]
    job = TileJob(1, 1, "A", scenes[0], tiles[0], tiles[1], scenes[1], tiles[1], scenes[1], str(storage),
                  str(tmp_path / "job"), {"MS": Layer("MS", "r"), "P": Layer("P", "r")})
    from ingester.config import Settings

    result = run_tile_job(job, Settings(storage_uri=str(storage), workdir=str(tmp_path / "w")))
    assert result.outcome == "done", result.message
    uris = {o.layer: o.uri for o in result.outputs}
    assert set(uris) == {"MS", "P"} and all(ids[0] in uri and ids[1] not in uri for uri in uris.values())
    assert {o.layer: o.bands for o in result.outputs} == {"MS": (1, 2, 3, 4), "P": (1,)}
