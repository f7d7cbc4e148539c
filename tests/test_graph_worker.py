"""The processing job: arguments, conditions, actions and error paths of run_tile_job / run_scene_graph."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from ingester.graph.worker import log_path_for, run_scene_graph, run_tile_job
from ingester.payload import Layer
from tests.fakes.graph_jobs import s1_scene, scene_job, settings, tile_job, write_graph

# A step script: records its arguments, writes the files named by --write, fails as asked.
STEP = r'''
import json, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open("args.json", "w") as fh:
    json.dump(args, fh)
for name in filter(None, args.get("write", "").split(",")):
    with open(name, "w") as fh:
        fh.write("content of " + name)
mode = args.get("mode", "")
if mode == "fatal":
    print("FATAL ERROR: the input is unusable", flush=True); sys.exit(1)
if mode == "temporary":
    print("TEMPORARY ERROR: server busy", flush=True); sys.exit(1)
if mode == "fail":
    print("ERROR: something broke", flush=True); sys.exit(3)
if mode == "sleep":
    time.sleep(30)
'''


@pytest.fixture
def env(tmp_path):
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "step.py").write_text(STEP)
    return tmp_path


def step(args: dict, condition: str = "pass") -> dict:
    return {"engine": "python", "command": "step.py", "condition": condition, "args": args}


def fixed(v: str) -> dict:
    return {"type": "fixed", "value": v}


def graph(env: Path, name: str, steps: list, out_files: list, in_files=None, config=None) -> str:
    write_graph(env / "graphs", name, {"config": config or {}, "envs": [], "processing_steps": steps,
                                       "in_files": in_files or [[], [], []], "out_files": out_files})
    return name


def run(env, name, scene_tile=None, **kwargs):
    scene, tile = scene_tile or s1_scene(4)
    job = tile_job(scene, tile, env / "storage", env / "work" / "job1", name, [env / "graphs"], **kwargs)
    return run_tile_job(job, settings()), job


def prefix(env: Path, scene, tile) -> Path:
    return env / "storage" / "aoi" / scene.source_id / "tiles" / tile.source_id


def test_every_argument_type_reaches_the_step(env):
    prev, ref, cur = s1_scene(23), s1_scene(11), s1_scene(4)
    name = graph(env, "args.json", [step({
        "fixed": fixed("a b"), "config": {"type": "config", "value": "k"},
        "swath": {"type": "tile", "value": "swath"}, "number": {"type": "tile", "value": "number"},
        "scene": {"type": "tile", "value": "scene"}, "date": {"type": "tile", "value": "date"},
        "constellation": {"type": "tile", "value": "constellation"},
        "cohdate": {"type": "tile", "value": "cohdate"},
        "in1": {"type": "in", "tile_index": 1, "layer": "coregextract", "extension": "dim"},
        "out": {"type": "out", "layer": "sigma0_VV", "extension": "tif"},
        "pattern": {"type": "out", "layer": "*", "extension": "tif"},
        "write": fixed("args-copy.json")})],
        [[{"layer": "__product__", "extension": "*", "action": "to_create"}]], config={"k": "default"})
    result, job = run(env, name, cur, previous=prev, reference=ref, graph_config={"k": "override"})
    assert result.outcome == "done", result.message
    stored = prefix(env, *cur) / f"{cur[0].source_id}.zip"
    with zipfile.ZipFile(stored) as zf:
        args = json.loads(zf.read("args.json"))
    assert args == {
        "fixed": "a b", "config": "override", "swath": "IW1", "number": "3", "scene": cur[0].source_id,
        "date": "04Jan2022", "constellation": "Sentinel1", "cohdate": "11Jan2022",
        "in1": "20220123_A44_IW1_8951_coregextract.dim", "out": "20220104_A44_IW1_8951_sigma0_VV.tif",
        "pattern": "20220104_A44_IW1_8951_*.tif", "write": "args-copy.json"}
    assert not Path(job.workdir).exists()


def test_missing_config_key_is_an_error_naming_it(env):
    name = graph(env, "g.json", [step({"x": {"type": "config", "value": "nokey"}})], [[]])
    result, _ = run(env, name)
    assert result.outcome == "error"
    assert "key 'nokey' not found in config" in result.message


def test_step_condition_skips_the_step_for_a_root_tile(env):
    name = graph(env, "g.json", [step({"mode": fixed("fatal")}, condition="different_T0_T1")], [[]])
    result, _ = run(env, name)
    assert result.outcome == "done"
    assert "skipped: condition different_T0_T1 is false" in Path(result.log_path).read_text()


def test_actions_store_index_delete_and_ignore(env):
    scene, tile = s1_scene(4)
    old = prefix(env, scene, tile) / "20220104_A44_IW1_8951_old.tif"
    old.parent.mkdir(parents=True)
    old.write_text("stale")
    name = graph(env, "g.json", [step({"write": fixed("20220104_A44_IW1_8951_a.tif,20220104_A44_IW1_8951_b.tif,"
                                                      "20220104_A44_IW1_8951_c.tif")})],
                 [[{"layer": "a", "extension": "tif", "action": "to_create"},
                   {"layer": "b", "extension": "tif", "action": "to_index", "nbands": 2, "exponent": 2,
                    "dformat_out": fixed("Int16,-32768,0,1000"), "ext_min_value": 0, "ext_max_value": 1},
                   {"layer": "c", "extension": "tif", "action": "to_ignore"},
                   {"layer": "old", "extension": "tif", "action": "to_delete"},
                   {"layer": "d", "extension": "tif", "action": "to_create", "condition": "file_exists"},
                   {"layer": "c", "extension": "tif", "action": "to_create", "condition": "file_not_exist"}]])
    result, _ = run(env, name, (scene, tile), layers={"b": Layer("B", "raw")})
    assert result.outcome == "done", result.message
    folder = prefix(env, scene, tile)
    assert sorted(p.name for p in folder.iterdir()) == ["20220104_A44_IW1_8951_a.tif", "20220104_A44_IW1_8951_b.tif"]
    (out,) = result.outputs
    assert out.layer == "b" and out.uri == str(folder / "20220104_A44_IW1_8951_b.tif")
    assert (out.tile_source_id, out.bands, out.dtype, out.nodata) == ("A44_IW1_8951", (1, 2), "int16", -32768)
    assert (out.min_value, out.max_value, out.real_min, out.real_max, out.exponent) == (0, 1000, 0, 1, 2)


def test_a_kept_output_the_graph_did_not_write_is_an_error(env):
    name = graph(env, "g.json", [], [[{"layer": "e", "extension": "tif", "action": "to_create",
                                       "condition": "file_not_exist"}]])
    result, _ = run(env, name)
    assert result.outcome == "error" and "1 declared output(s) not produced: e" in result.message


def test_declared_outputs_missing_after_the_steps_make_the_job_an_error_naming_every_one(env):
    """A graph that writes 1 of its outputs is not DONE: the message and the details name the others;
    nothing is stored (the job failed) and the inputs a success would delete stay."""
    scene, tile = s1_scene(4)
    stored_input = prefix(env, scene, tile) / "20220104_A44_IW1_8951_input.tif"
    stored_input.parent.mkdir(parents=True)
    stored_input.write_text("input")
    name = graph(env, "g.json", [step({"write": fixed("20220104_A44_IW1_8951_a.tif")})], [[
        {"layer": "a", "extension": "tif", "action": "to_create"},
        {"layer": "b", "extension": "tif", "action": "to_create", "condition": "file_exists", "optional": False},
        {"layer": "c", "extension": "tif", "action": "to_create", "condition": "file_exists"},
        {"layer": "d", "extension": "tif", "action": "to_create", "optional": True},
        {"layer": "e", "extension": "tif", "action": "to_index", "datatype": "uint16", "ext_min_value": 0,
         "ext_max_value": 1},
        {"layer": "f", "extension": "tif", "action": "to_create", "condition": "different_T0_T1"},  # not for a root
        {"layer": "input", "extension": "tif", "action": "to_delete"}]])
    result, _ = run(env, name, (scene, tile))
    assert result.outcome == "error"
    assert "graph g: 2 declared output(s) not produced: b, e" in result.message
    assert result.details["missing_outputs"] == ["b", "e"] and result.details["optional_missing"] == ["c", "d"]
    assert sorted(p.name for p in prefix(env, scene, tile).iterdir()) == ["20220104_A44_IW1_8951_input.tif"]
    assert "declared output(s) not produced: b, e" in Path(result.log_path).read_text()


def test_a_missing_indexed_output_of_a_layer_the_payload_does_not_ask_for_is_not_required(env):
    """A graph config may pick a subset of the graph's layers (ExtractS2Bands' `bands`): an indexed
    output the payload does not name would only be stored, so its absence is noted, not an error."""
    indexed = {"action": "to_index", "extension": "tif", "datatype": "uint16", "ext_min_value": 0,
               "ext_max_value": 1}
    name = graph(env, "g.json", [step({"write": fixed("20220104_A44_IW1_8951_a.tif")})],
                 [[{"layer": "a", **indexed}, {"layer": "b", **indexed}]])
    result, _ = run(env, name, layers={"a": Layer("A", "raw")})
    assert result.outcome == "done", result.message
    assert [o.layer for o in result.outputs] == ["a"] and result.details["optional_missing"] == ["b"]
    result, _ = run(env, name, layers={"a": Layer("A", "raw"), "b": Layer("B", "raw")})
    assert result.outcome == "error" and "1 declared output(s) not produced: b" in result.message


def test_optional_outputs_may_be_missing_and_are_noted(env):
    name = graph(env, "g.json", [step({"write": fixed("20220104_A44_IW1_8951_a.tif")})], [[
        {"layer": "a", "extension": "tif", "action": "to_create"},
        {"layer": "c", "extension": "tif", "action": "to_create", "condition": "file_exists"},
        {"layer": "d", "extension": "tif", "action": "to_create", "optional": True}]])
    scene, tile = s1_scene(4)
    result, _ = run(env, name, (scene, tile))
    assert result.outcome == "done", result.message
    assert result.details["notes"] == ["optional output(s) not produced: c, d"]
    assert [p.name for p in prefix(env, scene, tile).iterdir()] == ["20220104_A44_IW1_8951_a.tif"]


def test_indexed_layer_outside_the_payload_layers_is_stored_not_indexed(env):
    name = graph(env, "g.json", [step({"write": fixed("20220104_A44_IW1_8951_x.tif")})],
                 [[{"layer": "x", "extension": "tif", "action": "to_index", "datatype": "float32",
                    "ext_min_value": 0, "ext_max_value": 1}]])
    scene, tile = s1_scene(4)
    result, _ = run(env, name, (scene, tile), layers={"B01": Layer("B01", "raw")})
    assert result.outcome == "done" and result.outputs == ()
    assert (prefix(env, scene, tile) / "20220104_A44_IW1_8951_x.tif").exists()
    assert "not among the payload's layers" in result.details["notes"][0]


FAILURE_OUTS = [[
    {"layer": "on_any", "extension": "txt", "action": "to_create", "condition": "on_failure"},
    {"layer": "on_fatal", "extension": "txt", "action": "to_create", "condition": "on_fatal_failure"},
    {"layer": "guarded", "extension": "txt", "action": "to_create", "condition": "file_exists",
     "error_condition": "on_failure"},
    {"layer": "success_only", "extension": "txt", "action": "to_create", "condition": "pass"},
    {"layer": "disabled", "extension": "txt", "action": "to_create", "condition": "on_failure",
     "error_condition": "on_fatal_failure"},
]]
WRITE_ALL = ",".join(f"20220104_A44_IW1_8951_{x}.txt" for x in ("on_any", "on_fatal", "guarded", "success_only",
                                                                  "disabled"))


@pytest.mark.parametrize("mode, retriable, outcome, kept", [
    ("fatal", True, "fatal", {"on_any", "on_fatal", "guarded", "disabled"}),
    ("fail", True, "error", {"on_any", "guarded"}),
    ("fail", False, "error", {"on_any", "on_fatal", "guarded", "disabled"}),  # not retriable: made fatal
    ("temporary", True, "temporary", {"on_any", "guarded"}),
    ("", True, "done", {"success_only", "guarded"}),
])
def test_failure_paths_follow_error_conditions(env, mode, retriable, outcome, kept):
    name = graph(env, "g.json", [step({"write": fixed(WRITE_ALL), "mode": fixed(mode)})], FAILURE_OUTS)
    scene, tile = s1_scene(4)
    tile.is_retriable = retriable
    result, job = run(env, name, (scene, tile))
    assert result.outcome == outcome
    folder = prefix(env, scene, tile)
    stored = {p.name[len("20220104_A44_IW1_8951_"):-4] for p in folder.iterdir()} if folder.exists() else set()
    assert stored == kept
    assert not Path(job.workdir).exists()


def test_failure_message_has_the_error_line_and_log_tail(env):
    name = graph(env, "g.json", [step({"mode": fixed("fatal")})], [[]])
    result, job = run(env, name)
    assert result.outcome == "fatal"
    assert "step 0 (python step.py) failed (exit code 1): FATAL ERROR: the input is unusable" in result.message
    assert result.log_path == str(log_path_for(job.workdir))
    assert "FATAL ERROR: the input is unusable" in Path(result.log_path).read_text()


def test_a_step_that_times_out_is_killed_and_temporary(env):
    name = graph(env, "g.json", [step({"mode": fixed("sleep")})], [[]], config={"step_timeout": "0.5"})
    result, _ = run(env, name)
    assert result.outcome == "temporary"
    assert "timed out after 0.5 s" in result.message


def test_snap_without_gpt_reports_it(env, monkeypatch):
    monkeypatch.setenv("PATH", str(env / "empty"))
    monkeypatch.delenv("SNAPPATH", raising=False)
    scene, tile = s1_scene(4)
    prev = s1_scene(1)
    # inputs exist in storage so that the failure comes from the engine
    for s, t in (scene, tile), prev:
        folder = prefix(env, s, t)
        folder.mkdir(parents=True, exist_ok=True)
        d = t.date.strftime("%Y%m%d")
        with zipfile.ZipFile(folder / f"{d}_{t.source_id}_preprocessed.zip", "w") as zf:
            zf.writestr(f"{d}_{t.source_id}_preprocessed.dim", "<Dimap_Document/>")
    job = tile_job(scene, tile, env / "storage", env / "work" / "job1", "S1BackscatterCoherence",
                   previous=prev, reference=prev)
    result = run_tile_job(job, settings())
    assert result.outcome == "error"
    assert "SNAP's gpt is not installed" in result.message and "INGESTER_SNAP_GPT" in result.message


def test_docker_and_cmd_missing_are_reported(env, monkeypatch):
    monkeypatch.setenv("PATH", str(env / "empty"))
    name = graph(env, "d.json", [{"engine": "docker", "command": "alpine:3", "args": {}}], [[]])
    result, _ = run(env, name)
    assert result.outcome == "error" and "docker is not installed" in result.message
    name = graph(env, "c.json", [{"engine": "cmd", "command": "no-such-tool", "args": {}}], [[]])
    result, _ = run(env, name)
    assert result.outcome == "error" and "command 'no-such-tool' not found" in result.message


def test_cmd_engine_runs_an_argument_list_without_a_shell(env):
    tool = env / "graphs" / "tool.sh"
    tool.write_text("#!/bin/sh\nprintf '%s' \"$1\" > 20220104_A44_IW1_8951_arg.txt\n")
    tool.chmod(0o755)
    name = graph(env, "c.json", [{"engine": "cmd", "command": str(tool), "args": {"x": fixed("$(id); rm -rf /")}}],
                 [[{"layer": "arg", "extension": "txt", "action": "to_create"}]])
    scene, tile = s1_scene(4)
    result, _ = run(env, name, (scene, tile))
    assert result.outcome == "done", result.message
    assert (prefix(env, scene, tile) / "20220104_A44_IW1_8951_arg.txt").read_text() == "--x=$(id); rm -rf /"


def test_missing_input_in_storage_is_an_error_naming_it(env):
    name = graph(env, "g.json", [], [[]], in_files=[[{"layer": "sigma0_VV", "extension": "tif"}], [], []])
    result, _ = run(env, name)
    assert result.outcome == "error"
    assert "input 'sigma0_VV' of T0" in result.message and "not found in storage" in result.message


# A chain of S1 bursts: each tile reads its previous and reference inputs, writes a value derived from them.
CHAIN_STEP = r'''
import sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
cur = open(args["cur"]).read()
prev = open(args["prev"]).read()
ref = open(args["ref"]).read()
open(args["out"], "w").write(f"{cur}|prev={prev}|ref={ref}")
'''


def test_chain_of_s1_tiles_reads_previous_and_reference_in_release_order(env):
    (env / "graphs" / "chain.py").write_text(CHAIN_STEP)
    name = graph(env, "chain.json", [{"engine": "python", "command": "chain.py", "args": {
        "cur": {"type": "in", "tile_index": 0, "layer": "pre", "extension": "txt"},
        "prev": {"type": "in", "tile_index": 1, "layer": "pre", "extension": "txt"},
        "ref": {"type": "in", "tile_index": 2, "layer": "pre", "extension": "txt"},
        "out": {"type": "out", "layer": "result", "extension": "txt"}}}],
        [[{"layer": "result", "extension": "txt", "action": "to_create"}], [], []],
        in_files=[[{"layer": "pre", "extension": "txt"}], [{"layer": "pre", "extension": "txt"}],
                  [{"layer": "pre", "extension": "txt", "condition": "different_T0_T2"}]])
    chain = [s1_scene(11), s1_scene(23), s1_scene(28)]
    for s, t in chain:  # the scene graph's outputs of each burst
        folder = prefix(env, s, t)
        folder.mkdir(parents=True)
        (folder / f"{t.date:%Y%m%d}_{t.source_id}_pre.txt").write_text(f"{t.date:%d}")
    ref = chain[0]
    results = []
    for i, (s, t) in enumerate(chain):  # release order: root, then each child once its previous is DONE
        previous = chain[i - 1] if i else None
        job = tile_job(s, t, env / "storage", env / "work" / f"job{i}", name, [env / "graphs"],
                       previous=previous, reference=ref if i else None, job_id=i + 1)
        results.append(run_tile_job(job, settings()))
    assert [r.outcome for r in results] == ["done"] * 3, [r.message for r in results]
    texts = [(prefix(env, s, t) / f"{t.date:%Y%m%d}_{t.source_id}_result.txt").read_text() for s, t in chain]
    assert texts == ["11|prev=11|ref=11", "23|prev=11|ref=11", "28|prev=23|ref=11"]


def test_scene_graph_stores_to_create_outputs_of_t0(env):
    (env / "graphs" / "scene.py").write_text(
        "import sys\nargs = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "open(args['out'], 'w').write(open(args['scene'] + '.SAFE/manifest.safe').read())\n")
    write_graph(env / "graphs", "sg.json", {"processing_steps": [{"engine": "python", "command": "scene.py",
        "args": {"scene": {"type": "tile", "value": "scene"},
                 "out": {"type": "out", "layer": "preprocessed", "extension": "txt"}}}],
        "out_files": [[{"layer": "preprocessed", "extension": "txt", "action": "to_create"},
                       {"layer": "ignored", "extension": "txt", "action": "to_index", "datatype": "uint8",
                        "ext_min_value": 0, "ext_max_value": 1, "condition": "file_exists"}]]})
    scene, tile = s1_scene(4, graph="")
    scene.graph_name = "sg.json"
    workdir = env / "download"
    product = workdir / f"{scene.source_id}.SAFE"
    product.mkdir(parents=True)
    (product / "manifest.safe").write_text("manifest")
    result = run_scene_graph(scene_job(scene, env / "storage", workdir, [env / "graphs"]), product, settings())
    assert result.outcome == "done", result.message
    assert (prefix(env, scene, tile) / "20220104_A44_IW1_8951_preprocessed.txt").read_text() == "manifest"


def test_scene_graph_with_t1_condition_is_rejected(env):
    write_graph(env / "graphs", "sg.json", {"processing_steps": [], "out_files": [[
        {"layer": "x", "extension": "txt", "action": "to_create", "condition": "different_T0_T1"}]]})
    scene, _ = s1_scene(4)
    scene.graph_name = "sg.json"
    result = run_scene_graph(scene_job(scene, env / "storage", env / "dl", [env / "graphs"]), env / "dl" / "x.SAFE",
                             settings())
    assert result.outcome == "error" and "scene graph" in result.message and "out_files[0][0].condition" in \
        result.message


def test_pass_graph_is_done_with_nothing(env):
    result, job = run(env, "Pass")
    assert result.outcome == "done" and result.outputs == ()
    assert not Path(job.workdir).exists()


def test_tile_without_graph_name_is_an_error_not_the_scene_graph(env):
    scene, tile = s1_scene(4)
    scene.graph_name = "CopyProductToStorage"
    result, _ = run(env, "", (scene, tile))
    assert result.outcome == "error" and "has no tile graph" in result.message


def test_steps_do_not_see_the_ingester_credentials(env, monkeypatch):
    monkeypatch.setenv("INGESTER_CDSE_PASSWORD", "hunter2")
    monkeypatch.setenv("INGESTER_ASF_TOKEN", "tok")
    monkeypatch.setenv("MY_STEP_SETTING", "visible")
    (env / "graphs" / "envdump.py").write_text(
        "import os\nopen('20220104_A44_IW1_8951_env.txt', 'w').write(repr(sorted(os.environ.items())))\n")
    name = graph(env, "g.json", [{"engine": "python", "command": "envdump.py", "args": {}}],
                 [[{"layer": "env", "extension": "txt", "action": "to_create"}]])
    scene, tile = s1_scene(4)
    result, _ = run(env, name, (scene, tile))
    assert result.outcome == "done", result.message
    dumped = (prefix(env, scene, tile) / "20220104_A44_IW1_8951_env.txt").read_text()
    assert "MY_STEP_SETTING" in dumped and "hunter2" not in dumped and "INGESTER_ASF_TOKEN" not in dumped


def test_tile_job_on_s3_storage_imports_and_stores_through_a_real_s3_api(env, monkeypatch):
    import fsspec

    from tests.fakes.moto_s3 import make_bucket, moto_s3, s3_env

    (env / "graphs" / "chain.py").write_text(CHAIN_STEP)
    name = graph(env, "chain.json", [{"engine": "python", "command": "chain.py", "args": {
        "cur": {"type": "in", "tile_index": 0, "layer": "pre", "extension": "txt"},
        "prev": {"type": "in", "tile_index": 1, "layer": "pre", "extension": "txt"},
        "ref": {"type": "in", "tile_index": 2, "layer": "pre", "extension": "txt"},
        "out": {"type": "out", "layer": "result", "extension": "txt"}}}],
        [[{"layer": "result", "extension": "txt", "action": "to_create"},
          {"layer": "pre", "extension": "txt", "action": "to_delete", "condition": "different_T0_T2"}]],
        in_files=[[{"layer": "pre", "extension": "txt"}], [{"layer": "pre", "extension": "txt"}],
                  [{"layer": "pre", "extension": "txt"}]])
    with moto_s3() as endpoint:
        s3_env(monkeypatch, endpoint)
        make_bucket(endpoint, "cube")
        fs = fsspec.filesystem("s3", key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
        ref, cur = s1_scene(11), s1_scene(23)
        for s, t in (ref, cur):
            fs.pipe(f"cube/data/aoi/{s.source_id}/tiles/{t.source_id}/{t.date:%Y%m%d}_{t.source_id}_pre.txt",
                    f"{t.date:%d}".encode())
        job = tile_job(cur[0], cur[1], "s3://cube/data", env / "work" / "s3job", name, [env / "graphs"],
                       previous=ref, reference=ref)
        result = run_tile_job(job, settings(s3_endpoint_url=endpoint, s3_access_key_id="testing",
                                            s3_secret_access_key="testing"))
        assert result.outcome == "done", result.message
        folder = f"cube/data/aoi/{cur[0].source_id}/tiles/{cur[1].source_id}"
        assert fs.cat(f"{folder}/20220123_A44_IW1_8951_result.txt") == b"23|prev=11|ref=11"
        assert not fs.exists(f"{folder}/20220123_A44_IW1_8951_pre.txt")  # deleted once processed


def test_scene_graph_of_a_scene_without_tiles_runs_on_the_scene_itself(env):
    (env / "graphs" / "touch.py").write_text(
        "import sys\nargs = dict(a[2:].split('=', 1) for a in sys.argv[1:])\nopen(args['out'], 'w').write('x')\n")
    write_graph(env / "graphs", "sg.json", {"processing_steps": [{"engine": "python", "command": "touch.py",
        "args": {"out": {"type": "out", "layer": "quicklook", "extension": "txt"}}}],
        "out_files": [[{"layer": "quicklook", "extension": "txt", "action": "to_create"}]]})
    scene, _ = s1_scene(4)
    scene.tiles = []
    scene.graph_name = "sg.json"
    (env / "dl").mkdir()
    result = run_scene_graph(scene_job(scene, env / "storage", env / "dl", [env / "graphs"]), env / "dl" / "p.SAFE",
                             settings())
    assert result.outcome == "done", result.message
    folder = env / "storage" / "aoi" / scene.source_id / "tiles" / scene.source_id
    assert (folder / f"20220104_{scene.source_id}_quicklook.txt").read_text() == "x"
