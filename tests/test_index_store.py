"""`ingester datasets` and `ingester stac` on a real store filled by `ingester aoi`: a chain of S1 bursts
processed by the real tile worker (a small python graph from the payload's folder), the download
replaced by the workflow's test scene worker."""

from __future__ import annotations

import json
from pathlib import Path

import pystac

from tests.fakes.aoi_data import s1_chain, write_s1_tiles
from tests.fakes.stac_schemas import offline_validation

STEP = r'''
import sys
import numpy as np, rasterio
from affine import Affine
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
data = np.full((16, 16), 0.25, dtype="float32")
with rasterio.open(args["out"], "w", driver="GTiff", width=16, height=16, count=1, dtype="float32", nodata=0,
                   crs="EPSG:32632", transform=Affine(20, 0, 500000, 0, -20, 6100000)) as dst:
    dst.write(data, 1)
'''

GRAPH = {
    "config": {}, "envs": [],
    "processing_steps": [{"engine": "python", "command": "mk.py", "condition": "pass",
                          "args": {"out": {"type": "out", "layer": "sigma0_VV", "extension": "tif"}}}],
    "in_files": [[], [], []],
    "out_files": [[{"layer": "sigma0_VV", "extension": "tif", "action": "to_index", "datatype": "float32",
                    "nodata": 0, "min_value": 0, "max_value": 1, "ext_min_value": 0, "ext_max_value": 1}]],
}


def test_datasets_and_stac_of_a_processed_chain(cli, repo, tmp_path):
    doc = json.loads((repo / "payloads" / "denmark-s1.json").read_text())
    doc["tile_graph_name"] = "chain.json"
    doc["layers"] = {"sigma0_VV": {"variable": "BackscatterSigma0VV", "instance": "RNKell"}}
    payload = tmp_path / "s1.json"
    payload.write_text(json.dumps(doc))
    (tmp_path / "chain.json").write_text(json.dumps(GRAPH))
    (tmp_path / "mk.py").write_text(STEP)
    tiles = write_s1_tiles(tmp_path / "tiles.json", s1_chain("DenmarkDemoS1", 3, 1, graph="chain.json"))

    run = cli("aoi", payload, "--tiles", tiles, "--workers", "1", "--create-layers", "--quiet",
              "--scene-worker", "tests.fakes.workers:succeed")
    assert run.exit_code == 0, run.stderr

    listed = cli("datasets", "DenmarkDemoS1", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["layer"] for r in rows] == ["sigma0_VV"] * 3
    assert all(Path(r["uri"]).is_absolute() and Path(r["uri"]).is_file() for r in rows)
    assert rows[0]["variable"] == "BackscatterSigma0VV" and rows[0]["instance"] == "RNKell"
    text = cli("datasets", "DenmarkDemoS1")
    assert text.exit_code == 0 and len(text.stdout.splitlines()) == 4 and "float32,0,0,1\t[0, 1]" in text.stdout
    assert text.stdout.splitlines()[0].split("\t") == ["time", "layer", "tile", "dformat", "real range", "uri"]

    out = cli("stac", "DenmarkDemoS1", "-o", tmp_path / "stac", "--quiet")
    assert out.exit_code == 0, out.stderr
    collection = pystac.Collection.from_file(out.stdout.strip())
    with offline_validation():
        collection.validate()
        assert collection.validate_all() == 3
    items = sorted(collection.get_items(), key=lambda i: i.datetime)
    assert [i.id for i in items] == ["20220111_A44_IW1_8951", "20220123_A44_IW1_8951", "20220204_A44_IW1_8951"]
    last = items[-1]
    derived = sorted(Path(link.get_href()).parent.name for link in last.links if link.rel == "derived_from")
    assert derived == ["20220111_A44_IW1_8951", "20220123_A44_IW1_8951"]
    assert last.properties["proj:code"] == "EPSG:32632" and "processing:datetime" in last.properties
    assert last.properties["ingester:tags"]["area"] == "Denmark"
    assert last.assets["sigma0_VV"].extra_fields["raster:bands"] == [{"data_type": "float32", "nodata": 0,
                                                                      "scale": 1.0, "offset": 0.0}]

    again = cli("stac", "DenmarkDemoS1", "-o", tmp_path / "stac", "--quiet")  # re-export replaces, no stale items
    assert again.exit_code == 0 and len(list(pystac.Collection.from_file(again.stdout.strip()).get_items())) == 3

    # pointed at the storage (which holds the products under <storage>/<aoi>/…), it refuses and deletes nothing
    storage = Path(rows[0]["uri"]).parents[4]
    before = sorted(p for p in storage.rglob("*") if p.is_file())
    refused = cli("stac", "DenmarkDemoS1", "-o", storage, "--quiet")
    assert refused.exit_code == 2 and "not an earlier STAC export" in refused.stderr
    assert sorted(p for p in storage.rglob("*") if p.is_file()) == before


def test_unknown_aoi_in_an_existing_store_exits_2(cli, repo, tmp_path):
    from ingester.store import Store

    Store("outputs/ingester.db").close()
    result = cli("stac", "Nowhere")
    assert result.exit_code == 2 and "no AOI named 'Nowhere'" in result.stderr
    assert not Path("outputs/stac").exists()
