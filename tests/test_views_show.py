"""`ingester show` and `ingester filter`: one row per scene with its line, geodesic AOI coverage,
filters that name lines, and filtered files that equal a hand edit."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from ingester.scenes import read_scenes, write_scenes
from tests.fakes.aoi_data import S2_IDS, s1_chain, write_s1_tiles
from tests.fakes.views_data import AOI_BOX, BOXES, box_payload, grid_scenes, los_angeles_tiles, write_grid_scenes


@pytest.fixture
def scenes(tmp_path) -> Path:
    return write_grid_scenes(tmp_path / "scenes.json")


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return box_payload(repo, tmp_path / "payload.json")


def spherical_share(part: tuple[float, float, float, float], whole: tuple[float, float, float, float]) -> float:
    """Area of a lon/lat box over another's on a sphere: Δλ·(sin φ2 − sin φ1) (an independent formula)."""
    def area(b: tuple[float, float, float, float]) -> float:
        return (b[2] - b[0]) * (math.sin(math.radians(b[3])) - math.sin(math.radians(b[1])))
    return area(part) / area(whole)


def test_show_prints_one_row_per_scene_with_its_line_and_columns(cli, scenes, payload):
    r = cli("show", scenes, "--payload", payload)
    assert r.exit_code == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split("\t") == ["line", "date (UTC)", "source id", "platform", "track", "cloud", "AOI covered",
                                  "online", "size"]
    cells = [row.split("\t") for row in rows]
    assert [c[0] for c in cells] == ["2", "3", "4", "5"]  # line 1 is the FeatureCollection's head
    assert [c[2] for c in cells] == S2_IDS[:4]
    assert cells[0][1] == "2022-01-04 10:34" and cells[0][3] == "S2A" and cells[0][4] == "R108 32UNG"
    assert [c[5] for c in cells] == ["5.0 %", "30.0 %", "60.0 %", "90.0 %"]
    assert [c[7] for c in cells] == ["yes", "yes", "no", "yes"]
    assert cells[0][8] == "700.0 MB"
    assert cells[3][6] == "0.0 %"  # the fourth footprint lies east of the AOI
    lines = scenes.read_text().splitlines()
    for c in cells:  # the line number points at the scene's own line
        assert c[2] in lines[int(c[0]) - 1]


def test_coverage_is_the_geodesic_share_of_the_aoi(cli, scenes, payload):
    rows = json.loads(cli("show", scenes, "--payload", payload, "--json").stdout)
    for row, b in zip(rows[:3], BOXES[:3], strict=True):
        assert row["coverage"] == pytest.approx(spherical_share(b, AOI_BOX), rel=2e-3)


def test_coverage_of_the_southern_half_of_a_tall_aoi_is_more_than_half(cli, tmp_path, repo):
    """Between 40° and 60° N the southern half of a lon/lat box holds 55 % of its area, not 50 %."""
    payload = box_payload(repo, tmp_path / "tall.json", (10.0, 40.0, 11.0, 60.0))
    scene = grid_scenes(1)[0]
    scene.wkt = box(10.0, 40.0, 11.0, 50.0).wkt
    write_scenes(tmp_path / "s.json", [scene])
    (row,) = json.loads(cli("show", tmp_path / "s.json", "--payload", payload, "--json").stdout)
    assert row["coverage"] == pytest.approx(spherical_share((10, 40, 11, 50), (10, 40, 11, 60)), abs=4e-3)
    assert row["coverage"] > 0.54


def test_json_and_csv_carry_the_same_rows(cli, scenes, payload):
    rows = json.loads(cli("show", scenes, "--payload", payload, "--json").stdout)
    assert [r["line"] for r in rows] == [2, 3, 4, 5]
    assert rows[1]["relative_orbit"] == 65 and rows[1]["cloud_cover"] == 30.0 and rows[2]["online"] is False
    assert rows[0]["size"] == 700_000_000 and rows[0]["tiles"] == []
    r = cli("show", scenes, "--payload", payload, "--csv")
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [t["source_id"] for t in table] == [r["source_id"] for r in rows]
    assert [float(t["coverage_percent"]) for t in table] == pytest.approx([100 * r["coverage"] for r in rows],
                                                                          abs=1e-3)
    assert table[2]["online"] == "false" and table[0]["relative_orbit"] == "108"


