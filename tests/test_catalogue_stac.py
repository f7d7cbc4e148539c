"""`ingester scenes` on STAC APIs (pystac-client) against the fake STAC API: the USGS Landsat server for
`constellation: landsat89`, Earth Search for a `scene_type.catalogue` payload, and the recorded Earth
Search page; paging by next links (POST with merge, GET), the query and filter extensions, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from shapely.geometry import box, mapping, shape

from tests.fakes.stac_api import (
    DENMARK_FOOTPRINT,
    FakeStacApi,
    earth_search_item,
    landsat_item,
    recorded_page,
)

L1 = "LC08_L1TP_196022_20220105_20220114_02_T1"
L2 = "LC09_L2SP_196022_20220113_20220115_02_T1"


def landsat_items(testdata: Path) -> list[dict]:
    folder1, folder2 = testdata / "landsat" / L1, testdata / "landsat" / L2
    items = [landsat_item(folder1, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-05T10:25:12.447886Z", cloud=45.21,
                          sun=(162.6, 11.09))]
    # a reprocessing of the same acquisition, older: de-duplicated away
    old = landsat_item(folder1, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-05T10:25:12.447886Z", cloud=45.21,
                       sun=(162.6, 11.09))
    old["id"] = L1.replace("20220114", "20220107").replace("_T1", "_RT")
    items.append(old)
    # Landsat 9 on the 13th, and a cloudy one (excluded by the server's query), and one outside the period
    l9 = landsat_item(folder1, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-13T10:25:01.331113Z", cloud=12.3,
                      sun=(161.1, 12.7), platform="LANDSAT_9")
    l9["id"] = "LC09_L1TP_196022_20220113_20220115_02_T1"
    cloudy = landsat_item(folder1, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-21T10:25:12Z", cloud=95.0,
                          sun=(160.0, 14.0))
    cloudy["id"] = "LC08_L1TP_196022_20220121_20220130_02_T1"
    late = landsat_item(folder1, geometry=DENMARK_FOOTPRINT, datetime_="2022-02-06T10:25:12Z", cloud=5.0,
                        sun=(160.0, 14.0))
    late["id"] = "LC08_L1TP_196022_20220206_20220215_02_T1"
    far = landsat_item(folder1, geometry=mapping(box(20, 40, 21, 41)), datetime_="2022-01-07T10:25:12Z", cloud=5.0,
                       sun=(160.0, 14.0))
    far["id"] = "LC08_L1TP_186031_20220107_20220115_02_T1"
    level2 = landsat_item(folder2, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-13T10:25:01.331113Z", cloud=12.34,
                          sun=(161.09, 12.67))
    return [*items, l9, cloudy, late, far, level2]


@pytest.fixture
def landsat_payload(repo, tmp_path) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-landsat.json", tmp_path / "denmark-landsat.json"))


def searches(fake: FakeStacApi) -> list[dict]:
    return [r for r in fake.requests if r["path"].endswith("/search")]


def test_landsat_scenes_come_from_the_usgs_stac_server_with_exact_times_and_reference_tags(
        cli, testdata, landsat_payload, monkeypatch):
    with FakeStacApi(landsat_items(testdata)) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        r = cli("scenes", landsat_payload, "--json")
        assert r.exit_code == 0, r.stderr
        first = searches(fake)[0]
    assert first["method"] == "POST"
    body = first["body"]
    assert body["collections"] == ["landsat-c2l1"]
    assert body["datetime"] == "2022-01-01T00:00:00.000Z/2022-01-31T23:00:00.000Z"  # exact, not whole days
    assert shape(body["intersects"]).contains(shape(json.loads(landsat_payload.read_text())["geometry"]).centroid)
    assert body["query"] == {"eo:cloud_cover": {"gte": 0, "lte": 80}, "platform": {"in": ["LANDSAT_8", "LANDSAT_9"]}}
    doc = json.loads(Path("outputs/scenes.json").read_text())
    ids = [f["properties"]["source_id"] for f in doc["features"]]
    assert ids == [L1, "LC09_L1TP_196022_20220113_20220115_02_T1"]  # RT reprocessing, cloudy, late, far: out
    props = doc["features"][0]["properties"]
    assert props["tags"] == {
        "area": "Denmark", "source": "tutorial", "sourceID": L1, "productType": "LC_C02_L1TP",
        "cloudCoverPercentage": "45.21", "landCloudCoverPercentage": "40.69",
        "ingestionDate": "2022-01-05T10:25:12.447886Z",
        "sunAzimuth": "162.6", "sunElevation": "11.09", "constellation": "LANDSAT", "satellite": "LANDSAT08",
        "relativeOrbit": "196", "path": "196", "row": "022", "aoiCoverage": "0.9676"}
    assert doc["features"][1]["properties"]["tags"]["satellite"] == "LANDSAT09"
    meta = props["data"]["metadata"]
    assert meta["s3_prefix"] == f"s3://usgs-landsat/collection02/level-1/standard/oli-tirs/2022/196/022/{L1}/"
    assert meta["assets"]["red"]["s3"].endswith(f"{L1}_B4.TIF") and meta["assets"]["red"]["checksum"].startswith("1340")
    assert meta["stac_item"].endswith(f"/collections/landsat-c2l1/items/{L1}")
    out = json.loads(r.stdout)
    assert out["catalogue"] == "usgs-landsat" and out["dropped"]["reprocessed duplicates"] == 1
    assert out["filters"]["server filters"] == "query"


def test_level_2_and_a_platform_alias_choose_the_collection_and_the_platform(cli, testdata, landsat_payload,
                                                                            monkeypatch):
    doc = json.loads(landsat_payload.read_text())
    doc["scene_type"] = {"constellation": "landsat-9", "parameters": {"producttype": "L2"}}
    landsat_payload.write_text(json.dumps(doc))
    with FakeStacApi(landsat_items(testdata)) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        r = cli("scenes", landsat_payload)
        assert r.exit_code == 0, r.stderr
        body = searches(fake)[0]["body"]
    assert body["collections"] == ["landsat-c2l2-sr"] and body["query"] == {"platform": {"in": ["LANDSAT_9"]}}
    (feature,) = json.loads(Path("outputs/scenes.json").read_text())["features"]
    assert feature["properties"]["source_id"] == L2  # the item id without its _SR suffix: the product
    assert feature["properties"]["tags"]["productType"] == "LC_C02_L2SP"


def test_pages_follow_post_next_links_with_merge_and_page_limit_match_the_cdse_rules(
        cli, testdata, landsat_payload, monkeypatch):
    items = landsat_items(testdata)
    with FakeStacApi(items) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        monkeypatch.setenv("INGESTER_STAC_PAGE_SIZE", "1")
        all_rows = cli("scenes", landsat_payload, "--json", "-o", "all.json")
        assert all_rows.exit_code == 0, all_rows.stderr
        posts = searches(fake)
        assert len(posts) >= 3 and all(p["method"] == "POST" for p in posts)
        assert posts[1]["body"]["next"] == "1" and posts[1]["body"]["collections"] == ["landsat-c2l1"]  # merged
        fake.requests.clear()
        page1 = cli("scenes", landsat_payload, "--page", "1", "--limit", "1", "--json", "-o", "p1.json")
        assert page1.exit_code == 0, page1.stderr
    everything = [f["properties"]["source_id"] for f in json.loads(Path("all.json").read_text())["features"]]
    assert json.loads(all_rows.stdout)["next"] is False
    p1 = json.loads(Path("p1.json").read_text())
    assert p1["properties"]["next"] == "true"
    # server order is newest first, then id: row 0 is the L9 scene of the 13th, row 1 the RT processing of
    # the 5th (on a page of its own, nothing to de-duplicate it against: as for CDSE, within a page only)
    assert [f["properties"]["source_id"] for f in p1["features"]] == ["LC08_L1TP_196022_20220105_20220107_02_RT"]
    assert set(everything) >= {"LC09_L1TP_196022_20220113_20220115_02_T1", L1}


def test_a_server_with_get_only_is_paged_by_its_get_next_links(cli, testdata, landsat_payload, monkeypatch):
    with FakeStacApi(landsat_items(testdata), post=False) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        monkeypatch.setenv("INGESTER_STAC_PAGE_SIZE", "1")
        r = cli("scenes", landsat_payload)
        assert r.exit_code == 0, r.stderr
        gets = searches(fake)
    assert all(g["method"] == "GET" for g in gets) and len(gets) >= 3
    assert gets[1]["query"]["next"] == ["1"] and json.loads(gets[1]["query"]["intersects"][0])["type"]
    assert len(json.loads(Path("outputs/scenes.json").read_text())["features"]) == 2


def test_a_server_without_the_query_extension_gets_a_cql2_filter_and_without_either_the_client_filters(
        cli, testdata, landsat_payload, monkeypatch):
    with FakeStacApi(landsat_items(testdata), query=False) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        assert cli("scenes", landsat_payload).exit_code == 0
        body = searches(fake)[0]["body"]
    assert "query" not in body and body["filter-lang"] == "cql2-json"
    assert {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 80]} in body["filter"]["args"]
    assert {"op": "in", "args": [{"property": "platform"}, ["LANDSAT_8", "LANDSAT_9"]]} in body["filter"]["args"]
    filtered = [f["properties"]["source_id"] for f in json.loads(Path("outputs/scenes.json").read_text())["features"]]
    with FakeStacApi(landsat_items(testdata), query=False, filter_=False) as fake:
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        r = cli("scenes", landsat_payload, "--json")
        assert r.exit_code == 0, r.stderr
        body = searches(fake)[0]["body"]
    assert "query" not in body and "filter" not in body
    # the cloudy scene comes back from the server and is set aside on the client, with a warning
    assert "excluded by cloudcoverpercentage=[0 TO 80]" in r.stderr
    assert [f["properties"]["source_id"] for f in json.loads(Path("outputs/scenes.json").read_text())["features"]] \
        == filtered


def es_items(fake_url: str) -> list[dict]:
    def href(item_id: str, band: str) -> str:
        return f"{fake_url}/data/{item_id}/{band}.tif"

    items = [earth_search_item("S2A_32UNG_20220104_0_L2A", geometry=DENMARK_FOOTPRINT,
                               datetime_="2022-01-04T10:34:31.024000Z", cloud=50.9, baseline="04.00", href=href),
             earth_search_item("S2B_32UNG_20220106_0_L2A", geometry=DENMARK_FOOTPRINT,
                               datetime_="2022-01-06T10:23:29.024000Z", cloud=20.1, baseline="03.01", href=href)]
    reprocessed = earth_search_item("S2A_32UNG_20220104_1_L2A", geometry=DENMARK_FOOTPRINT,
                                    datetime_="2022-01-04T10:34:31.024000Z", cloud=50.9, baseline="05.09",
                                    href=href, offset_applied=True)
    return [*items, reprocessed]


def test_an_earth_search_payload_lists_sentinel_2_l2a_items_as_scenes(cli, repo, tmp_path, monkeypatch):
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2-earth-search.json", tmp_path / "es.json"))
    with FakeStacApi([]) as fake:
        fake.items = es_items(fake.url)
        monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"earth-search={fake.url}")
        r = cli("scenes", payload, "--json")
        assert r.exit_code == 0, r.stderr
        body = searches(fake)[0]["body"]
    assert body["collections"] == ["sentinel-2-l2a"] and body["query"] == {"eo:cloud_cover": {"gte": 0, "lte": 80}}
    doc = json.loads(Path("outputs/scenes.json").read_text())
    ids = [f["properties"]["source_id"] for f in doc["features"]]
    assert ids == ["S2A_32UNG_20220104_1_L2A", "S2B_32UNG_20220106_0_L2A"]  # sequence 1 replaces 0
    props = doc["features"][0]["properties"]
    assert props["tags"]["satellite"] == "SENTINEL2A" and props["tags"]["constellation"] == "SENTINEL2"
    assert props["tags"]["productType"] == "S2MSI2A" and props["tags"]["relativeOrbit"] == "108"
    meta = props["data"]["metadata"]
    assert meta["catalogue"] == "earth-search" and meta["assets"]["red"]["href"].endswith("/B04.tif")
    assert meta["earthsearch:boa_offset_applied"] is True and meta["s2:processing_baseline"] == "05.09"
    assert json.loads(r.stdout)["catalogue"] == "earth-search"


def test_the_recorded_earth_search_page_is_served_and_mapped(cli, tmp_path, monkeypatch):
    page = recorded_page()
    (item,) = page["features"]
    payload = tmp_path / "iceland.json"
    payload.write_text(json.dumps({
        "name": "Iceland", "type": "Feature", "geometry": mapping(shape(item["geometry"]).centroid.buffer(0.05)),
        "start_time": "2024-02-06T00:00:00Z", "end_time": "2024-02-07T00:00:00Z",
        "scene_type": {"constellation": "sentinel2", "catalogue": "stac:PLACEHOLDER",
                       "parameters": {"collection": "sentinel-2-l1c"}}}))
    with FakeStacApi(page["features"]) as fake:
        payload.write_text(payload.read_text().replace("stac:PLACEHOLDER", f"stac:{fake.url}"))
        r = cli("scenes", payload)
        assert r.exit_code == 0, r.stderr
    (feature,) = json.loads(Path("outputs/scenes.json").read_text())["features"]
    props = feature["properties"]
    assert props["source_id"] == "S2B_27VWK_20240206_0_L1C"
    assert props["tags"]["satellite"] == "SENTINEL2B" and props["tags"]["productType"] == "S2MSI1C"
    assert props["data"]["metadata"]["assets"]["red"]["href"] == \
        "s3://sentinel-s2-l1c/tiles/27/V/WK/2024/2/6/0/B04.jp2"


def test_a_transient_server_error_is_retried(cli, testdata, landsat_payload, monkeypatch):
    with FakeStacApi(landsat_items(testdata)) as fake:
        fake.fail_next = [503, 502]
        monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
        r = cli("scenes", landsat_payload)
        assert r.exit_code == 0, r.stderr
    assert len(json.loads(Path("outputs/scenes.json").read_text())["features"]) == 2


def test_an_unreachable_stac_api_is_exit_1_with_a_clear_message_and_no_file(cli, landsat_payload, monkeypatch):
    monkeypatch.setenv("INGESTER_LANDSAT_STAC_URL", "http://127.0.0.1:9/stac-server")
    r = cli("scenes", landsat_payload)
    assert r.exit_code == 1
    assert "STAC API http://127.0.0.1:9/stac-server cannot be opened: unreachable" in r.stderr
    assert "Traceback" not in r.stderr and not Path("outputs/scenes.json").exists()


def test_a_collection_that_does_not_exist_is_exit_2_naming_the_ones_that_do(cli, repo, tmp_path, monkeypatch):
    payload = tmp_path / "es.json"
    doc = json.loads((repo / "payloads" / "denmark-s2-earth-search.json").read_text())
    doc["scene_type"]["parameters"]["collection"] = "sentinel-2-l3z"
    payload.write_text(json.dumps(doc))
    with FakeStacApi([]) as fake:
        fake.items = es_items(fake.url)
        monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"earth-search={fake.url}")
        r = cli("scenes", payload)
    assert r.exit_code == 2
    assert "collection 'sentinel-2-l3z' does not exist on the STAC API" in r.stderr and "sentinel-2-l2a" in r.stderr
    assert not Path("outputs/scenes.json").exists()


def test_an_unknown_named_catalogue_is_exit_2_listing_the_configured_ones(cli, repo, tmp_path):
    payload = tmp_path / "es.json"
    doc = json.loads((repo / "payloads" / "denmark-s2-earth-search.json").read_text())
    doc["scene_type"]["catalogue"] = "earth-serch"
    payload.write_text(json.dumps(doc))
    r = cli("scenes", payload)
    assert r.exit_code == 2
    assert "field 'scene_type.catalogue': unknown catalogue 'earth-serch'" in r.stderr
    assert "earth-search, planetary-computer" in r.stderr


def test_a_netrc_entry_for_the_stac_host_never_sends_its_password(cli, repo, tmp_path, monkeypatch):
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2-earth-search.json", tmp_path / "es.json"))
    with FakeStacApi([]) as fake:
        fake.items = es_items(fake.url)
        netrc = Path(tmp_path / "home" / ".netrc")
        netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"earth-search={fake.url}")
        r = cli("scenes", payload, "--json")
        assert r.exit_code == 0, r.stderr
        assert fake.requests and all("authorization" not in {k.lower() for k in req["headers"]}
                                     for req in fake.requests)


def test_stac_scenes_carry_their_coverage_of_the_aoi_and_min_coverage_applies_after_the_aoi_check(
        cli, testdata, landsat_payload):
    from pyproj import Geod

    from ingester.payload import load_payload

    aoi = load_payload(landsat_payload).aoi
    geod = Geod(ellps="WGS84")
    footprint = shape(DENMARK_FOOTPRINT)
    covered = abs(geod.geometry_area_perimeter(footprint.intersection(aoi))[0])
    share = covered / abs(geod.geometry_area_perimeter(aoi)[0])
    raw = json.loads(landsat_payload.read_text())
    for min_coverage, kept, below in ((round(share - 0.01, 3), 2, 0), (round(share + 0.01, 3), 0, 3)):
        raw["min_coverage"] = min_coverage
        landsat_payload.write_text(json.dumps(raw))
        with FakeStacApi(landsat_items(testdata)) as fake:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("INGESTER_LANDSAT_STAC_URL", fake.url)
                r = cli("scenes", landsat_payload, "--json")
        assert r.exit_code == 0, r.stderr
        features = json.loads(Path("outputs/scenes.json").read_text())["features"]
        assert [f["properties"]["tags"]["aoiCoverage"] for f in features] == [f"{share:.4f}"] * kept
        summary = json.loads(r.stdout)
        assert summary["dropped"].get("below min_coverage", 0) == below  # L1, its RT copy (checked before the
        # de-duplication) and L9; the cloudy, late and Level-2 items are not asked for
