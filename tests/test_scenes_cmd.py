"""`ingester scenes` end to end against the fake catalogue: the example payloads, options, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from shapely.geometry import box

from ingester.geometry import from_wkt
from ingester.scenes import read_scenes
from tests.fakes.cdse_odata import FakeCdseCatalogue, s1_product, s2_product

OUT = Path("outputs/scenes.json")


@pytest.fixture
def fake():
    with FakeCdseCatalogue() as server:
        yield server


def env(fake: FakeCdseCatalogue) -> dict[str, str]:
    return {"INGESTER_CDSE_CATALOGUE_URL": fake.url}


def denmark_s2_catalogue() -> dict[str, dict]:
    """Sentinel-2 products around the Denmark AOI in January 2022, as the catalogue would list them."""
    t = datetime(2022, 1, 1, 10, 34, 31, 24000, tzinfo=UTC)
    over, beside = box(9.0, 54.1, 10.6, 55.9), box(10.0, 54.1, 11.6, 55.9)  # T32UNF-like, and the next tile east
    return {
        "jan01": s2_product(sensing=t, geometry=over, tile="32UNF", cloud=12.25, relative_orbit=108),
        "jan01_east": s2_product(sensing=t, geometry=beside, tile="32UPF", cloud=10.0, relative_orbit=108),
        "jan03_old": s2_product(sensing=t + timedelta(days=2, minutes=-10), geometry=over, tile="32UNF", cloud=3.0,
                                baseline="0301", relative_orbit=8, generation=datetime(2022, 1, 3, 12, tzinfo=UTC)),
        "jan03_new": s2_product(sensing=t + timedelta(days=2, minutes=-10), geometry=over, tile="32UNF", cloud=3.0,
                                baseline="0510", relative_orbit=8, generation=datetime(2024, 4, 23, 9, tzinfo=UTC)),
        "jan06_cloudy": s2_product(sensing=t + timedelta(days=5), geometry=over, tile="32UNF", cloud=97.5,
                                   relative_orbit=108),
        "jan08_l2a": s2_product(sensing=t + timedelta(days=7), geometry=over, tile="32UNF", level="L2A", cloud=1.0),
        "jan11": s2_product(sensing=t + timedelta(days=10), geometry=over, tile="32UNF", cloud=79.9999,
                            mission="S2B", relative_orbit=108),
        "jan01_far": s2_product(sensing=t, geometry=box(20, 40, 21, 41), tile="34TDL", cloud=10.0),
        "jan13_late": s2_product(sensing=t + timedelta(days=12), geometry=over, tile="32UNF", cloud=5.0),
    }


def test_denmark_s2_payload_end_to_end_writes_the_expected_scenes_file(cli, repo, fake):
    products = denmark_s2_catalogue()
    fake.add(products.values())
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", env=env(fake))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(OUT.read_text())
    assert doc["type"] == "FeatureCollection" and doc["properties"] == {"next": "false"}
    expected = ["jan01", "jan01_east", "jan03_new", "jan11"]
    assert [f["properties"]["source_id"] for f in doc["features"]] == [products[k]["Name"][:-5] for k in expected]
    assert [f["id"] for f in doc["features"]] == [0, 1, 2, 3]
    first = doc["features"][0]
    props = first["properties"]
    assert list(props) == sorted(props) and list(props["data"]) == sorted(props["data"])
    assert props["aoi"] == "DenmarkDemoS2" and props["id"] == 0
    assert props["data"] == {
        "date": "2022-01-01T10:34:31.024Z", "graph_config": {}, "graph_name": "CopyProductToStorage",
        "is_retriable": True, "record_id": "", "storage_uri": "",
        "metadata": {
            "checksums": {c["Algorithm"]: c["Value"] for c in products["jan01"]["Checksum"]},
            "online": True, "product_name": products["jan01"]["Name"],
            "publication_date": "2022-01-01T13:34:31.024000Z",
            "s3_path": products["jan01"]["S3Path"], "size": 224105657, "uuid": products["jan01"]["Id"],
        },
    }
    assert props["tags"] == {
        "area": "Denmark", "cloudCoverPercentage": "12.25", "constellation": "SENTINEL2",
        "ingestionDate": "2022-01-01T10:34:31.024000Z", "orbit": "34139", "orbitDirection": "",
        "productType": "S2MSI1C", "provider": "geocube-ingester", "relativeOrbit": "108",
        "satellite": "SENTINEL2A", "source": "tutorial", "sourceID": props["source_id"],
        "uuid": products["jan01"]["Id"], "aoiCoverage": "1.0000",
    }
    assert doc["features"][3]["properties"]["tags"]["satellite"] == "SENTINEL2B"
    assert from_wkt(props["wkt"]).equals(box(9.0, 54.1, 10.6, 55.9))
    assert first["geometry"]["type"] == "Polygon"
    # the file reads back, and the summary went to stderr
    assert len(read_scenes(OUT).scenes) == 4
    assert "4 scene(s) found" in result.stderr and "next: false" in result.stderr
    assert "1 reprocessed duplicates" in result.stderr


def test_denmark_s1_payload_end_to_end_matches_the_original_listing(cli, repo, testdata, fake):
    legacy = read_scenes(testdata / "payloads" / "scenes.json").scenes  # what the original listed for this AOI
    products = [s1_product(s.source_id, sensing=s.date, geometry=from_wkt(s.wkt), pid=s.metadata["uuid"],
                           relative_orbit=44, slice_number=17) for s in legacy]
    decoy = s1_product("S1A_IW_SLC__1SDV_20220116T053123_20220116T053150_041489_04EF1F_9C5A",
                       sensing=datetime(2022, 1, 16, 5, 31, 23, tzinfo=UTC), geometry=from_wkt(legacy[0].wkt),
                       relative_orbit=139, direction="DESCENDING")
    fake.add(products + [decoy])
    result = cli("scenes", repo / "payloads" / "denmark-s1.json", "-o", "s1.json", env=env(fake))
    assert result.exit_code == 0, result.stderr
    written = read_scenes("s1.json")
    assert written.next is False
    by_id = {s.source_id: s for s in written.scenes}
    assert list(by_id) == [s.source_id for s in sorted(legacy, key=lambda s: s.date)]
    for old in legacy:
        new = by_id[old.source_id]
        assert new.date == old.date and new.metadata["uuid"] == old.metadata["uuid"]
        assert from_wkt(new.wkt).equals(from_wkt(old.wkt))
        assert new.graph_name == old.graph_name == "S1Preprocessing" and new.graph_config == old.graph_config
        for tag in ("area", "constellation", "orbit", "orbitDirection", "productType", "provider", "relativeOrbit",
                    "satellite", "sliceNumber", "source", "sourceID", "uuid"):
            assert new.tags[tag] == old.tags[tag], tag
        assert new.tags["polarisationMode"] == "VV&VH"  # the catalogue's own spelling (SciHub wrote "VV VH")
    assert not OUT.exists()


def test_limit_and_page_options_and_json_summary(cli, repo, fake):
    products = denmark_s2_catalogue()
    fake.add(products.values())
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--page", "0", "--limit", "2", "--json",
                 env=env(fake))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["next"] is True and summary["rows"] == 2 and summary["requests"] == 1
    assert summary["output"] == "outputs/scenes.json" and summary["scenes"] == 2
    assert json.loads(OUT.read_text())["properties"] == {"next": "true"}
    assert "$skip" not in fake.product_requests[0]["params"] and fake.product_requests[0]["params"]["$top"] == "3"
    # page 1: the acquisitions 2 and 3 (jan03, reprocessed: both its rows, the newest kept; jan11), the last
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--page", "1", "--limit", "2", "--json",
                 env=env(fake))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["next"] is False and summary["rows"] == 3 and summary["scenes"] == 2
    assert json.loads(OUT.read_text())["properties"] == {"next": "false"}
    assert [f["properties"]["source_id"] for f in json.loads(OUT.read_text())["features"]] == [
        products[k]["Name"][:-5] for k in ("jan03_new", "jan11")]


def test_quiet_prints_no_summary(cli, repo, fake):
    fake.add(denmark_s2_catalogue().values())
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--quiet", env=env(fake))
    assert result.exit_code == 0 and result.stderr == "" and OUT.exists()


def test_catalogue_failure_exits_1_and_writes_nothing(cli, repo, fake):
    OUT.parent.mkdir()
    OUT.write_text("previous listing")
    fake.fail_next(10, 503)
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", env=env(fake))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: CDSE catalogue search failed: cdse-catalogue: GET ")
    assert "answered 503 after 3 requests" in result.stderr
    assert OUT.read_text() == "previous listing"


def test_unreachable_catalogue_exits_1(cli, repo):
    result = cli("scenes", repo / "payloads" / "denmark-s2.json")  # conftest points it at a closed port
    assert result.exit_code == 1 and "no response after 3 requests" in result.stderr and not OUT.exists()


def test_with_json_a_runtime_failure_is_a_json_error_on_stdout(repo, tmp_path):
    """Exit 1 (the catalogue unreachable), in a real process: stdout holds one JSON object, stderr the text."""
    import subprocess

    from tests.conftest import PYTHON, subprocess_env

    proc = subprocess.run([PYTHON, "-m", "ingester", "scenes", str(repo / "payloads" / "denmark-s2.json"), "--json"],
                          capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 1 and "no response after 3 requests" in doc["error"]
    assert proc.stderr.startswith("error: CDSE catalogue search failed")
    proc = subprocess.run([PYTHON, "-m", "ingester", "scenes", "p.json", "--limit", "x", "--json"],
                          capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and json.loads(proc.stdout)["exit_code"] == 2  # a usage error, from sys.argv
    assert "Invalid value for '--limit'" in json.loads(proc.stdout)["error"]


def test_negative_options_are_refused_with_exit_2(cli, repo, fake):
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--limit", "-1", env=env(fake))
    assert result.exit_code == 2 and not OUT.exists() and fake.requests == []


def test_help_documents_every_option(cli):
    result = cli("scenes", "--help")
    assert result.exit_code == 0
    for option in ("--page", "--limit", "--output", "--quiet", "--json"):
        assert option in result.stdout


def test_tiles_without_a_scenes_file_searches_the_catalogue(cli, repo, fake):
    products = denmark_s2_catalogue()
    fake.add(products.values())
    result = cli("tiles", repo / "payloads" / "denmark-s2.json", env=env(fake))
    assert result.exit_code == 0, result.stderr
    tiles = read_scenes(Path("outputs/tiles.json")).scenes
    assert [s.source_id for s in tiles] == [products[k]["Name"][:-5] for k in ("jan01", "jan01_east", "jan03_new",
                                                                              "jan11")]
    assert all([t.source_id for t in s.tiles] == [s.source_id] for s in tiles)


def test_output_that_is_a_directory_exits_2(cli, repo, fake):
    fake.add(denmark_s2_catalogue().values())
    Path("somedir").mkdir()
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "-o", "somedir", env=env(fake))
    assert result.exit_code == 2 and "error: --output somedir: is a folder, not a file path" in result.stderr
    assert list(Path("somedir").iterdir()) == []


def test_summary_names_the_filters_applied(cli, repo, fake):
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--json", env=env(fake))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["filters"] == {"platformname": "SENTINEL-2", "producttype": "S2MSI1C",
                                                    "cloudcoverpercentage": "[0 TO 80]"}
    assert "catalogue filters applied: platformname=SENTINEL-2, producttype=S2MSI1C, " in result.stderr


def test_a_page_without_a_limit_exits_2(cli, repo, fake):
    result = cli("scenes", repo / "payloads" / "denmark-s2.json", "--page", "2", env=env(fake))
    assert result.exit_code == 2 and "page 2 with limit 0: limit 0 returns every scene" in result.stderr
    assert fake.requests == [] and not OUT.exists()


def test_show_reports_the_coverage_the_catalogue_tagged(cli, repo, fake):
    """One measure of coverage: the `aoiCoverage` tag written by the search and `show`'s coverage column."""
    fake.add(denmark_s2_catalogue().values())
    assert cli("scenes", repo / "payloads" / "denmark-s2.json", env=env(fake)).exit_code == 0
    tags = [f["properties"]["tags"]["aoiCoverage"] for f in json.loads(OUT.read_text())["features"]]
    shown = cli("show", OUT, "--payload", repo / "payloads" / "denmark-s2.json", "--json")
    assert shown.exit_code == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [f"{row['coverage']:.4f}" for row in rows] == tags
    assert "1.0000" in tags and any(0 < float(t) < 1 for t in tags)