def test_filters_list_the_matching_lines_and_name_the_others(cli, scenes, payload):
    r = cli("show", scenes, "--max-cloud", "40")
    assert r.exit_code == 0, r.stderr
    assert [row.split("\t")[0] for row in r.stdout.splitlines()[1:]] == ["2", "3"]
    assert "2 of 4 scenes match (cloud ≤ 40 %): lines 2-3; the other 2 are on lines 4-5" in r.stderr
    assert f"ingester filter {scenes} --max-cloud 40 -o NEW.json" in r.stderr
    assert cli("show", scenes, "--orbit", "108", "--lines").stdout == "2\n5\n"
    assert cli("show", scenes, "--orbit", "R065", "--orbit", "8", "--lines").stdout == "3\n4\n"
    assert cli("show", scenes, "--orbit", "32UNG", "--lines").stdout == "2\n3\n4\n5\n"
    r = cli("show", scenes, "--payload", payload, "--min-coverage", "1", "--max-cloud", "70", "--lines")
    assert r.stdout == "2\n3\n4\n"
    assert "coverage ≥ 1 %" in r.stderr and "-q" not in r.stderr
    assert cli("show", scenes, "--max-cloud", "40", "-q").stderr == ""


def test_sort_orders_the_rows(cli, scenes, payload):
    assert cli("show", scenes, "--sort", "cloud", "--reverse", "--lines").stdout == "5\n4\n3\n2\n"
    out = cli("show", scenes, "--payload", payload, "--sort", "coverage", "--lines").stdout.split()
    assert out[0] == "5"  # the footprint outside the AOI first
    r = cli("show", scenes, "--sort", "colour")
    assert r.exit_code == 2 and "--sort 'colour': unknown column; known: line, date" in r.stderr


def test_bad_options_and_files_are_input_errors(cli, scenes, tmp_path):
    r = cli("show", scenes, "--min-coverage", "50")
    assert r.exit_code == 2 and "--min-coverage needs the AOI" in r.stderr and "--payload" in r.stderr
    r = cli("show", scenes, "--max-cloud", "120")
    assert r.exit_code == 2 and "--max-cloud: must be a percentage between 0 and 100" in r.stderr
    r = cli("show", scenes, "--json", "--csv")
    assert r.exit_code == 2 and "at most one of --json, --csv, --lines" in r.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(scenes.read_text().replace('"features": [', '"features": [[', 1))
    r = cli("show", broken)
    assert r.exit_code == 2 and "broken.json: invalid JSON at line" in r.stderr
    r = cli("show", tmp_path / "missing.json")
    assert r.exit_code == 2 and "missing.json: file not found" in r.stderr


def test_line_numbers_follow_a_hand_edit(cli, scenes):
    lines = scenes.read_text().splitlines(keepends=True)
    del lines[2]  # the second scene
    scenes.write_text("".join(lines))
    rows = json.loads(cli("show", scenes, "--json").stdout)
    assert [(r["line"], r["source_id"]) for r in rows] == [(2, S2_IDS[0]), (3, S2_IDS[2]), (4, S2_IDS[3])]


def test_tiles_file_shows_each_tile_with_its_previous_and_reference(cli, testdata, repo):
    tiles = testdata / "views" / "losangeles-s1-tiles.json"
    rows = json.loads(cli("show", tiles, "--payload", repo / "payloads" / "losangeles-s1.json", "--json").stdout)
    later = next(r for r in rows if r["source_id"].startswith("S1A_IW_SLC__1SDV_20230120"))
    assert later["track"] == "D71" and later["coverage"] == pytest.approx(1.0)
    assert [t["id"] for t in later["tiles"]] == ["071_151227_IW2", "071_151228_IW2"]
    previous = later["tiles"][1]["previous"]
    assert previous["date"].startswith("2023-01-08T13:52:49") and previous["present"] is True
    assert later["tiles"][1]["reference"] == previous
    text = cli("show", tiles).stdout
    assert "071_151228_IW2 prev 2023-01-08 ref 2023-01-08" in text
    assert "tiles (previous / reference)" in text.splitlines()[0]


def test_legacy_one_line_file_puts_every_scene_on_line_1_and_says_so(cli, testdata):
    r = cli("show", testdata / "payloads" / "tiles.json", "--orbit", "44")
    assert r.exit_code == 0, r.stderr
    assert [row.split("\t")[0] for row in r.stdout.splitlines()[1:]] == ["1", "1", "1"]
    assert "A44_IW1_8951 prev 2022-01-23 ref 2022-01-11" in r.stdout
    assert "does not hold one scene per line" in r.stderr


# --- filter ----------------------------------------------------------------------------------------

