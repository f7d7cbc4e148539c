"""End to end: `ingester aoi` on the Sentinel-2 example payload, the product fetched from a local link,
CopyProductToStorage then ExtractS2Bands in real worker processes, then `ingester datasets` and
`ingester stac`: COGs in storage, datasets in the store, a valid STAC catalog."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pystac
import pytest
from rio_cogeo.cogeo import cog_validate

from ingester.scenes import Scene, write_scenes
from ingester.times import parse_time
from tests.fakes.graph_jobs import S2_ID, complete_s2_safe
from tests.fakes.stac_schemas import offline_validation
from tests.fakes.views_data import box_payload

pytest.importorskip("ingester.store", reason="needs the workflow's store (lands with the workflow issue)")
pytest.importorskip("ingester.providers.worker", reason="needs the download worker (lands with the download issue)")

WKT = "POLYGON ((1.77 43.4, 3.1 43.4, 3.1 42.4, 1.77 42.4, 1.77 43.4))"


def test_aoi_on_the_s2_payload_ends_with_cogs_datasets_and_stac(cli, repo, testdata, tmp_path):
    # the example payload, its AOI moved onto the product's footprint (a tile in southern France)
    payload = box_payload(repo, tmp_path / "denmark-s2.json", (1.77, 42.4, 3.1, 43.4))
    product = tmp_path / "archive" / f"{S2_ID}.zip"
    product.parent.mkdir()
    safe = shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", tmp_path / "safe" / f"{S2_ID}.SAFE")
    complete_s2_safe(safe)  # every band but B10 (optional)
    with zipfile.ZipFile(product, "w") as zf:
        for path in sorted(safe.rglob("*")):
            zf.write(path, path.relative_to(safe.parent).as_posix())
    scene = Scene(source_id=S2_ID, aoi="DenmarkDemoS2", date=parse_time("2018-01-01T10:54:41Z"), wkt=WKT,
                  tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                        "constellation": "SENTINEL2", "satellite": "SENTINEL2A", "cloudCoverPercentage": "12.5",
                        "relativeOrbit": "51", "orbit": "13204"},
                  graph_name="CopyProductToStorage", is_retriable=True,
                  metadata={"download_link": product.as_uri()})
    scenes = tmp_path / "scenes.json"
    write_scenes(scenes, [scene], next_=False)

    result = cli("aoi", payload, "--scenes", scenes, "--workers", "1", "--create-layers", "--quiet")
    assert result.exit_code == 0, result.stderr

    storage = tmp_path / "outputs" / "storage" / "DenmarkDemoS2" / S2_ID / "tiles" / S2_ID
    cog = storage / f"20180101_{S2_ID}_B01.tif"
    assert cog_validate(str(cog))[0]
    assert not (storage / f"{S2_ID}.zip").exists()  # the graph deletes the product once extracted

    listed = cli("datasets", "DenmarkDemoS2", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["layer"] for r in rows) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11",
                                                "B12"]  # the payload's layers; B10 absent (optional)
    (row,) = [r for r in rows if r["layer"] == "B01"]
    assert (row["layer"], row["uri"], row["tile"]) == ("B01", str(cog.resolve()), S2_ID)
    assert row["dformat"] == {"dtype": "uint16", "nodata": 0, "min": 1, "max": 65535}
    assert (row["real_min"], row["real_max"]) == (-0.0999, 6.4535)

    out = cli("stac", "DenmarkDemoS2", "-o", tmp_path / "stac")
    assert out.exit_code == 0, out.stderr
    collection = pystac.Collection.from_file(out.stdout.strip())
    with offline_validation():
        collection.validate()
        assert collection.validate_all() == 1
    (item,) = collection.get_items()
    assert item.id == f"20180101_{S2_ID}"
    assert item.properties["proj:code"] == "EPSG:32631" and "processing:datetime" in item.properties
    asset = item.assets["B01"]
    assert Path(asset.href).resolve() == cog.resolve()
    assert asset.extra_fields["raster:bands"] == [{"data_type": "uint16", "nodata": 0, "scale": 0.0001,
                                                   "offset": -0.1}]
