"""`ingester tiles` end to end: the Los Angeles S1 payload against the fake CDSE Nodes and local sources."""

from __future__ import annotations

import json

import pytest

from ingester.catalogue import SearchResult
from ingester.scenes import read_scenes, write_scenes
from tests.fakes.cdse_nodes import IW2_2022, IW2_2023, FakeCdseNodes, make_product, product_scene, write_safe

PASSWORD = "s3cr3t-pa55"


@pytest.fixture
def la_payload(repo):
    return repo / "payloads" / "losangeles-s1.json"


@pytest.fixture
def products(testdata):
    """Two descending acquisitions 12 days apart and one ascending one, over Los Angeles."""
    return [make_product(testdata, IW2_2023, 1), make_product(testdata, IW2_2022), make_product(testdata, IW2_2023)]


@pytest.fixture
def scenes_file(tmp_path, products):
    path = tmp_path / "scenes.json"
    write_scenes(path, [product_scene(p, "LosAngelesS1") for p in products], next_=False)
    return path


def fake_env(fake: FakeCdseNodes) -> dict[str, str]:
    return {"INGESTER_CDSE_DOWNLOAD_URL": fake.url, "INGESTER_CDSE_TOKEN_URL": fake.token_url,
            "INGESTER_CDSE_USERNAME": fake.username, "INGESTER_CDSE_PASSWORD": fake.password}