def test_filter_writes_what_deleting_the_other_lines_by_hand_gives(cli, scenes, tmp_path):
    r = cli("filter", scenes, "--max-cloud", "70", "-o", tmp_path / "kept.json")
    assert r.exit_code == 0, r.stderr
    assert "kept 3 of 4 scenes (cloud ≤ 70 %)" in r.stderr
    by_hand = scenes.read_text().splitlines(keepends=True)
    del by_hand[4]  # line 5: the 90 % one, the last feature: the line before loses its comma
    by_hand[3] = by_hand[3].replace("},\n", "}\n")
    assert (tmp_path / "kept.json").read_text() == "".join(by_hand)
    assert [s.source_id for s in read_scenes(tmp_path / "kept.json").scenes] == S2_IDS[:3]

    r = cli("filter", scenes, "--orbit", "65", "-o", tmp_path / "middle.json", "--json")
    assert json.loads(r.stdout) == {"output": str(tmp_path / "middle.json"), "kept": 1, "scenes": 4, "lines": [3]}
    original = scenes.read_text().splitlines(keepends=True)
    assert (tmp_path / "middle.json").read_text() == original[0] + original[2].replace("},\n", "}\n") + original[-1]


def test_filter_keeps_legacy_features_as_they_are(cli, testdata, tmp_path, repo):
    source = testdata / "payloads" / "tiles.json"
    r = cli("filter", source, "--payload", repo / "payloads" / "denmark-s1.json", "--min-coverage", "50",
            "-o", tmp_path / "out.json")
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "out.json").read_text())["features"] == json.loads(source.read_text())["features"]
    assert len((tmp_path / "out.json").read_text().splitlines()) == 5  # now one scene per line


def test_filter_refuses_to_overwrite_its_input(cli, scenes, tmp_path, monkeypatch):
    before = scenes.read_text()
    monkeypatch.chdir(scenes.parent)
    for target in (scenes, "./scenes.json", "../" + scenes.parent.name + "/scenes.json"):
        r = cli("filter", "scenes.json", "--max-cloud", "10", "-o", target)
        assert r.exit_code == 2 and "is the input file" in r.stderr, target
    (tmp_path / "link.json").symlink_to(scenes)
    r = cli("filter", "link.json", "--max-cloud", "10", "-o", scenes)
    assert r.exit_code == 2 and "is the input file" in r.stderr
    assert scenes.read_text() == before


def test_filter_without_a_filter_or_with_a_bad_input_writes_nothing(cli, scenes, tmp_path):
    r = cli("filter", scenes, "-o", tmp_path / "out.json")
    assert r.exit_code == 2 and "nothing to filter" in r.stderr
    r = cli("filter", scenes, "--min-coverage", "10", "-o", tmp_path / "out.json")
    assert r.exit_code == 2 and "--payload" in r.stderr
    r = cli("filter", tmp_path / "nope.json", "--max-cloud", "10", "-o", tmp_path / "out.json")
    assert r.exit_code == 2 and "nope.json: file not found" in r.stderr
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.glob(".out.json.*"))


def test_filter_warns_about_chains_it_breaks_and_aoi_refuses_them_like_a_hand_edit(cli, tmp_path, repo):
    chain = s1_chain("DenmarkDemoS1", 3, 2)
    for scene, orbit in zip(chain, ("44", "45", "44"), strict=True):  # the middle one made to look off-track
        scene.tags.update({"relativeOrbit": orbit, "orbitDirection": "ASCENDING"})
    tiles = write_s1_tiles(tmp_path / "tiles.json", chain)
    r = cli("filter", tiles, "--orbit", "A44", "-o", tmp_path / "a44.json")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count("warning") == 2  # both tiles of the last acquisition lost their previous
    assert f"{chain[2].source_id} tile A44_IW1_8951: previous {chain[1].source_id} is left out" in r.stderr

    lines = tiles.read_text().splitlines(keepends=True)
    by_hand = tmp_path / "by-hand.json"
    by_hand.write_text(lines[0] + lines[1] + lines[3] + lines[4])
    assert by_hand.read_text() == (tmp_path / "a44.json").read_text()
    for edited in (by_hand, tmp_path / "a44.json"):
        r = cli("aoi", repo / "payloads" / "denmark-s1.json", "--tiles", edited, "--create-layers",
                "--db", tmp_path / "s.db")
        assert r.exit_code == 2
        assert f"previous tile A44_IW1_8951 of scene {chain[1].source_id} is neither in the file nor" in r.stderr
    assert not (tmp_path / "s.db").exists()

    r = cli("filter", tiles, "--orbit", "45", "--orbit", "44", "-o", tmp_path / "all.json")
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_line_numbers_of_a_file_in_another_layout_come_from_its_json(cli, scenes, tmp_path):
    doc = json.loads(scenes.read_text())
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps({"properties": doc["properties"], **doc}, indent=2))
    starts = [i + 1 for i, line in enumerate(pretty.read_text().splitlines()) if line == "    {"]
    rows = json.loads(cli("show", pretty, "--json").stdout)
    assert [r["line"] for r in rows] == starts and len(starts) == 4


