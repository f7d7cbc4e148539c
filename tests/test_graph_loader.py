"""Graph files: the JSON format (docs/graphs.md, "Graph file format") and its load-time validation."""

from __future__ import annotations

import copy
import json

import pytest

from ingester.errors import GraphError
from ingester.graph.loader import builtin_names, find_graph, load_graph, parse_graph
from ingester.graph.model import DFormat

GOOD = {
    "config": {"dformat_out": "int16,-32768,0,1000", "erode_iterations": "5"},
    "envs": [],
    "processing_steps": [
        {"engine": "cmd", "command": "true", "condition": "pass",
         "args": {"file-in": {"type": "in", "tile_index": 0, "layer": "sigma0_VV", "extension": "tif"},
                  "file-out": {"type": "out", "layer": "sigma0_VV_eroded", "extension": "tif"},
                  "iterations": {"type": "config", "value": "erode_iterations"}}}],
    "in_files": [[{"layer": "sigma0_VV", "extension": "tif", "condition": "pass"}], [], []],
    "out_files": [[
        {"layer": "sigma0_VV_eroded", "extension": "tif", "action": "to_index",
         "dformat_out": {"type": "config", "value": "dformat_out"}, "ext_min_value": 0, "ext_max_value": 1},
        {"layer": "sigma0_VV", "extension": "tif", "action": "to_delete",
         "condition": "pass", "error_condition": "on_fatal_failure"}]],
}


def parse(doc, scene_graph=False):
    return parse_graph(doc, "mygraph.json", scene_graph=scene_graph)


def test_reference_example_loads_with_defaults():
    graph = parse(GOOD)
    assert graph.config["erode_iterations"] == "5"
    assert [a.type for a in graph.steps[0].args.values()] == ["in", "out", "config"]
    out = graph.out_files[0][0]
    assert (out.action, out.condition, out.exponent, out.nbands) == ("to_index", "pass", 1.0, 1)
    assert graph.out_files[0][1].error_condition == "on_fatal_failure"
    assert len(graph.in_files) == 3 and graph.in_files[1] == ()


def test_missing_or_empty_condition_means_pass():
    doc = copy.deepcopy(GOOD)
    del doc["processing_steps"][0]["condition"]
    doc["in_files"][0][0]["condition"] = ""
    graph = parse(doc)
    assert graph.steps[0].condition == "pass" and graph.in_files[0][0].condition == "pass"


@pytest.mark.parametrize("mutate, where, words", [
    (lambda d: d["processing_steps"][0].update(engine="bash"), "processing_steps[0].engine", "unknown engine"),
    (lambda d: d["processing_steps"][0]["args"].update(x={"type": "tile_in", "value": "a"}),
     "processing_steps[0].args.x.type", "unknown argument type"),
    (lambda d: d["processing_steps"][0]["args"].update(x={"type": "tile", "value": "orbit"}),
     "processing_steps[0].args.x.value", "unknown tile key"),
    (lambda d: d["processing_steps"][0]["args"]["file-in"].update(tile_index=3),
     "processing_steps[0].args.file-in.tile_index", "0, 1 or 2"),
    (lambda d: d["processing_steps"][0].update(condition="file_exists"),
     "processing_steps[0].condition", "not allowed on a step"),
    (lambda d: d["processing_steps"][0].update(condition="sometimes"),
     "processing_steps[0].condition", "unknown condition"),
    (lambda d: d["in_files"][0][0].update(condition="on_failure"), "in_files[0][0].condition",
     "not allowed on an in-file"),
    (lambda d: d["out_files"][0][0].update(error_condition="pass"), "out_files[0][0].error_condition",
     "not allowed on error_condition"),
    (lambda d: d["out_files"][0][0].update(action="to_upload"), "out_files[0][0].action", "unknown action"),
    (lambda d: d["out_files"][0][0].update(dformat_out={"type": "fixed", "value": "int16,0,0"}),
     "out_files[0][0].dformat_out", "4 comma-separated parts"),
    (lambda d: d["out_files"][0][0].update(dformat_out={"type": "tile", "value": "date"}),
     "out_files[0][0].dformat_out.type", "unknown argument type"),
    (lambda d: d["out_files"][0][0].update(datatype="int64"), "out_files[0][0].datatype", "unknown data type"),
    (lambda d: d["out_files"][0][0].update(ext_max_value=0), "out_files[0][0]", "ext_min_value"),
    (lambda d: d["out_files"].extend([[], [], []]), "out_files", "at most 3"),
    (lambda d: d.update(extra=1), "", "unknown key(s) extra"),
    (lambda d: d["config"].update(n=5), "config.n", "must be a string"),
    (lambda d: d["out_files"][0][0].update(optional="yes"), "out_files[0][0].optional", "must be true or false"),
    (lambda d: d["out_files"][0][1].update(optional=True), "out_files[0][1].optional",
     "applies to outputs the graph stores (to_create, to_index), not to to_delete"),
    (lambda d: d["out_files"][0][0].update(optional=False, condition="on_failure"), "out_files[0][0].optional",
     "no meaning for an output kept on failure"),
])
def test_invalid_graph_names_file_and_place(mutate, where, words):
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    with pytest.raises(GraphError) as err:
        parse(doc)
    text = str(err.value)
    assert text.startswith("graph mygraph.json: ")
    assert where in text and words in text


