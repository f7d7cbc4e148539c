"""Engines and helper scripts: SNAP and docker command lines (through stand-in executables), conditions,
error classification, and the raster scripts (convert, erode_mask, create_cog)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from ingester.graph import conditions as cond
from ingester.graph.engines import step_outcome
from ingester.graph.worker import run_scene_graph, run_tile_job
from tests.fakes.graph_jobs import s1_scene, scene_job, settings, tile_job, write_graph

SCRIPTS = Path(__file__).resolve().parent.parent / "ingester" / "graph" / "scripts"

# Stand-in for SNAP's gpt: records its argument list, writes the BEAM-DIMAP product named by -Poutput.
FAKE_GPT = r'''#!{python}
import json, os, sys
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\n")
params = dict(a[2:].split("=", 1) for a in sys.argv if a.startswith("-P"))
out = params["output"]
open(out, "w").write("<Dimap_Document/>")
os.makedirs(out[:-4] + ".data", exist_ok=True)
open(os.path.join(out[:-4] + ".data", "i_VV.img"), "w").write("pixels")
'''

FAKE_DOCKER = r'''#!{python}
import json, os, sys
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
sys.exit(int(os.environ.get("DOCKER_EXIT", "0")))
'''


def _exe(path: Path, text: str) -> Path:
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_s1_preprocessing_runs_gpt_with_clean_parameters_and_stores_the_dim(tmp_path, monkeypatch):
    gpt = _exe(tmp_path / "gpt", FAKE_GPT)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    scene, tile = s1_scene(4)
    scene.graph_name = "S1Preprocessing"
    workdir = tmp_path / "download"
    (workdir / f"{scene.source_id}.SAFE").mkdir(parents=True)
    result = run_scene_graph(scene_job(scene, tmp_path / "storage", workdir), workdir / f"{scene.source_id}.SAFE",
                             settings(snap_gpt=str(gpt)))
    assert result.outcome == "done", result.message
    (call,) = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    argv = call["argv"]
    assert argv[0].endswith("snap/S1_SLC_BurstSplit_AO_CAL.xml") and Path(argv[0]).is_file()
    assert argv[1:5] == ["-x", "-q", "1", "-J-Xmx8G"]
    assert sorted(argv[5:]) == sorted([f"-Pinput={scene.source_id}", "-Poutput=20220104_A44_IW1_8951_preprocessed.dim",
                                       "-Pswath=IW1", "-Ppolar=VV,VH", "-Pburst=3"])
    assert call["cwd"] == str(workdir.resolve())
    stored = tmp_path / "storage" / "aoi" / scene.source_id / "tiles" / tile.source_id / \
        "20220104_A44_IW1_8951_preprocessed.zip"
    with zipfile.ZipFile(stored) as zf:
        assert sorted(n for n in zf.namelist() if not n.endswith("/")) == [
            "20220104_A44_IW1_8951_preprocessed.data/i_VV.img",
                                         "20220104_A44_IW1_8951_preprocessed.dim"]


def test_snap_memory_and_parallelism_come_from_the_graph_config(tmp_path, monkeypatch):
    gpt = _exe(tmp_path / "gpt", FAKE_GPT)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    scene, _ = s1_scene(4)
    scene.graph_name = "S1Preprocessing"
    scene.graph_config = {"snap_memory": "3G", "snap_cpu_parallelism": "2"}
    workdir = tmp_path / "dl"
    workdir.mkdir()
    result = run_scene_graph(scene_job(scene, tmp_path / "storage", workdir), workdir / "x.SAFE",
                             settings(snap_gpt=str(gpt)))
    assert result.outcome == "done", result.message
    argv = json.loads((tmp_path / "calls.jsonl").read_text())["argv"]
    assert argv[1:5] == ["-x", "-q", "2", "-J-Xmx3G"]


@pytest.mark.parametrize("exit_code, outcome", [(0, "done"), (2, "error"), (125, "error")])
def test_docker_step_command_line_and_any_nonzero_exit_fails(tmp_path, monkeypatch, exit_code, outcome):
    docker = _exe(tmp_path / "docker", FAKE_DOCKER)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("DOCKER_EXIT", str(exit_code))
    (tmp_path / "graphs").mkdir()
    write_graph(tmp_path / "graphs", "d.json", {"envs": ["GDAL_CACHEMAX=512", "AWS_REGION"], "processing_steps": [
        {"engine": "docker", "command": "registry/tool:1.2", "args": {"band": {"type": "fixed", "value": "B04"}}}],
        "out_files": [[]]})
    scene, tile = s1_scene(4)
    job = tile_job(scene, tile, tmp_path / "storage", tmp_path / "work" / "j", "d.json", [tmp_path / "graphs"])
    result = run_tile_job(job, settings(docker=str(docker)))
    assert result.outcome == outcome
    argv = json.loads((tmp_path / "calls.jsonl").read_text())
    wd = str((tmp_path / "work" / "j").resolve())
    assert argv[:2] == ["run", "--rm"] and argv[2] == "--name" and argv[3].startswith("ingester-")
    assert argv[4:8] == ["-v", f"{wd}:{wd}:rw", "-w", wd]
    assert argv[8:12] == ["-e", "GDAL_CACHEMAX=512", "-e", "AWS_REGION"]
    assert argv[12:] == ["registry/tool:1.2", "--band=B04"]


@pytest.mark.parametrize("name, ids, expected", [
    ("pass", ("a", "b", "c"), True),
    ("different_T0_T1", ("a", "b", "b"), True), ("equal_T0_T1", ("a", "b", "b"), False),
    ("different_T0_T2", ("a", "a", "a"), False), ("equal_T0_T2", ("a", "a", "a"), True),
    ("different_T1_T2", ("a", "b", "c"), True), ("equal_T1_T2", ("a", "b", "c"), False),
])
def test_tile_conditions_compare_scene_ids(name, ids, expected):
    assert cond.tile_condition(name, ids) is expected


def test_error_and_file_conditions():
    assert cond.error_condition("on_failure", failed=True, fatal=False)
    assert not cond.error_condition("on_fatal_failure", failed=True, fatal=False)
    assert cond.error_condition("on_fatal_failure", failed=True, fatal=True)
    assert not cond.error_condition("on_failure", failed=False, fatal=False)
    assert cond.file_condition("file_exists", True) and cond.file_condition("file_not_exist", False)
    assert [cond.kind(c) for c in ("equal_T0_T1", "file_exists", "on_failure")] == ["tile", "file", "error"]


@pytest.mark.parametrize("engine, lines, outcome", [
    ("python", ["x", "FATAL ERROR: empty", "ERROR: later"], "fatal"),
    ("cmd", ["TEMPORARY ERROR: busy"], "temporary"),
    ("python", ["requests: Read timed out"], "temporary"),
    ("python", ["socket: Temporary failure in name resolution"], "temporary"),
    ("snap", ["Error: Try again later"], "temporary"),
    ("snap", ["Error: no orbit"], "error"),
    ("cmd", ["Read timed out"], "error"),
    ("python", ["ERROR: bad"], "error"),
    ("docker", ["docker: Error response from daemon: manifest for tool:9 not found: manifest unknown"], "temporary"),
    ("docker", ["docker: Error response from daemon: invalid mount config"], "error"),
])
def test_failures_are_classified_per_engine(engine, lines, outcome):
    assert step_outcome(lines, engine)[0] == outcome


def _raster(path: Path, data: np.ndarray, nodata: float | None = None) -> None:
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": data.dtype.name, "crs": "EPSG:32631", "transform": Affine(20, 0, 400000, 0, -20, 4800000),
               "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True)


def test_convert_rescales_clips_rounds_and_keeps_nodata(tmp_path):
    data = np.array([[0.0, 0.25, 0.5], [1.0, 2.0, np.nan]], dtype="float32")
    _raster(tmp_path / "in.tif", data, nodata=np.nan)
    proc = _script("convert.py", f"--file-in={tmp_path / 'in.tif'}", f"--file-out={tmp_path / 'out.tif'}",
                   "--range-in=0,1", "--dformat-out=Int16,-32768,0,1000")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "out.tif") as ds:
        out = ds.read(1)
        assert ds.dtypes[0] == "int16" and ds.nodata == -32768 and ds.scales == (0.001,)
    assert out.tolist() == [[0, 250, 500], [1000, 1000, -32768]]
    assert cog_validate(str(tmp_path / "out.tif"))[0]


def test_convert_rejects_a_bad_dformat_with_error_prefix(tmp_path):
    _raster(tmp_path / "in.tif", np.zeros((2, 2), dtype="float32"))
    proc = _script("convert.py", f"--file-in={tmp_path / 'in.tif'}", "--range-in=0,1", "--dformat-out=int64,0,0,1")
    assert proc.returncode == 1 and proc.stderr.startswith("ERROR: ") and "unknown dtype" in proc.stderr


def test_erode_mask_dilates_the_invalid_border(tmp_path):
    data = np.zeros((12, 12), dtype="float32")
    data[2:10, 2:10] = 5.0
    _raster(tmp_path / "in.tif", data, nodata=0)
    proc = _script("erode_mask.py", f"--file-in={tmp_path / 'in.tif'}", f"--file-out={tmp_path / 'out.tif'}",
                   "--iterations=2")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "out.tif") as ds:
        out = ds.read(1)
    assert (out[4:8, 4:8] == 5).all() and (out[:4] == 0).all() and (out[:, 8:] == 0).all()
    assert int((out == 5).sum()) == 16


def test_erode_mask_of_an_empty_raster_is_fatal(tmp_path):
    _raster(tmp_path / "in.tif", np.zeros((4, 4), dtype="float32"), nodata=0)
    proc = _script("erode_mask.py", f"--file-in={tmp_path / 'in.tif'}", "--iterations=1")
    assert proc.returncode == 1 and "FATAL ERROR:" in proc.stderr and "empty" in proc.stderr


def test_create_cog_reprojects_to_a_valid_cog(tmp_path):
    _raster(tmp_path / "in.tif", np.arange(64 * 64, dtype="uint16").reshape(64, 64))
    proc = _script("create_cog.py", f"--filepath={tmp_path / 'in.tif'}", f"--fileout={tmp_path / 'out.tif'}",
                   "--projection=EPSG:4326")
    assert proc.returncode == 0, proc.stderr
    assert cog_validate(str(tmp_path / "out.tif"))[0]
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.crs.to_epsg() == 4326
