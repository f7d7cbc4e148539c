"""The S1 SNAP graphs along a chain of bursts, with a stand-in for SNAP's gpt that writes plausible
outputs: checks the life cycle of preprocessed / coregextract files and the indexed layers per burst."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from ingester.graph.worker import run_tile_job
from ingester.payload import Layer
from tests.fakes.graph_jobs import s1_scene, settings, tile_job

FAKE_GPT = r'''#!{python}
import json, os, sys
import numpy as np, rasterio
from affine import Affine
params = dict(a[2:].split("=", 1) for a in sys.argv if a.startswith("-P"))
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps({{"graph": os.path.basename(sys.argv[1]), "params": params}}) + "\n")
for key in ("master", "slave", "input"):
    if key in params and params[key].endswith(".dim") and not os.path.exists(params[key]):
        print(f"Error: [NodeId: Read] {{params[key]}} not found"); sys.exit(1)
for key, out in params.items():
    if not key.startswith("output"):
        continue
    if out.endswith(".dim"):
        open(out, "w").write("<Dimap_Document/>")
        os.makedirs(out[:-4] + ".data", exist_ok=True)
    else:
        data = np.zeros((40, 40), dtype="float32")
        data[5:35, 5:35] = 0.5
        with rasterio.open(out, "w", driver="GTiff", width=40, height=40, count=1, dtype="float32", nodata=0,
                           crs="EPSG:4326", transform=Affine(0.001, 0, 10, 0, -0.001, 55.1)) as dst:
            dst.write(data, 1)
'''


def _stored(storage: Path, scene, tile) -> set[str]:
    folder = storage / "aoi" / scene.source_id / "tiles" / tile.source_id
    return {p.name[len(f"{tile.date:%Y%m%d}_{tile.source_id}_"):] for p in folder.iterdir()}


def test_backscatter_coherence_along_a_chain_manages_preprocessed_and_coregextract(tmp_path, monkeypatch):
    gpt = tmp_path / "gpt"
    gpt.write_text(FAKE_GPT.format(python=sys.executable))
    gpt.chmod(0o755)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    storage = tmp_path / "storage"
    chain = [s1_scene(11), s1_scene(23), s1_scene(28)]
    for scene, tile in chain:  # what S1Preprocessing stored for each burst
        folder = storage / "aoi" / scene.source_id / "tiles" / tile.source_id
        folder.mkdir(parents=True)
        name = f"{tile.date:%Y%m%d}_{tile.source_id}_preprocessed"
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
            zf.writestr(f"{name}.dim", "<Dimap_Document/>")
            zf.writestr(f"{name}.data/i_VV.img", "pixels")
    layers = {name: Layer(name, "raw") for name in ("sigma0_VV", "sigma0_VH", "coh_VV", "coh_VH")}
    cfg = {"bs_erode_iterations": "2", "coh_erode_iterations": "2"}
    results = []
    for i, (scene, tile) in enumerate(chain):
        job = tile_job(scene, tile, storage, tmp_path / "work" / f"t{i}", "S1BackscatterCoherence",
                       previous=chain[i - 1] if i else None, reference=chain[0] if i else None,
                       layers=layers, graph_config=cfg, job_id=i + 1)
        results.append(run_tile_job(job, settings(snap_gpt=str(gpt))))
    assert [r.outcome for r in results] == ["done"] * 3, [r.message for r in results]
    assert [sorted(o.layer for o in r.outputs) for r in results] == [
        ["sigma0_VH", "sigma0_VV"], ["coh_VH", "coh_VV", "sigma0_VH", "sigma0_VV"],
        ["coh_VH", "coh_VV", "sigma0_VH", "sigma0_VV"]]
    # the reference keeps its preprocessed burst; B's coregextract was used and deleted by C
    assert _stored(storage, *chain[0]) == {"preprocessed.zip", "sigma0_VV.tif", "sigma0_VH.tif"}
    assert _stored(storage, *chain[1]) == {"sigma0_VV.tif", "sigma0_VH.tif", "coh_VV.tif", "coh_VH.tif"}
    assert _stored(storage, *chain[2]) == {"sigma0_VV.tif", "sigma0_VH.tif", "coh_VV.tif", "coh_VH.tif",
                                           "coregextract.zip"}
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    coh_c = [c for c in calls if c["graph"] == "S1_SLC_Coh_BSel_Deb_ML_TC.xml"][-1]["params"]
    assert coh_c["input"] == "20220128_A44_IW1_8951_coregistred_previous.dim" and coh_c["sel_date"] == "11Jan2022"
    out = results[1].outputs[0]
    assert (out.dtype, out.nodata, out.min_value, out.max_value, out.real_min, out.real_max) == \
        ("float32", 0, 0, 1, 0, 1)
