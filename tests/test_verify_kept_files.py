"""`ingester verify AOI` checks what the AOI is supposed to keep: the indexed outputs always, a stored
product only where the graphs keep it. A tile graph that deletes the product zip once it has extracted
what it needs (as ExtractS2Bands and ExtractLandsatBands do) leaves nothing "missing": a healthy DONE
AOI verifies clean (exit 0), nothing is set back and nothing is downloaded again. A missing output of
such a tile sets its tile back *and* its scene (the graph needs the product again), the next run
rebuilds both once, and verify is clean afterwards: no loop. Exit 4 when problems were found and jobs
set back. Local storage and S3 (moto)."""

from __future__ import annotations

import json

import pytest

from ingester import storage
from ingester.config import load_settings
from ingester.store import Store
from tests.fakes.aoi_data import S2_IDS, b01_project

AOI = "DenmarkDemoS2"
EXTRACT = '''
import os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
if not os.path.exists(args["product"]):
    print("FATAL ERROR: no product " + args["product"]); sys.exit(1)
with open(args["out"], "wb") as fh:
    fh.write(b"band of " + args["product"].encode() * 40)
'''


@pytest.fixture(params=["local", "s3"])
def project(request, tmp_path, repo, monkeypatch):
    """Two S2 scenes stored by CopyProductToStorage and processed by a tile graph that reads the stored
    product, indexes one band and deletes the product afterwards (ExtractS2Bands' out-file
    `__product__ SAFE to_delete`)."""
    (tmp_path / "extract.py").write_text(EXTRACT)
    graph = {"processing_steps": [{"engine": "python", "command": str(tmp_path / "extract.py"),
                                   "args": {"product": {"type": "in", "layer": "__product__", "extension": "SAFE"},
                                            "out": {"type": "out", "layer": "B01", "extension": "tif"}}}],
             "in_files": [[{"layer": "__product__", "extension": "SAFE"}], [], []],
             "out_files": [[{"layer": "B01", "extension": "tif", "action": "to_index",
                             "dformat_out": {"type": "fixed", "value": "uint16,0,1,65535"},
                             "ext_min_value": 0, "ext_max_value": 1},
                            {"layer": "__product__", "extension": "SAFE", "action": "to_delete", "condition": "pass",
                             "error_condition": "on_fatal_failure"}]]}
    with b01_project(tmp_path, repo, monkeypatch, request.param, "extract.py", graph, "Extract.json") as project_files:
        yield project_files


def jobs() -> dict[str, tuple[str, int, str, int]]:
    """scene id → (scene status, scene attempts, tile status, tile attempts)."""
    with Store("outputs/ingester.db") as st:
        return {sid: (ss, sa, ts, ta) for sid, ss, sa, ts, ta in st.execute(
            "SELECT s.source_id, s.status, s.attempts, t.status, t.attempts FROM scene s "
            "JOIN tile t ON t.scene_id = s.id ORDER BY s.source_id")}


def dataset_uris() -> dict[str, str]:
    with Store("outputs/ingester.db") as st:
        return {st.tile_row(d.tile_id).scene_source_id: d.uri for d in st.datasets(aoi=AOI)}


def product_uri(scene_id: str) -> str:
    root = storage.resolve_storage_uri("", "", load_settings())
    return f"{root}/{AOI}/{scene_id}/tiles/{scene_id}/{scene_id}.zip"


def exists(uri: str) -> bool:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache()
    return fs.exists(path)


def test_a_healthy_aoi_whose_tile_graph_deletes_its_products_verifies_clean_and_nothing_is_redone(cli, project):
    payload, scenes = project
    first = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q")
    assert first.exit_code == 0, first.stderr
    done = jobs()
    assert {v[0] for v in done.values()} == {v[2] for v in done.values()} == {"DONE"}
    assert not any(exists(product_uri(sid)) for sid in S2_IDS[:2])  # deleted by design after the extraction
    assert all(exists(u) for u in dataset_uris().values())

    verify = cli("verify", AOI, "--json")
    assert verify.exit_code == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["problems"] == [] and report["reset"] == {"scenes": [], "tiles": []}
    assert report["checked"] == {"products": 0, "datasets": 2}
    assert jobs() == done

    again = cli("run", AOI, "--workers", "1")  # the run-time check agrees: nothing missing, nothing to do
    assert again.exit_code == 0, again.stderr
    assert "missing" not in again.stderr
    assert jobs() == done  # no download, no processing


def test_a_lost_output_sets_its_tile_and_the_product_it_needs_back_once_and_the_rebuild_verifies_clean(cli, project):
    payload, scenes = project
    assert cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q").exit_code == 0
    uris = dataset_uris()
    lost, kept = S2_IDS[0], S2_IDS[1]
    storage.delete(uris[lost])

    warned = cli("run", AOI, "-q")
    assert warned.exit_code == 0 and uris[lost] in warned.stderr and product_uri(lost) not in warned.stderr

    verify = cli("verify", AOI, "--json")
    assert verify.exit_code == 4, verify.stderr  # problems found, jobs set back: the next run has work
    report = json.loads(verify.stdout)
    assert {(p["uri"], p["problem"]) for p in report["problems"]} == {(uris[lost], "missing"),
                                                                       (product_uri(lost), "needed")}
    assert report["reset"] == {"scenes": [lost], "tiles": [lost]}
    before = jobs()
    assert before[lost][0] == "PENDING" and before[lost][2] == "NEW" and before[kept][:3:2] == ("DONE", "DONE")

    rebuilt = cli("run", AOI, "--workers", "1", "-q")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    after = jobs()
    assert after[lost] == ("DONE", before[lost][1] + 1, "DONE", before[lost][3] + 1)  # once each
    assert after[kept] == before[kept]
    assert exists(uris[lost]) and not exists(product_uri(lost))  # rebuilt, and the product deleted again

    clean = cli("verify", AOI, "--json")
    assert clean.exit_code == 0, clean.stdout
    assert json.loads(clean.stdout)["problems"] == []
    assert cli("run", AOI, "-q").exit_code == 0 and jobs() == after


def test_verify_exits_4_in_text_mode_too_and_says_what_it_set_back(cli, project):
    payload, scenes = project
    assert cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q").exit_code == 0
    storage.delete(dataset_uris()[S2_IDS[1]])
    result = cli("verify", AOI)
    assert result.exit_code == 4
    assert "set back: 1 scene, 1 tile" in result.stderr and f"ingester run {AOI}" in result.stderr
