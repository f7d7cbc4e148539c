"""Landsat 8/9 end to end: `ingester aoi` searches the fake USGS STAC server, `landsat-aws` copies the
scene folder from a requester-pays bucket (moto behind a requester-pays check), CopyProductToStorage
stores it, ExtractLandsatBands writes COGs with the MTL's scale and offset, `ingester stac` exports them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from ingester.store import Store
from tests.fakes.moto_s3 import make_bucket, requester_pays_s3, upload_folder
from tests.fakes.stac_api import DENMARK_FOOTPRINT, FakeStacApi, landsat_item

L1 = "LC08_L1TP_196022_20220105_20220114_02_T1"
L2 = "LC09_L2SP_196022_20220113_20220115_02_T1"
AOI = "DenmarkDemoLandsat"


@pytest.fixture
def world(testdata, repo, tmp_path, monkeypatch):
    """The fake USGS STAC server with one L1 item, and its scene folder in s3://usgs-landsat."""
    item = landsat_item(testdata / "landsat" / L1, geometry=DENMARK_FOOTPRINT,
                        datetime_="2022-01-05T10:25:12.447886Z", cloud=45.21, sun=(162.6, 11.09))
    payload = Path(shutil.copy(repo / "payloads" / "denmark-landsat.json", tmp_path / "denmark-landsat.json"))
    with requester_pays_s3({"usgs-landsat"}) as (endpoint, seen), FakeStacApi([item]) as fake:
        make_bucket(endpoint, "usgs-landsat", requester_pays=True)
        upload_folder(endpoint, "usgs-landsat", f"collection02/level-1/standard/oli-tirs/2022/196/022/{L1}",
                      testdata / "landsat" / L1)
        for key, value in {"INGESTER_LANDSAT_STAC_URL": fake.url, "INGESTER_STAC_S3_ENDPOINT_URL": endpoint,
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_EC2_METADATA_DISABLED": "true", "INGESTER_RETRY_BACKOFF": "0",
                           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
            monkeypatch.setenv(key, value)
        yield payload, seen


def test_aoi_on_a_landsat_payload_ends_with_cogs_carrying_the_mtl_scale_and_offset(cli, world, tmp_path):
    payload, seen = world
    r = cli("aoi", payload, "--workers", "1", "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["tiles"]["done"] == 1
    gets = [s for s in seen if s["path"].startswith("/usgs-landsat") and s["method"] == "GET"]
    assert gets and all(s["payer"] for s in gets)  # every read billed to the requester
    tile = tmp_path / "outputs" / "storage" / AOI / L1 / "tiles" / L1
    for layer in ("B04", "B05", "B10", "QA_PIXEL"):
        cog = tile / f"20220105_{L1}_{layer}.tif"
        assert cog_validate(str(cog))[0], layer
    with rasterio.open(tile / f"20220105_{L1}_B04.tif") as out, \
            rasterio.open(Path(__file__).parent / "data" / "landsat" / L1 / f"{L1}_B4.TIF") as src:
        assert (out.read(1) == src.read(1)).all() and out.nodata == 0  # values unchanged, no-data set
    assert not (tile / f"{L1}.zip").exists()  # the product is deleted once extracted
    listed = json.loads(cli("datasets", AOI, "--json").stdout)
    by_layer = {row["layer"]: row for row in listed}
    assert by_layer["B04"]["dformat"] == {"dtype": "uint16", "nodata": 0, "min": 0, "max": 65535}
    assert by_layer["B04"]["real_min"] == pytest.approx(-0.1)
    assert by_layer["B04"]["real_max"] == pytest.approx(-0.1 + 65535 * 2e-5)
    assert by_layer["B10"]["real_min"] == pytest.approx(0.1)  # radiance: RADIANCE_ADD_BAND_10
    assert by_layer["B10"]["real_max"] == pytest.approx(0.1 + 65535 * 3.342e-4)
    assert by_layer["QA_PIXEL"]["dformat"]["nodata"] == 1
    out = cli("stac", AOI, "-o", tmp_path / "stac")
    assert out.exit_code == 0, out.stderr
    (item,) = pystac.Collection.from_file(out.stdout.strip()).get_items()
    band = item.assets["B04"].extra_fields["raster:bands"][0]
    assert band["scale"] == pytest.approx(2e-5) and band["offset"] == pytest.approx(-0.1)
    with Store("outputs/ingester.db") as st:
        (record,) = st.records(AOI)
        assert record.tags["productType"] == "LC_C02_L1TP" and record.tags["path"] == "196"


def test_missing_aws_credentials_fail_the_scene_clearly_and_a_retry_after_setting_them_finishes(
        cli, world, monkeypatch, tmp_path):
    payload, _seen = world
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = cli("aoi", payload, "--workers", "1", "--create-layers")
    assert r.exit_code == 4
    with Store("outputs/ingester.db") as st:
        message = st.one("SELECT message FROM scene")
        assert "landsat-aws: no AWS credentials" in message and "requester-pays" in message
        assert st.one("SELECT status FROM scene") == "RETRY"
    assert not list((tmp_path / "outputs" / "storage").rglob("*.zip"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    again = cli("retry", AOI, "--workers", "1")
    assert again.exit_code == 0, again.stderr
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT status FROM tile") == "DONE"


def test_a_scene_folder_copied_halfway_resumes_and_a_corrupt_object_is_fetched_again(world, testdata, tmp_path):
    from ingester.config import load_settings
    from ingester.providers.landsat_aws import LandsatAwsProvider
    from ingester.scenes import Scene
    from ingester.times import parse_time

    item = landsat_item(testdata / "landsat" / L1, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-05T10:25:12Z",
                        cloud=1, sun=(1, 1))
    from ingester.catalogue.stac import assets_of

    scene = Scene(source_id=L1, aoi=AOI, date=parse_time("2022-01-05T10:25:12Z"), wkt="POINT (10 55)",
                  metadata={"assets": assets_of(item)})
    settings = load_settings()
    provider = LandsatAwsProvider(settings)
    part = Path(settings.workdir).resolve() / "downloads" / "landsat-aws" / AOI / f"{L1}.part"
    part.mkdir(parents=True)
    b4 = (testdata / "landsat" / L1 / f"{L1}_B4.TIF").read_bytes()
    (part / f"{L1}_B4.TIF").write_bytes(b4[:1000])  # an interrupted copy: resumed
    mtl = (testdata / "landsat" / L1 / f"{L1}_MTL.txt").read_bytes()
    (part / f"{L1}_MTL.txt").write_bytes(b"X" * len(mtl))  # right size, wrong bytes: the checksum catches it
    from ingester.errors import Unavailable

    with pytest.raises(Unavailable, match="SHA512 checksum mismatch"):
        provider.fetch(scene, tmp_path / "work1")
    folder = provider.fetch(scene, tmp_path / "work2")
    assert (folder / f"{L1}_B4.TIF").read_bytes() == b4 and (folder / f"{L1}_MTL.txt").read_bytes() == mtl
    assert not part.exists()


def test_extract_landsat_bands_on_a_level_2_folder_copies_cogs_and_encodes_the_others(testdata, tmp_path):
    import subprocess
    import sys

    work = tmp_path / "w"
    shutil.copytree(testdata / "landsat" / L2, work / L2)
    script = Path(__file__).resolve().parent.parent / "ingester" / "graph" / "scripts" / "extract_landsat.py"
    done = subprocess.run([sys.executable, str(script), "--workdir", str(work), "--product", L2, "--pattern-out",
                           "20220113_T_*.tif"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "B04: " in done.stdout and "(copied;" in done.stdout.split("B04: ")[1].splitlines()[0]
    assert "(encoded;" in done.stdout.split("B05: ")[1].splitlines()[0]  # SR_B5 lacks its no-data tag
    fmt = json.loads((work / "20220113_T_B10.tif.format.json").read_text())
    assert fmt["ext_min_value"] == 149.0 and fmt["ext_max_value"] == pytest.approx(149.0 + 65535 * 0.00341802)
    assert fmt["unit"] == "K"
    assert (work / "20220113_T_B04.tif").read_bytes() == (work / L2 / f"{L2}_SR_B4.TIF").read_bytes()
    assert cog_validate(str(work / "20220113_T_B05.tif"))[0]
