"""Layers (`ingester layers add|list`) and records: creation, reuse, sorted link tags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.coordinator import release_lock
from ingester.errors import InputError
from ingester.ingest import commit, prepare
from ingester.jobs import IndexedOutput
from ingester.payload import load_payload
from ingester.records import index_outputs, record_tags
from ingester.store import Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles, write_s2_scenes


def test_layers_add_and_list(cli):
    r = cli("layers", "add", "B04", "raw", "--dformat", "uint16,0,0,10000", "--unit", "reflectance", "--bands", "B4")
    assert r.exit_code == 0, r.stderr
    assert cli("layers", "add", "B04", "raw").exit_code == 0  # idempotent
    assert cli("layers", "add", "B04", "L2").exit_code == 0
    r = cli("layers", "list", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert [(x["variable"], x["instance"]) for x in rows] == [("B04", "L2"), ("B04", "raw")]
    assert rows[1]["dformat"] == {"dtype": "uint16", "nodata": 0.0, "min": 0.0, "max": 10000.0}
    assert rows[1]["unit"] == "reflectance" and rows[1]["bands"] == ["B4"]
    text = cli("layers", "list").stdout
    assert "B04\traw" in text


@pytest.mark.parametrize("dformat,problem", [
    ("uint16,0,0", "must have 4 comma-separated parts: dtype,nodata,min,max"),
    ("uint12,0,0,1", "unknown data type 'uint12'"),
    ("float32,x,0,1", "nodata 'x' is not a number"),
    ("float32,0,5,1", "min 5 must be lower than max 1"),
])  # fmt: skip
def test_layers_add_rejects_a_bad_dformat(cli, dformat, problem):
    r = cli("layers", "add", "B04", "raw", "--dformat", dformat)
    assert r.exit_code == 2
    assert problem in r.stderr
    assert not Path("outputs/ingester.db").exists()  # bad input leaves no store behind
    assert cli("layers", "add", "B03", "raw").exit_code == 0
    r = cli("layers", "add", "B04", "raw", "--dformat", dformat)  # and adds nothing to a store
    assert r.exit_code == 2 and problem in r.stderr
    assert [layer["variable"] for layer in json.loads(cli("layers", "list", "--json").stdout)] == ["B03"]


def test_layers_add_refuses_to_change_a_variable_dformat(cli):
    cli("layers", "add", "B04", "raw", "--dformat", "uint16,0,0,10000")
    r = cli("layers", "add", "B04", "L2", "--dformat", "float32,0,0,1")
    assert r.exit_code == 2 and "cannot be changed" in r.stderr


def test_record_tags_list_linked_scenes_sorted():
    scenes = s1_chain("X", 3, 2)
    tags = record_tags(scenes[2])
    assert tags["previous_scenes"] == json.dumps([scenes[1].source_id], separators=(",", ":"))
    assert tags["reference_scenes"] == f'["{scenes[0].source_id}"]'
    scenes[2].tiles[1].previous = scenes[0].tiles[1].ref  # two different previous scenes
    assert json.loads(record_tags(scenes[2])["previous_scenes"]) == sorted([scenes[0].source_id,
                                                                             scenes[1].source_id])
    assert record_tags(scenes[0])["previous_scenes"] == "[]"


def _ingest(store, payload, scenes_file, run="r"):
    result = commit(store, prepare(store, payload, Settings(), scenes_file=str(scenes_file), create_layers=True), run,
                    create_layers=True)
    release_lock(store, payload.name, run)
    return result


def test_records_are_reused_on_name_time_and_tags_and_created_otherwise(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s2.json")
    store = Store(tmp_path / "x.db")
    first = _ingest(store, payload, write_s2_scenes(tmp_path / "a.json", 2))
    assert (first.records_created, first.records_reused) == (2, 0)
    # processing sets processingDate on a record: it must not defeat reuse
    tile_id = store.one("SELECT min(id) FROM tile")
    instances = {"B04": str(store.instance_id("B04", "raw"))}
    with store.transaction():
        index_outputs(store, tile_id, [IndexedOutput("B04", "/s/B04.tif", "t")], instances)
    other = dataclasses.replace(payload, name="DenmarkOther")
    second = _ingest(store, other, write_s2_scenes(tmp_path / "b.json", 3, aoi="DenmarkOther"))
    assert (second.records_created, second.records_reused) == (1, 2)
    assert store.one("SELECT count(*) FROM record") == 3
    # a different tag value: a new record
    path = tmp_path / "c.json"
    doc = json.loads(write_s2_scenes(path, 1, aoi="DenmarkThird").read_text())
    doc["features"][0]["properties"]["tags"]["cloudCoverPercentage"] = "12.5"
    path.write_text(json.dumps(doc))
    third = _ingest(store, dataclasses.replace(payload, name="DenmarkThird"), path)
    assert (third.records_created, third.records_reused) == (1, 0)
    assert [r.name for r in store.records("DenmarkThird")] == [doc["features"][0]["properties"]["source_id"]]


def test_a_scene_missing_a_record_tag_of_the_payload_is_refused(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s2.json")
    path = tmp_path / "s.json"
    doc = json.loads(write_s2_scenes(path, 2).read_text())
    doc["features"][1]["properties"]["tags"]["area"] = "Sweden"
    path.write_text(json.dumps(doc))
    store = Store(tmp_path / "x.db")
    with pytest.raises(InputError, match="tag 'area' is \"Sweden\".*record_tags require \"Denmark\""):
        prepare(store, payload, Settings(), scenes_file=str(path), create_layers=True)


def test_missing_layers_are_listed_with_the_commands_that_add_them(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s1.json")
    store = Store(tmp_path / "x.db")
    from ingester.records import add_layer

    add_layer(store, "CoherenceVV", "master")
    with pytest.raises(InputError) as err:
        prepare(store, payload, Settings(), tiles_file=str(write_s1_tiles(tmp_path / "t.json",
                                                                            s1_chain(payload.name, 1, 1))))
    text = str(err.value)
    assert "ingester layers add BackscatterSigma0VV RNKell" in text
    assert "ingester layers add CoherenceVH master" in text
    assert "CoherenceVV" not in text


def test_create_layers_gives_each_layer_the_data_format_its_graph_indexes(cli, tmp_path, repo):
    """ExtractS2Bands indexes uint16,0,1,65535: --create-layers creates the layers in that format, and
    a payload's graph_config override of the graph's dformat_out wins."""
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    r = cli("aoi", repo / "payloads" / "denmark-s2.json", "--scenes", scenes, "--create-layers", "--workers", "1",
            "--scene-worker", "tests.fakes.workers:succeed", "--tile-worker", "tests.fakes.workers:succeed")
    assert r.exit_code == 0, r.stderr
    layers = json.loads(cli("layers", "list", "--json").stdout)
    assert len(layers) == 12
    assert {json.dumps(x["dformat"]) for x in layers} == {json.dumps({"dtype": "uint16", "nodata": 0.0, "min": 1.0,
                                                                      "max": 65535.0})}
    doc = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    doc.update(name="Other", layers={"B01": {"variable": "B01s", "instance": "raw"}},
               graph_config={"dformat_out": "int16,-1,0,10000"}, record_tags={})
    payload = tmp_path / "other.json"
    payload.write_text(json.dumps(doc))
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "o.json", 1, aoi="Other"), "--create-layers",
            "--workers", "1", "--scene-worker", "tests.fakes.workers:succeed",
            "--tile-worker", "tests.fakes.workers:succeed")
    assert r.exit_code == 0, r.stderr
    (b01s,) = [x for x in json.loads(cli("layers", "list", "--json").stdout) if x["variable"] == "B01s"]
    assert b01s["dformat"] == {"dtype": "int16", "nodata": -1.0, "min": 0.0, "max": 10000.0}


def test_missing_layers_are_suggested_with_the_format_their_graph_indexes(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s2.json")
    with pytest.raises(InputError) as err:
        prepare(Store(tmp_path / "x.db"), payload, Settings(), scenes_file=str(write_s2_scenes(tmp_path / "s.json")))
    assert "ingester layers add B04 raw --dformat uint16,0,1,65535" in str(err.value)