def test_tiles_for_the_los_angeles_payload_from_cdse_nodes(cli, tmp_path, la_payload, scenes_file, products):
    with FakeCdseNodes(products, password=PASSWORD) as fake:
        result = cli("tiles", la_payload, "--scenes", scenes_file, env=fake_env(fake))
    assert result.exit_code == 0, result.stderr
    assert "3 scenes, 6 tiles (2 chained to a previous acquisition)" in result.stderr
    assert len(fake.value_requests()) == 3  # one annotation per scene, nothing else downloaded

    out = tmp_path / "outputs" / "tiles.json"
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and [f["id"] for f in doc["features"]] == [0, 1, 2]
    props = [f["properties"] for f in doc["features"]]
    assert [p["source_id"] for p in props] == [p.scene_id for p in products]
    assert [[t["SourceID"] for t in p["tiles"]] for p in props] == [
        ["071_151227_IW2", "071_151228_IW2"], ["064_135518_IW2", "064_135519_IW2"],
        ["071_151227_IW2", "071_151228_IW2"]]
    later = props[0]["tiles"][1]
    assert list(later) == sorted(later)  # keys sorted as the original writes them
    assert later["Date"] == "2023-01-20T13:52:49Z" and later["SceneID"] == products[0].scene_id
    assert later["anx_time"] == 24075
    assert later["data"] == {"absolute_burst_id": 100291921 + 375887, "anx_time": 24075, "burst_id": 151228,
                             "graph_name": "S1BackscatterCoherence", "is_retriable": True, "swath_id": "IW2",
                             "tile_nr": 2}
    root = {"Date": "2023-01-08T13:52:49Z", "SceneID": products[2].scene_id, "SourceID": "071_151228_IW2"}
    assert later["previous"] == root and later["reference"] == root
    assert props[2]["tiles"][1]["previous"] is None and props[2]["tiles"][1]["reference"] is None
    assert props[1]["tiles"][1]["data"]["absolute_burst_id"] == 97645000
    assert props[0]["data"]["tiles"] == {"071_151227_IW2": {"swath_id": "IW2", "tile_nr": 1},
                                         "071_151228_IW2": {"swath_id": "IW2", "tile_nr": 2}}
    # feature geometry: the scene footprint followed by every burst polygon
    geometry = doc["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 3
    assert len(geometry["coordinates"][1][0]) == 43  # 21 + 21 grid points, closed
    assert PASSWORD not in out.read_text() and PASSWORD not in result.stderr

    # the file reads back through the scenes reader, links intact
    back = read_scenes(out)
    tile = back.scenes[0].tiles[1]
    assert (tile.burst_id, tile.absolute_burst_id, tile.previous.scene_id) == (
        151228, 100291921 + 375887, products[2].scene_id)


def test_point_of_the_reference_lies_in_the_second_burst_tile(cli, tmp_path, la_payload, scenes_file, products):
    from shapely.geometry import Point

    from ingester.geometry import from_wkt

    with FakeCdseNodes(products) as fake:
        assert cli("tiles", la_payload, "--scenes", scenes_file, "-q", env=fake_env(fake)).exit_code == 0
    for scene in read_scenes(tmp_path / "outputs" / "tiles.json").scenes:
        inside = [t.source_id for t in scene.tiles if from_wkt(t.wkt).contains(Point(-117.6, 34.1))]
        assert inside == [t.source_id for t in scene.tiles if t.tile_nr == 2]


def test_tiles_from_a_local_safe_folder_pattern(cli, tmp_path, repo, scenes_file, products):
    for p in products:
        write_safe(tmp_path / "annotations", p.scene_id, p.annotations)
    payload = json.loads((repo / "payloads" / "losangeles-s1.json").read_text())
    payload["annotations_urls"] = [str(tmp_path / "annotations" / "{SCENE}.SAFE")]
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    result = cli("tiles", "payload.json", "--scenes", scenes_file, "-o", "out/t.json",
                 env={"INGESTER_ANNOTATION_SOURCES": "urls"})
    assert result.exit_code == 0, result.stderr
    scenes = read_scenes(tmp_path / "out" / "t.json").scenes
    assert sum(len(s.tiles) for s in scenes) == 6


def test_cdse_failure_falls_back_to_the_payload_pattern(cli, tmp_path, repo, scenes_file, products):
    for p in products:
        write_safe(tmp_path / "annotations", p.scene_id, p.annotations)
    payload = json.loads((repo / "payloads" / "losangeles-s1.json").read_text())
    payload["annotations_urls"] = [str(tmp_path / "annotations")]
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    # CDSE points at the closed port of conftest: every Nodes request fails, the folder answers
    result = cli("tiles", "payload.json", "--scenes", scenes_file)
    assert result.exit_code == 0, result.stderr
    assert "3 scenes, 6 tiles" in result.stderr


def test_buffer_option_narrows_the_burst_selection(cli, tmp_path, repo, scenes_file, products):
    payload = json.loads((repo / "payloads" / "losangeles-s1.json").read_text())
    payload["geometry"] = {"type": "Polygon", "coordinates": [[[-117.601, 34.099], [-117.599, 34.099],
                                                              [-117.599, 34.101], [-117.601, 34.101],
                                                              [-117.601, 34.099]]]}
    (tmp_path / "point.json").write_text(json.dumps(payload))
    with FakeCdseNodes(products) as fake:
        result = cli("tiles", "point.json", "--scenes", scenes_file, "--buffer", "0", env=fake_env(fake))
    assert result.exit_code == 0, result.stderr
    tiles = [t.source_id for s in read_scenes(tmp_path / "outputs" / "tiles.json").scenes for t in s.tiles]
    assert tiles == ["071_151228_IW2", "064_135519_IW2", "071_151228_IW2"]


def test_scene_missing_from_every_source_is_reported_and_skipped(cli, tmp_path, la_payload, scenes_file, products):
    with FakeCdseNodes(products[:2]) as fake:
        result = cli("tiles", la_payload, "--scenes", scenes_file, env=fake_env(fake))
    assert result.exit_code == 0, result.stderr
    assert f"warning: {products[2].scene_id}: no annotation found (cdse-nodes: not found); scene skipped" \
        in result.stderr
    assert "skipped 1 scene: 1 without annotation" in result.stderr
    scenes = read_scenes(tmp_path / "outputs" / "tiles.json").scenes
    assert [s.source_id for s in scenes] == [p.scene_id for p in products[:2]]
    assert all(t.previous is None for s in scenes for t in s.tiles)  # 2023-01-20 is now the root


def test_no_annotation_for_any_scene_fails_and_writes_nothing(cli, tmp_path, la_payload, scenes_file):
    result = cli("tiles", la_payload, "--scenes", scenes_file)
    assert result.exit_code == 1
    assert "error: no annotation found for any of the 3 scenes; nothing written" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_without_scenes_the_search_runs_first(cli, tmp_path, la_payload, products, monkeypatch):
    import ingester.catalogue as catalogue

    calls = []

    def search(payload, settings, clients=None):  # the real signature (the command passes its clients)
        calls.append((payload.name, settings.aoi_buffer))
        return SearchResult([product_scene(p, payload.name) for p in products], next=False)

    monkeypatch.setattr(catalogue, "search", search, raising=False)
    with FakeCdseNodes(products) as fake:
        result = cli("tiles", la_payload, env=fake_env(fake))
    assert result.exit_code == 0, result.stderr
    assert calls == [("LosAngelesS1", "5600m")]
    assert len(read_scenes(tmp_path / "outputs" / "tiles.json").scenes) == 3


def test_copy_product_payload_gives_tile_equals_scene(cli, tmp_path, repo, testdata):
    payload = json.loads((repo / "payloads" / "denmark-s1.json").read_text())
    payload["scene_graph_name"] = "CopyProductToStorage"
    (tmp_path / "copy.json").write_text(json.dumps(payload))
    result = cli("tiles", "copy.json", "--scenes", testdata / "payloads" / "scenes.json", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    scenes = read_scenes(tmp_path / "outputs" / "tiles.json").scenes
    assert [[t.source_id for t in s.tiles] for s in scenes] == [[s.source_id] for s in scenes]
    assert all(t.previous is None and t.reference is None for s in scenes for t in s.tiles)


def test_legacy_tiles_file_reads_with_its_links(testdata):
    scenes = read_scenes(testdata / "payloads" / "tiles.json").scenes
    latest = scenes[0]
    tile = next(t for t in latest.tiles if t.source_id == "A44_IW1_8951")
    assert (tile.anx_time, tile.swath_id, tile.tile_nr) == (8951, "IW1", 4)
    assert tile.previous.scene_id == scenes[1].source_id and tile.reference.scene_id == scenes[2].source_id
    assert all(t.previous is None and t.reference is None for t in scenes[2].tiles)


@pytest.mark.parametrize("args, message", [
    (["--scenes", "missing.json"], "error: missing.json: file not found"),
    (["--buffer", "-1", "--scenes", "missing.json"], "error: --buffer: '-1': a buffer must be ≥ 0 (0: the exact AOI)"),
    (["--buffer", "0.05", "--scenes", "missing.json"],
     "error: --buffer: '0.05': a bare number is metres (buffers were degrees before): write 0.05deg for degrees"),
    (["--buffer", "5 leagues", "--scenes", "missing.json"], "error: --buffer: '5 leagues' is not a distance"),
])
def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path, la_payload, args, message):
    result = cli("tiles", la_payload, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_bad_payload_exits_2(cli, tmp_path):
    (tmp_path / "p.json").write_text("{")
    result = cli("tiles", "p.json", "--scenes", "x.json")
    assert result.exit_code == 2 and "error: p.json: invalid JSON" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_annotation_source_setting_exits_2(cli, tmp_path, la_payload, scenes_file):
    result = cli("tiles", la_payload, "--scenes", scenes_file, env={"INGESTER_ANNOTATION_SOURCES": "cdse,ftp"})
    assert result.exit_code == 2
    assert "INGESTER_ANNOTATION_SOURCES: unknown source 'ftp' (known: cdse, urls)" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_aoi_scenes_without_any_annotation_fails_like_tiles_and_writes_nothing(cli, tmp_path, la_payload,
                                                                                scenes_file):
    """One rule for `tiles` and `aoi --scenes` (issue 12 item 6): exit 1, the same message, no store."""
    tiles = cli("tiles", la_payload, "--scenes", scenes_file)
    aoi = cli("aoi", la_payload, "--scenes", scenes_file, "--create-layers", "--workers", "1",
              "--scene-worker", "tests.fakes.workers:succeed", "--tile-worker", "tests.fakes.workers:succeed")
    assert (tiles.exit_code, aoi.exit_code) == (1, 1), aoi.stderr
    for result in (tiles, aoi):
        assert "error: no annotation found for any of the 3 scenes; nothing written" in result.stderr
        assert "cdse-nodes:" in result.stderr  # what the sources said
    assert not (tmp_path / "outputs").exists()


def test_aoi_scenes_with_some_annotations_ingests_those_and_says_which_were_skipped(
        cli, tmp_path, la_payload, products):
    import dataclasses

    tags = {"source": "tutorial", "provider": "geocube-ingester", "area": "LosAngeles"}
    scenes_file = tmp_path / "tagged.json"
    write_scenes(scenes_file, [dataclasses.replace(s, tags={**s.tags, **tags})
                               for s in (product_scene(p, "LosAngelesS1") for p in products)], next_=False)
    with FakeCdseNodes(products[:2]) as fake:
        r = cli("aoi", la_payload, "--scenes", scenes_file, "--create-layers", "--workers", "1", "--json",
                "--scene-worker", "tests.fakes.workers:succeed", "--tile-worker", "tests.fakes.workers:succeed",
                env=fake_env(fake))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ingested"]["scenes"] == 2
    assert f"skipped {products[2].scene_id}: no annotation found" in r.stderr
