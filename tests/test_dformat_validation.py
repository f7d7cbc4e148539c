"""Data formats (`dtype,nodata,min,max`) are checked by one parser wherever the tool reads one: `layers
add --dformat`, a graph's `dformat_out`, a payload's `graph_config`. The dtype must be known, nodata/min/
max values the dtype can hold (a NaN no-data only for float types, then kept and shown as NaN), min lower
than max; a bad one is exit 2 naming the part, nothing written. An existing variable asked for another
format or unit is exit 2 saying what it has, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingester.graph.model import DFormat
from tests.fakes.aoi_data import write_s2_scenes


def layers(cli) -> list[dict]:
    result = cli("layers", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_nan_nodata_float_layer_is_kept_and_shown_as_nan_and_a_conflicting_add_is_a_clear_exit_2(cli):
    first = cli("layers", "add", "V1", "inst", "--dformat", "float32,nan,0,1")
    assert first.exit_code == 0, first.stderr
    assert layers(cli)[0]["dformat"] == {"dtype": "float32", "nodata": "NaN", "min": 0.0, "max": 1.0}
    text = cli("layers", "list").stdout.splitlines()[1].split("\t")
    assert text[3] == "float32,NaN,0,1"

    same = cli("layers", "add", "V1", "other", "--dformat", "Float32,NaN,0,1")  # the same format: a new instance
    assert same.exit_code == 0, same.stderr
    assert "added V1/other" in same.stderr

    conflict = cli("layers", "add", "V1", "third", "--dformat", "float32,0,0,1")
    assert conflict.exit_code == 2
    assert "variable 'V1' exists with dformat float32,NaN,0,1 (asked: float32,0,0,1)" in conflict.stderr
    assert "Traceback" not in conflict.stderr + conflict.stdout
    assert [row["instance"] for row in layers(cli)] == ["inst", "other"]


def test_a_different_unit_for_an_existing_variable_is_refused_not_reported_as_present(cli):
    assert cli("layers", "add", "T", "raw", "--unit", "K").exit_code == 0
    again = cli("layers", "add", "T", "raw", "--unit", "K")
    assert again.exit_code == 0 and "already present" in again.stderr
    other = cli("layers", "add", "T", "raw", "--unit", "degC")
    assert other.exit_code == 2
    assert "unit 'K' (asked: 'degC')" in other.stderr and "already present" not in other.stderr
    assert cli("layers", "add", "T", "second", "--unit", "degC").exit_code == 2
    assert [row["instance"] for row in layers(cli)] == ["raw"]


@pytest.mark.parametrize("dformat, names", [
    ("uint8,300,0,255", "nodata 300 does not fit in uint8 (0 … 255)"),
    ("uint8,0,-5,1000", "min -5 does not fit in uint8 (0 … 255)"),
    ("uint8,0,0,1000", "max 1000 does not fit in uint8 (0 … 255)"),
    ("uint16,nan,1,65535", "nodata NaN is not a value of the integer type uint16"),
    ("int16,0.5,0,100", "nodata 0.5 is not a whole number"),
    ("float32,0,nan,1", "min must be a number, not NaN"),
    ("float32,0,0,1e39", "max 1e+39 does not fit in float32"),
    ("float32,0,1,1", "min 1 must be lower than max 1"),
    ("int64,0,0,1", "dtype: unknown data type 'int64'"),
    ("float32,zero,0,1", "nodata 'zero' is not a number"),
    ("float32,0,1", "must have 4 comma-separated parts"),
])
def test_layers_add_refuses_a_format_its_dtype_cannot_hold_naming_the_part(cli, dformat, names):
    result = cli("layers", "add", "V", "i", "--dformat", dformat)
    assert result.exit_code == 2, result.stderr
    assert f"--dformat: dformat {dformat!r}" in result.stderr and names in result.stderr
    assert not Path("outputs/ingester.db").exists()  # bad input leaves no store behind (nothing added)


def test_the_same_rules_apply_to_a_graphs_dformat_out_and_to_a_payloads_graph_config(cli, repo, tmp_path):
    doc = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    doc["graph_config"] = {"dformat_out": "uint16,0,-5,1000"}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    result = cli("check", tmp_path / "p.json", "--scenes", scenes)
    assert result.exit_code == 2, result.stderr
    assert "graph_config.dformat_out" in result.stderr and "min -5 does not fit in uint16" in result.stderr

    graph = json.loads((repo / "ingester" / "graph" / "library" / "PhrProcessing.json").read_text())
    for out in graph["out_files"][0]:
        if out.get("dformat_out"):
            out["dformat_out"] = {"type": "fixed", "value": "uint8,300,0,255"}
    (tmp_path / "Mine.json").write_text(json.dumps(graph))
    doc.update(graph_config={}, tile_graph_name="Mine.json")
    (tmp_path / "p.json").write_text(json.dumps(doc))
    result = cli("check", tmp_path / "p.json", "--scenes", scenes)
    assert result.exit_code == 2, result.stderr
    assert "dformat_out" in result.stderr and "nodata 300 does not fit in uint8" in result.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()


def test_the_parser_keeps_nan_nodata_and_every_dtype_limit():
    fmt = DFormat.parse("f4, NaN, -1, 1")
    assert str(fmt) == "float32,NaN,-1,1" and fmt.same_as(DFormat.parse("float32,nan,-1,1"))
    assert str(DFormat.parse("int8,-128,-127,127")) == "int8,-128,-127,127"
    assert str(DFormat.parse("uint32,0,1,4294967295")) == "uint32,0,1,4294967295"
    with pytest.raises(ValueError, match="does not fit in int8"):
        DFormat.parse("int8,0,0,128")
