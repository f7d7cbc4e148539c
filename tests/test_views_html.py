"""`ingester map … -o map.html`: the page is loaded in headless Chromium without network; one
clickable feature per footprint, each with its popup, and a layer per date or status."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingester.scenes import write_scenes
from tests.browser import browse
from tests.fakes.aoi_data import S2_IDS, s2_scene
from tests.fakes.views_data import box_payload, write_grid_scenes
from tests.test_views_png import status_aoi  # noqa: F401  (fixture)

TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


def popup(text: str) -> dict[str, str]:
    """The popup's table ("alias<TAB>value" per line) as a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        out[key.strip()] = value.strip()
    return out


def external_resources(page: Path) -> list[str]:
    text = page.read_text()
    return re.findall(r'<script[^>]+src="([^"]+)"', text) + re.findall(r'<link[^>]+href="([^"]+)"', text)


def test_file_map_html_has_a_feature_with_its_popup_per_scene_offline(cli, tmp_path, repo):
    scenes = write_grid_scenes(tmp_path / "scenes.json")
    r = cli("map", scenes, "--payload", box_payload(repo, tmp_path / "p.json"), "-o", tmp_path / "map.html")
    assert r.exit_code == 0, r.stderr
    assert external_resources(tmp_path / "map.html") == []  # Leaflet is inlined
    seen = browse(tmp_path / "map.html", tmp_path)
    assert seen["leaflet"] is True
    popups = [popup(f["popup"]) for f in seen["features"]]
    assert sorted(p["source id"] for p in popups) == sorted(S2_IDS[:4])
    by_id = {p["source id"]: (p, f) for p, f in zip(popups, seen["features"], strict=True)}
    for i, sid in enumerate(S2_IDS[:4]):
        p, feature = by_id[sid]
        assert p["date"].startswith(f"{sid[11:15]}-{sid[15:17]}-{sid[17:19]} ")
        assert p["cloud"] == ["5.0 %", "30.0 %", "60.0 %", "90.0 %"][i]
        assert p["status"] == "not ingested" and p["message"] == "–"
        assert p["line"] == str(i + 2)
        assert feature["stroke"] == TAB10[i]  # the PNG's colour for the same day
    assert popups and by_id[S2_IDS[3]][0]["AOI covered"] == "0.0 %"
    assert by_id[S2_IDS[2]][0]["online"].startswith("no")
    assert seen["layers"] == ["2022-01-04 (1)", "2022-01-06 (1)", "2022-01-07 (1)", "2022-01-09 (1)",
                              "AOI DenmarkDemoS2"]
    assert "2022-01-04 (1)" in seen["legend"] and "AOI (21.9 % covered)" in seen["legend"]


def test_tiles_map_html_has_a_feature_per_burst_and_labels_each_burst_id(cli, testdata, repo, tmp_path):
    r = cli("map", testdata / "views" / "losangeles-s1-tiles.json", "--payload",
            repo / "payloads" / "losangeles-s1.json", "-o", tmp_path / "la.html")
    assert r.exit_code == 0, r.stderr
    seen = browse(tmp_path / "la.html", tmp_path)
    popups = [popup(f["popup"]) for f in seen["features"]]
    assert len(popups) == 6
    assert sorted(p["burst"] for p in popups) == ["064_135518_IW2", "064_135519_IW2", "071_151227_IW2",
                                                  "071_151227_IW2", "071_151228_IW2", "071_151228_IW2"]
    assert {p["source id"][:25] for p in popups} == {"S1A_IW_SLC__1SDV_20230120", "S1A_IW_SLC__1SDV_20221016",
                                                     "S1A_IW_SLC__1SDV_20230108"}
    assert sorted(seen["labels"]) == ["064_135518_IW2", "064_135519_IW2", "071_151227_IW2 ×2", "071_151228_IW2 ×2"]
    assert "burst ids" in seen["layers"]