def test_the_los_angeles_tiles_fixture_is_what_ingester_tiles_makes(cli, testdata, repo, tmp_path):
    def without_uuids(text: str) -> str:  # the fake products' uuids are drawn per process
        return re.sub(r'"uuid": "[^"]*"', '"uuid": ""', text)

    made = los_angeles_tiles(cli, testdata, repo, tmp_path)
    assert without_uuids(made.read_text()) == without_uuids((testdata / "views" / "losangeles-s1-tiles.json")
                                                            .read_text())


def test_a_terminal_gets_a_rich_table_and_a_long_list_aligned_text(cli, scenes, payload, tmp_path):
    terminal = {"FORCE_COLOR": "1", "COLUMNS": "200"}
    r = cli("show", scenes, "--payload", payload, env=terminal)
    assert r.exit_code == 0, r.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
    assert f"DenmarkDemoS2 ({scenes})" in text and "─" * 10 in text  # the rich table's title and rule
    assert all(sid in text for sid in S2_IDS[:4])
    first = grid_scenes(1)[0]
    write_scenes(tmp_path / "big.json", [dataclasses.replace(first, source_id=f"{S2_IDS[0][:-6]}{i:06d}")
                                         for i in range(301)])
    r = cli("show", tmp_path / "big.json", env=terminal)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout).splitlines()
    assert len(lines) == 302 and lines[0].startswith("line  date (UTC)")
    assert lines[1].split()[0] == "2" and lines[-1].split()[0] == "302"
    assert len({line.index("S2A_") for line in lines[1:]}) == 1  # aligned columns


def test_an_aoi_of_the_store_has_its_bursts_with_their_statuses_and_links(cli, tmp_path, repo, monkeypatch):
    """3 dates × 2 bursts; the tile of burst 8979 of the middle date ends RETRY, its child stays NEW."""
    from ingester.store import Store
    from ingester.views.model import footprints, from_store

    chain = s1_chain("DenmarkDemoS1", 3, 2)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({f"{chain[1].source_id}/A44_IW1_8979": ["error"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    r = cli("aoi", repo / "payloads" / "denmark-s1.json", "--tiles", write_s1_tiles(tmp_path / "t.json", chain),
            "--create-layers", "--workers", "1", "--scene-worker", "tests.fakes.workers:scripted",
            "--tile-worker", "tests.fakes.workers:scripted")
    assert r.exit_code == 4, r.stderr
    with Store("outputs/ingester.db") as store:
        view = from_store(store, "DenmarkDemoS1")
    assert view.aoi is not None and view.is_tiles_file  # the outline kept at ingestion
    assert [s.status for s in view.scenes] == ["DONE", "RETRY", "NEW"]  # the worst of each scene's tiles
    assert view.scenes[1].message.startswith("error for tile")
    items = footprints(view)
    assert sorted((f.scene.date.day, f.label, f.status) for f in items) == [
        (4, "A44_IW1_8951", "DONE"), (4, "A44_IW1_8979", "NEW"), (11, "A44_IW1_8951", "DONE"),
        (11, "A44_IW1_8979", "DONE"), (23, "A44_IW1_8951", "DONE"), (23, "A44_IW1_8979", "RETRY")]
    later = view.scenes[2].tiles[0]
    assert later.previous.scene_id == chain[1].source_id and later.reference.scene_id == chain[0].source_id


@pytest.mark.parametrize(("source_id", "tags", "platform", "track", "orbit"), [
    ("S1A_IW_SLC__1SDV_20220204T170123_20220204T170150_041766_04F863_D5BE",
     {"relativeOrbit": "44", "orbitDirection": "ASCENDING"}, "S1A", "A44", 44),
    ("S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858", {}, "S2A", "R108 32UNG", 108),
    ("S2B_32UNG_20220104_0_L2A", {"relativeOrbit": "65"}, "S2B", "R065 32UNG", 65),  # an Earth Search item id
    ("LC09_L2SP_196022_20220105_20220107_02_T1", {"path": "196", "row": "022"}, "LC09", "196/022", 196),
    ("LC08_L1TP_196022_20220105_20220107_02_T1", {}, "LC08", "196/022", 196),
])
def test_platform_track_and_orbit_of_each_mission(source_id, tags, platform, track, orbit):
    from ingester.views.model import Filters, SceneView, describe

    info = describe(source_id, tags, {})
    assert (info["platform"], info["track"], info["orbit"]) == (platform, track, orbit)
    scene = SceneView(0, source_id, "a", datetime(2022, 1, 1, tzinfo=UTC), geometry=None, **info)
    assert Filters(orbits=(str(orbit),)).keeps(scene) and Filters(orbits=(track.split()[-1],)).keeps(scene)
    assert not Filters(orbits=("999",)).keeps(scene)