def test_scene_graph_rejects_t1_t2_conditions_and_inputs():
    for mutate, words in [
        (lambda d: d["processing_steps"][0].update(condition="different_T0_T1"), "scene graph"),
        (lambda d: d["out_files"][0][1].update(condition="equal_T0_T2"), "scene graph"),
        (lambda d: d["processing_steps"][0]["args"]["file-in"].update(tile_index=1), "only has T0"),
        (lambda d: d["processing_steps"][0]["args"].update(c={"type": "tile", "value": "cohdate"}), "cohdate"),
        (lambda d: d["out_files"].append([{"layer": "x", "extension": "tif"}]), "only has T0"),
    ]:
        doc = copy.deepcopy(GOOD)
        mutate(doc)
        parse(doc)  # fine as a tile graph
        with pytest.raises(GraphError, match=words):
            parse(doc, scene_graph=True)


def test_missing_python_script_fails_the_load(tmp_path):
    doc = copy.deepcopy(GOOD)
    doc["processing_steps"][0].update(engine="python", command="python/nowhere.py")
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(GraphError, match=r"processing_steps\[0\]\.command: python file 'python/nowhere.py' not found"):
        load_graph("g.json", [str(tmp_path)])


def test_names_resolve_to_library_first_then_payload_folder(tmp_path):
    (tmp_path / "Pass.json").write_text(json.dumps({"processing_steps": "broken"}))
    (tmp_path / "mine.json").write_text(json.dumps(GOOD))
    assert find_graph("Pass", [str(tmp_path)])[1] is True
    assert find_graph("library/graph/ExtractS2Bands.json", [str(tmp_path)])[1] is True
    path, builtin = find_graph("mine.json", [str(tmp_path)])
    assert not builtin and path == (tmp_path / "mine.json").resolve()
    with pytest.raises(GraphError, match="not found: not a built-in graph"):
        find_graph("other.json", [str(tmp_path)])


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{\"config\": ")
    with pytest.raises(GraphError, match=r"graph .*bad.json: invalid JSON at line 1"):
        load_graph("bad.json", [str(tmp_path)])


def test_every_builtin_graph_loads():
    scene_graphs = {"CopyProductToStorage", "S1Preprocessing", "Pass"}
    names = builtin_names()
    assert {"Pass", "CopyProductToStorage", "ExtractS2Bands", "S1Preprocessing", "S1BackscatterCoherence",
            "S1CoregExtract"} <= set(names)
    for name in names:
        graph = load_graph(name, scene_graph=name in scene_graphs)
        assert graph.builtin


def test_dformat_parsing_is_case_insensitive_and_strict():
    assert DFormat.parse("Int16,-32768,0,1000") == DFormat("int16", -32768, 0, 1000)
    fmt = DFormat.parse("float32,NaN,0,32767")
    assert fmt.dtype == "float32" and fmt.nodata != fmt.nodata
    assert str(DFormat.parse("f4,0,0,1")) == "float32,0,0,1"
    for bad in ("int16,0,1,1", "int64,0,0,1", "int16,x,0,1", "uint16,NaN,0,32767", "uint8,0,0,256"):
        with pytest.raises(ValueError):
            DFormat.parse(bad)


def test_out_file_numbers_accept_numeric_strings_and_reject_others():
    doc = copy.deepcopy(GOOD)
    doc["out_files"][0][0].update(ext_min_value="-1", ext_max_value=1, nodata="NaN")
    out = parse(doc).out_files[0][0]
    assert out.ext_min_value == -1 and out.nodata != out.nodata
    doc["out_files"][0][0].update(ext_max_value=[1])
    with pytest.raises(GraphError, match=r"out_files\[0\]\[0\]\.ext_max_value: must be a number, got \[1\]"):
        parse(doc)


def test_optional_outputs_default_to_the_file_exists_condition_and_may_be_set():
    doc = copy.deepcopy(GOOD)
    outs = doc["out_files"][0]
    outs.append({"layer": "maybe", "extension": "tif", "action": "to_create", "condition": "file_exists"})
    outs.append({"layer": "needed", "extension": "tif", "action": "to_create", "condition": "file_exists",
                 "optional": False})
    outs.append({"layer": "extra", "extension": "tif", "action": "to_create", "optional": True})
    graph = parse(doc)
    assert [o.may_be_missing for o in graph.out_files[0]] == [False, False, True, False, True]