def test_status_map_html_has_a_layer_per_status_and_the_messages(cli, status_aoi, tmp_path):  # noqa: F811
    r = cli("status", status_aoi, "--map", tmp_path / "status.html")
    assert r.exit_code == 0, r.stderr
    seen = browse(tmp_path / "status.html", tmp_path)
    popups = {popup(f["popup"])["source id"]: popup(f["popup"]) for f in seen["features"]}
    assert len(popups) == 4 == len(seen["features"])
    assert [popups[sid]["status"] for sid in S2_IDS[:4]] == ["DONE", "FAILED", "RETRY", "DONE"]
    assert popups[S2_IDS[1]]["message"].endswith(f"fatal for scene {S2_IDS[1]} (attempt 1)")
    assert f"error for tile {S2_IDS[2]}/{S2_IDS[2]}" in popups[S2_IDS[2]]["message"]
    assert popups[S2_IDS[0]]["message"] == "–"
    assert seen["layers"] == ["DONE (2)", "RETRY (1)", "FAILED (1)", f"AOI {status_aoi}"]
    strokes = {popup(f["popup"])["status"]: f["stroke"] for f in seen["features"]}
    assert strokes == {"DONE": "#2ca02c", "FAILED": "#d62728", "RETRY": "#ff7f0e"}


def test_many_days_get_a_layer_per_month_and_a_colour_scale(cli, tmp_path):
    start = datetime(2022, 1, 1, 10, tzinfo=UTC)
    scenes = []
    for d in range(45):
        day = start + timedelta(days=d)
        scenes.append(s2_scene(f"S2A_MSIL1C_{day:%Y%m%dT%H%M%S}_N0510_R108_T32UNG_{day:%Y%m%dT%H%M%S}"))
    write_scenes(tmp_path / "s.json", scenes)
    assert cli("map", tmp_path / "s.json", "-o", tmp_path / "m.html").exit_code == 0
    seen = browse(tmp_path / "m.html", tmp_path)
    assert len(seen["features"]) == 45
    assert seen["layers"] == ["2022-01 (31)", "2022-02 (14)"]
    assert "2022-01-01 … 2022-02-14 (45 days)" in seen["legend"]


def test_the_browser_check_sees_nothing_on_a_page_that_needs_the_network(tmp_path):
    """The control: folium's own page loads Leaflet from a CDN, which the test browser cannot reach."""
    import folium

    fmap = folium.Map(location=[55, 10], zoom_start=8)
    feature = {"type": "Feature", "properties": {"name": "x"},
               "geometry": {"type": "Polygon", "coordinates": [[[9, 54], [11, 54], [11, 56], [9, 54]]]}}
    folium.GeoJson({"type": "FeatureCollection", "features": [feature]},
                   popup=folium.GeoJsonPopup(fields=["name"])).add_to(fmap)
    fmap.save(str(tmp_path / "cdn.html"))
    assert external_resources(tmp_path / "cdn.html")
    seen = browse(tmp_path / "cdn.html", tmp_path)
    assert seen["leaflet"] is False and seen["features"] == []


def test_the_inlined_leaflet_is_the_version_folium_is_built_for():
    import folium
    import xstatic.pkg.leaflet as leaflet

    url = dict(folium.Map.default_js)["leaflet"]
    folium_version = re.search(r"leaflet@(\d+\.\d+)", url).group(1)
    assert leaflet.VERSION.startswith(folium_version + "."), (url, leaflet.VERSION)


def test_popup_text_is_escaped(cli, tmp_path):
    scene = s2_scene(S2_IDS[0])
    scene.tags["cloudCoverPercentage"] = "12"
    write_scenes(tmp_path / "s.json", [scene])
    doc = json.loads((tmp_path / "s.json").read_text())
    doc["features"][0]["properties"]["data"]["date"] = "2022-01-04T10:34:31Z"
    (tmp_path / "s.json").write_text(json.dumps(doc))
    from ingester.views.html import popup_values
    from ingester.views.model import footprints, from_file

    view = from_file(tmp_path / "s.json")
    (item,) = footprints(view)
    view.scenes[0].message = '<img src=x onerror="alert(1)">'
    assert popup_values(item)["message"] == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_suffixes(cli, tmp_path, suffix):
    scenes = write_grid_scenes(tmp_path / "scenes.json", 1)
    assert cli("map", scenes, "-o", tmp_path / f"m{suffix}").exit_code == 0
    assert (tmp_path / f"m{suffix}").read_text().startswith("<!DOCTYPE html>")
