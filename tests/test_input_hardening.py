"""Hostile and broken input refused when the files are loaded (issue 15 items 4, 11, 12, 13, 15):
exit 2 with a message naming the file (the line, for a scenes/tiles file) and the field, no traceback,
and nothing written: no store, no outputs, no work folder, no request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingester.store import Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles, write_s2_scenes

W = "tests.fakes.workers"
HOSTILE_UUID = "x)/../../../token?a=("


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


@pytest.fixture
def s1_payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "denmark-s1.json"))


def aoi(cli, *args):
    return cli("aoi", *args, "--create-layers", "--workers", "1", "--scene-worker", f"{W}:succeed",
               "--tile-worker", f"{W}:succeed")


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("*.db"))


def edit_scene(path: Path, index: int, edit) -> Path:
    doc = json.loads(path.read_text())
    edit(doc["features"][index]["properties"])
    # written back one feature per line, as `ingester scenes` writes it, so that lines are meaningful
    from ingester.scenes import dumps_scenes

    path.write_text(dumps_scenes(doc))
    return path


def refused(r, *expected: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr


# --- item 4: catalogue ids go into URLs ------------------------------------------------------------------

def test_a_uuid_that_is_not_a_uuid_is_refused_naming_file_line_and_field(cli, payload, tmp_path):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 3)
    edit_scene(scenes, 1, lambda p: p["data"]["metadata"].update(uuid=HOSTILE_UUID))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, f"{scenes}: line 3: features[1].properties.data.metadata.uuid: {HOSTILE_UUID!r} is not a UUID")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("where", ["legacy data.uuid", "tags.uuid"])
def test_the_other_places_a_uuid_is_read_from_are_checked_too(cli, payload, tmp_path, where):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    if where == "tags.uuid":
        edit_scene(scenes, 0, lambda p: p["tags"].update(uuid=HOSTILE_UUID))
    else:
        edit_scene(scenes, 0, lambda p: (p["data"]["metadata"].pop("uuid"), p["data"].update(uuid=HOSTILE_UUID)))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, f"line 2: features[0].properties.{where.split()[-1]}: {HOSTILE_UUID!r} is not a UUID")
    assert nothing_written(tmp_path)


# --- item 11: one id/name grammar, checked at load -------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../etc", "a/../../x", "..", "S2A\x00MSIL1C", "S" * 400])
def test_unsafe_scene_ids_are_refused_at_load(cli, payload, tmp_path, bad):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 2), 1, lambda p: p.update(source_id=bad))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, f"{scenes}: line 3: features[1].properties.source_id: ")
    assert ("too long: 400 characters" in r.stderr) if len(bad) == 400 else ("is not allowed" in r.stderr)
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("field", ["SourceID", "previous.SourceID", "reference.SceneID"])
def test_unsafe_tile_ids_and_links_in_a_tiles_file_are_refused_at_load(cli, s1_payload, tmp_path, field):
    tiles = write_s1_tiles(tmp_path / "tiles.json", s1_chain("DenmarkDemoS1", 2, 1))

    def edit(props):
        tile = props["tiles"][0]
        *path, key = field.split(".")
        (tile[path[0]] if path else tile)[key] = "../../../../outside/LEAF"

    edit_scene(tiles, 1, edit)
    r = aoi(cli, s1_payload, "--tiles", tiles)
    refused(r, f"{tiles}: line 3: features[1].properties.tiles[0].{field}: '../../../../outside/LEAF' is not allowed")
    assert nothing_written(tmp_path)


def test_a_5000_character_aoi_name_is_refused_without_echoing_it_whole(cli, payload, tmp_path):
    doc = json.loads(payload.read_text())
    doc["name"] = "A" * 5000
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1, aoi="A" * 5000))
    refused(r, "field 'name': the AOI name", "too long: 5000 characters, at most 100")
    assert len(r.stderr) < 400
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("place", ["out_files", "in_files", "args"])
def test_graph_layer_names_that_leave_the_folder_are_refused_at_load(cli, payload, tmp_path, place):
    graph = {"processing_steps": [{"engine": "cmd", "command": "true", "args": {}}],
             "in_files": [[], [], []], "out_files": [[]]}
    layer = "../../escaped"
    if place == "out_files":
        graph["out_files"] = [[{"layer": layer, "extension": "tif", "action": "to_create"}]]
    elif place == "in_files":
        graph["in_files"] = [[{"layer": layer, "extension": "tif"}], [], []]
    else:
        graph["processing_steps"][0]["args"] = {"out": {"type": "out", "layer": layer, "extension": "tif"}}
    (tmp_path / "evil.json").write_text(json.dumps(graph))
    doc = json.loads(payload.read_text())
    doc["tile_graph_name"] = "evil.json"
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    refused(r, "field 'tile_graph_name'", "layer: '../../escaped' is not allowed")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("layer", ["../x", "a/b", ".hidden.."])
def test_payload_layer_names_follow_the_same_grammar(cli, payload, tmp_path, layer):
    doc = json.loads(payload.read_text())
    doc["layers"] = {layer: {"variable": "B01", "instance": "raw"}}
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    refused(r, "field 'layers': the layer name", "is not allowed")
    assert nothing_written(tmp_path)


# --- item 13: input errors found before the store is created ---------------------------------------------

def test_a_huge_retry_count_is_exit_2_and_creates_no_store(cli, payload, tmp_path):
    doc = json.loads(payload.read_text())
    doc["retry_count"] = 10**30
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    refused(r, "field 'retry_count': must be from 0 to 100, got 1000000000000000000000000000000")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("record_id", ["1 OR 1=1", "-3", "0x10", "99999999999999999999999"])
def test_a_record_id_that_is_not_a_record_is_exit_2_and_creates_no_store(cli, payload, tmp_path, record_id):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 1), 0,
                        lambda p: p["data"].update(record_id=record_id))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, "features[0].properties.data.record_id", "is not a record id")
    assert nothing_written(tmp_path)


def test_a_well_formed_record_id_missing_from_the_store_is_exit_2_and_creates_no_store(cli, payload, tmp_path):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 1), 0, lambda p: p["data"].update(record_id="7"))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, "data.record_id '7' is not a record of the store")
    assert nothing_written(tmp_path)


# --- item 15: checksums of the wrong type ------------------------------------------------------------------

@pytest.mark.parametrize("checksums, problem", [
    ({"MD5": 12345}, "MD5: must be a hexadecimal string, got 12345"),
    ({"MD5": "not-hex"}, "MD5: 'not-hex' is not a MD5 checksum (32 hexadecimal digits)"),
    ({"BLAKE3": "ab" * 16}, "BLAKE3: '" + "ab" * 16 + "' is not a BLAKE3 checksum (64 hexadecimal digits)"),
    ([{"Algorithm": "MD5", "Value": ["x"]}], "MD5: must be a hexadecimal string"),
    ("MD5=abc", "must be an object {algorithm: checksum} or a list of {Algorithm, Value}"),
])
def test_a_checksum_of_the_wrong_type_is_exit_2_at_load(cli, payload, tmp_path, checksums, problem):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 1), 0,
                        lambda p: p["data"]["metadata"].update(checksums=checksums))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, "line 2: features[0].properties.data.metadata.checksums: " + problem)
    assert nothing_written(tmp_path)


def test_a_size_that_is_not_a_number_of_bytes_is_exit_2_at_load(cli, payload, tmp_path):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 1), 0,
                        lambda p: p["data"]["metadata"].update(size="12 MB"))
    refused(aoi(cli, payload, "--scenes", scenes), "data.metadata.size: must be a size in bytes")
    assert nothing_written(tmp_path)


def test_well_formed_metadata_is_accepted(cli, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(tmp_path))
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 1), 0, lambda p: p["data"]["metadata"].update(
        checksums={"MD5": "0" * 32, "BLAKE3": "", "SHA3-256": "abc"}, size=123))
    r = aoi(cli, payload, "--scenes", scenes)
    assert r.exit_code == 0, r.stderr


# --- item 12: what Python's parsers raise becomes a message -----------------------------------------------

def _deep(_doc):
    return "[" * 100_000


def _digits(doc):
    return json.dumps(doc)[:-1] + ', "limit": ' + "9" * 4400 + "}"


@pytest.mark.parametrize("kind", ["payload", "scenes file", "graph"])
@pytest.mark.parametrize("make, message", [
    (_deep, "invalid JSON: arrays or objects nested too deeply"),
    (_digits, "invalid JSON: a number has more than 4300 digits"),
])
def test_json_the_parser_cannot_handle_is_exit_2_naming_the_file(cli, payload, tmp_path, kind, make, message):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    bad = tmp_path / "bad.json"
    if kind == "payload":
        bad.write_text(make(json.loads(payload.read_text())))
        args = [bad, "--scenes", scenes]
    elif kind == "scenes file":
        bad.write_text(make(json.loads(scenes.read_text())))
        args = [payload, "--scenes", bad]
    else:
        bad.write_text(make({"processing_steps": []}))
        doc = json.loads(payload.read_text())
        doc["tile_graph_name"] = "bad.json"
        payload.write_text(json.dumps(doc))
        args = [payload, "--scenes", scenes]
    r = aoi(cli, *args)
    refused(r, f"{bad}: {message}")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("field, value", [
    ("start_time", "0001-01-01T00:00:00+01:00"),
    ("end_time", "9999-12-31T23:00:00-05:00"),
])
def test_times_that_leave_the_calendar_in_utc_are_exit_2(cli, payload, tmp_path, field, value):
    doc = json.loads(payload.read_text())
    doc[field] = value
    payload.write_text(json.dumps(doc))
    r = cli("scenes", payload)
    refused(r, f"field '{field}': '{value}' is out of range: in UTC it falls before year 1 or after year 9999")


def test_a_scene_date_in_year_1_is_refused_with_an_offset_and_stored_readably_without(cli, payload, tmp_path):
    scenes = edit_scene(write_s2_scenes(tmp_path / "scenes.json", 2), 0,
                        lambda p: p["data"].update(date="0001-01-01T00:30:00+01:00"))
    refused(aoi(cli, payload, "--scenes", scenes), "line 2: features[0].properties.data.date:", "out of range")
    assert nothing_written(tmp_path)
    edit_scene(scenes, 0, lambda p: p["data"].update(date="0001-01-01T00:00:00Z"))
    r = aoi(cli, payload, "--scenes", scenes, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["from"] == "0001-01-01"
    r = cli("list", "scenes", "DenmarkDemoS2", "--json")
    assert json.loads(r.stdout)[0]["date"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize("command", [["history"], ["fail"], ["retry"]])
@pytest.mark.parametrize("option", ["--scene", "--tile"])
def test_an_id_beyond_the_store_integers_is_no_such_job_not_a_traceback(cli, payload, tmp_path, command, option):
    assert aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1)).exit_code == 0
    before = Store("outputs/ingester.db").counts()
    r = cli(*command, option, "99999999999999999999999")
    refused(r, f"{option} 99999999999999999999999: no {option[2:]} with this id")
    assert Store("outputs/ingester.db").counts() == before


# --- item 14: graph config values the engine reads are range-checked at load -------------------------------

BAD_CONFIG = [("step_timeout", "-1"), ("step_timeout", "nan"), ("step_timeout", "inf"), ("step_timeout", "soon"),
              ("snap_cpu_parallelism", "0"), ("snap_memory", "lots")]


@pytest.mark.parametrize("key, value", BAD_CONFIG)
@pytest.mark.parametrize("place", ["payload", "graph", "scenes file"])
def test_graph_config_out_of_range_is_exit_2_at_load_naming_the_key(cli, payload, tmp_path, place, key, value):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    doc = json.loads(payload.read_text())
    if place == "payload":
        doc["graph_config"] = {key: value}
        expected = f"field 'graph_config.{key}': {value!r}"
    elif place == "graph":
        (tmp_path / "mine.json").write_text(json.dumps({"config": {key: value}, "processing_steps": []}))
        doc["tile_graph_name"] = "mine.json"
        expected = f"config.{key}: {value!r}"
    else:
        edit_scene(scenes, 0, lambda p: p["data"].update(graph_config={key: value}))
        expected = f"line 2: features[0].properties.data.graph_config.{key}: {value!r}"
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", scenes)
    refused(r, expected)
    assert nothing_written(tmp_path)


def test_a_data_format_given_through_graph_config_is_checked_against_the_graph_that_reads_it(cli, payload, tmp_path):
    doc = json.loads(payload.read_text())
    doc["graph_config"] = {"dformat_out": "uint16,0,1"}  # ExtractS2Bands reads its dformat_out from config
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    refused(r, "field 'graph_config.dformat_out': dformat 'uint16,0,1' must have 4 comma-separated parts",
            "in graph 'ExtractS2Bands'")
    assert nothing_written(tmp_path)


def test_valid_engine_config_is_accepted(cli, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(tmp_path))
    doc = json.loads(payload.read_text())
    doc["graph_config"] = {"step_timeout": "3600", "snap_cpu_parallelism": "8", "snap_memory": "16G",
                           "dformat_out": "uint16,0,1,65535", "projection": "EPSG:32632"}
    payload.write_text(json.dumps(doc))
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_the_step_timeout_setting_is_range_checked_too(cli, payload, tmp_path, monkeypatch, value):
    monkeypatch.setenv("INGESTER_STEP_TIMEOUT", value)
    r = aoi(cli, payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", 1))
    refused(r, "INGESTER_STEP_TIMEOUT")
    assert nothing_written(tmp_path)
