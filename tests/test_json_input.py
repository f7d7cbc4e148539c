"""Hand-edited JSON files (payloads, graph files, scenes/tiles files) get messages a person can act on:
a key given twice in one object is exit 2 naming the key and its line (JSON would keep the last one
silently); a file saved with a UTF-8 byte-order mark is read; a file in another encoding (Latin-1) and a
line break inside a string are exit 2 with the line and column, in the tool's words, not Python's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fakes.aoi_data import write_s2_scenes


@pytest.fixture
def payload_text(repo) -> str:
    return (repo / "payloads" / "denmark-s2.json").read_text(encoding="utf-8")


def line_of(text: str, needle: str, nth: int = 1) -> int:
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def test_a_payload_key_given_twice_is_exit_2_naming_the_key_and_its_lines(cli, tmp_path, payload_text):
    text = payload_text.replace('"retry_count": 1', '"retry_count": 1,\n  "retry_count": 2')
    assert text != payload_text
    Path("p.json").write_text(text)
    for args in (("scenes", "p.json"), ("check", "p.json"), ("aoi", "p.json", "--dry-run")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        first, second = line_of(text, '"retry_count"'), line_of(text, '"retry_count"', 2)
        assert (f'p.json: duplicate key "retry_count" at line {second}, column 3 (first at line {first})'
                in result.stderr)


def test_a_graph_file_and_a_scenes_file_with_a_repeated_key_are_refused_too(cli, tmp_path, repo, payload_text):
    graph = (repo / "ingester" / "graph" / "library" / "ExtractS2Bands.json").read_text()
    text = graph.replace('"blocksize": "512",', '"blocksize": "512",\n  "blocksize": "256",', 1)
    Path("Mine.json").write_text(text)
    doc = json.loads(payload_text)
    doc["tile_graph_name"] = "Mine.json"
    Path("p.json").write_text(json.dumps(doc))
    result = cli("check", "p.json")
    assert result.exit_code == 2
    assert f'duplicate key "blocksize" at line {line_of(text, chr(34) + "blocksize", 2)}' in result.stderr
    assert "Mine.json" in result.stderr

    scenes = write_s2_scenes(tmp_path / "s.json", 2).read_text()
    lines = scenes.splitlines()
    lines[2] = lines[2].replace('"is_retriable": true', '"is_retriable": true, "is_retriable": false')
    assert lines[2] != scenes.splitlines()[2]
    Path("s.json").write_text("\n".join(lines) + "\n")
    result = cli("show", "s.json")
    assert result.exit_code == 2 and 'duplicate key "is_retriable" at line 3' in result.stderr


def test_a_byte_order_mark_is_accepted_and_another_encoding_is_named_with_its_line(cli, tmp_path, payload_text):
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    Path("bom.json").write_bytes(b"\xef\xbb\xbf" + payload_text.encode())
    shutil.copy(scenes, "s-bom.json")
    Path("s-bom.json").write_bytes(b"\xef\xbb\xbf" + Path("s-bom.json").read_bytes())
    shown = cli("show", "s-bom.json", "--json")
    assert shown.exit_code == 0, shown.stderr
    dry = cli("aoi", "bom.json", "--scenes", "s-bom.json", "--dry-run", "--create-layers", "--json")
    assert "BOM" not in dry.stderr and "utf-8-sig" not in dry.stderr
    assert json.loads(dry.stdout)["ingest"]["scenes"] == 1

    latin = payload_text.replace('"area": "Denmark"', '"area": "Danmark, Sønderjylland"')
    assert latin != payload_text
    Path("latin.json").write_bytes(latin.encode("latin-1"))
    result = cli("scenes", "latin.json")
    assert result.exit_code == 2
    column = latin.splitlines()[line_of(latin, "Sønder") - 1].index("ø") + 1
    assert (f"latin.json: not UTF-8 text at line {line_of(latin, 'Sønder')}, column {column} (byte 0xf8)"
            in result.stderr)
    assert "save it as UTF-8" in result.stderr and "codec" not in result.stderr and "position" not in result.stderr


def test_a_line_break_inside_a_string_says_where_without_pythons_words(cli, payload_text):
    text = payload_text.replace('"name": "DenmarkDemoS2"', '"name": "Denmark\nDemoS2"')
    Path("p.json").write_text(text)
    result = cli("scenes", "p.json")
    assert result.exit_code == 2
    line = line_of(text, '"name"')
    assert f"p.json: invalid JSON at line {line}, column" in result.stderr
    assert "Invalid control character (likely cause: a line break or tab inside a string" in result.stderr
    assert " at (likely" not in result.stderr
