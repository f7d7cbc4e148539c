"""The graph_config values the built-in graphs read from a fixed set are checked when the payload (or a
scenes file) is loaded: a wrong band in `"bands"` (ExtractS2Bands, ExtractLandsatBands), an unknown
`assets_window`, an unknown SNAP polarisation are exit 2 naming the key and the allowed values, in
`check`, `aoi --dry-run` and `aoi`, before anything is searched, written or downloaded (before, such a
payload passed both checks, and the run downloaded every product and ended every tile FATAL)."""

from __future__ import annotations

import json

import pytest

from ingester.scenes import read_scenes, write_scenes
from tests.fakes.aoi_data import write_s2_scenes

S2_BANDS = "B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, B11, B12"


def payload(repo, tmp_path, name: str, **config: str):
    doc = json.loads((repo / "payloads" / f"{name}.json").read_text())
    doc["graph_config"] = config
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("command", [("check",), ("aoi", "--dry-run"), ("aoi",)])
def test_a_wrong_sentinel2_band_is_exit_2_naming_the_key_and_the_bands_before_anything_runs(cli, repo, tmp_path,
                                                                                           command):
    p = payload(repo, tmp_path, "denmark-s2", bands="B04,B99")
    result = cli(*command, p, "--scenes", write_s2_scenes(tmp_path / "s.json", 1))
    assert result.exit_code == 2, result.stderr
    assert "field 'graph_config.bands'" in result.stderr and "'B99' unknown" in result.stderr
    assert f"allowed (comma-separated): {S2_BANDS}" in result.stderr and "ExtractS2Bands" in result.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()


@pytest.mark.parametrize("name, config, key, allowed", [
    ("denmark-landsat", {"bands": "B04,SR_B4"}, "bands", "QA_PIXEL"),
    ("denmark-s2-earth-search", {"bands": "b04"}, "bands", "B04"),  # names are exact
    ("denmark-s2-earth-search", {"assets_window": "sometimes"}, "assets_window", "auto, off"),
    ("denmark-s1", {"polarisations": "VV,XX"}, "polarisations", "VV, VH, HH, HV"),
    ("denmark-s2", {"bands": " , "}, "bands", "B01"),
])  # fmt: skip
def test_each_built_in_graph_checks_the_values_it_reads(cli, repo, tmp_path, name, config, key, allowed):
    result = cli("check", payload(repo, tmp_path, name, **config))
    assert result.exit_code == 2, result.stderr
    assert f"field 'graph_config.{key}'" in result.stderr and allowed in result.stderr


def test_good_values_pass_and_a_scenes_files_own_graph_config_is_checked_too(cli, repo, tmp_path, monkeypatch):
    (tmp_path / "archive").mkdir()
    monkeypatch.setenv("INGESTER_LOCAL_PATH", str(tmp_path / "archive"))  # a source for the products
    ok = payload(repo, tmp_path, "denmark-s2", bands="B04,B08,B8A", assets_window="OFF")
    scenes_file = write_s2_scenes(tmp_path / "s.json", 1)
    dry = cli("aoi", ok, "--scenes", scenes_file, "--dry-run", "--create-layers")
    assert dry.exit_code == 0, dry.stderr

    scenes = read_scenes(scenes_file).scenes
    scenes[0].graph_config = {"bands": "B4"}
    write_scenes(scenes_file, scenes, next_=False)
    result = cli("check", ok, "--scenes", scenes_file, "--create-layers")
    assert result.exit_code == 2, result.stderr
    assert "properties.data.graph_config.bands" in result.stderr and "'B4' unknown" in result.stderr
