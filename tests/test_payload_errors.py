"""Bad payloads through `ingester scenes`: a clear message naming the file and field, exit 2, nothing
written and no request sent."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product

OUT = Path("outputs/scenes.json")


def good(repo: Path) -> dict:
    return json.loads((repo / "payloads" / "denmark-s2.json").read_text())


def change(path: str, value):
    """A mutation setting (or, with value DELETE, removing) a dotted path of the payload."""

    def apply(doc: dict) -> dict:
        doc = copy.deepcopy(doc)
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
        return doc

    return apply


DELETE = object()
RING = [[9.9, 54.9], [10.0, 54.9], [10.0, 55.0], [9.9, 54.9]]

CASES = {
    "missing name": (change("name", DELETE), r"field 'name': is required"),
    "name with spaces": (change("name", "Denmark demo!"), r"field 'name': the AOI name 'Denmark demo!' is not allowed"),
    "missing GeoJSON type": (change("type", DELETE), r"field 'type': missing GeoJSON field 'type'"),
    "unknown key aoi": (lambda d: {**d, "aoi": "Denmark"}, r"field 'aoi': unknown key; the AOI is the payload's own"),
    "key with wrong case": (lambda d: {**d, "Start_time": d["start_time"]},
                            r"field 'Start_time': unknown key; did you mean 'start_time'\?"),
    "time without zone": (change("start_time", "2022-01-01T00:00:00"), r"field 'start_time': .* has no time zone"),
    "time not RFC 3339": (change("start_time", "01/01/2022Z"),
                          r"field 'start_time': '01/01/2022Z' is not a date and time"),
    "end before start": (change("end_time", "2021-12-31T00:00:00Z"), r"field 'end_time': must be after start_time"),
    "unknown constellation": (change("scene_type.constellation", "sentinel9"),
                              r"field 'scene_type.constellation': unknown constellation \"sentinel9\""),
    "camel-case parameter": (change("scene_type.parameters", {"productType": "S2MSI1C"}),
                             r"field 'scene_type.parameters.productType': unknown parameter for sentinel2 "
                             r"\(did you mean 'producttype'\?\); supported: platformname, producttype"),
    "S1-only parameter on S2": (change("scene_type.parameters", {"polarisationmode": "VV VH"}),
                                r"field 'scene_type.parameters.polarisationmode': unknown parameter for sentinel2"),
    "cloud cover not a range": (change("scene_type.parameters", {"cloudcoverpercentage": "0-80"}),
                                r"field 'scene_type.parameters.cloudcoverpercentage': '0-80' must be '\[min TO max\]'"),
    "cloud cover inverted": (change("scene_type.parameters", {"cloudcoverpercentage": "[80 TO 10]"}),
                             r"field 'scene_type.parameters.cloudcoverpercentage'"),
    "orbit not a number": (change("scene_type.parameters", {"relativeorbitnumber": "44a"}),
                           r"field 'scene_type.parameters.relativeorbitnumber': '44a' must be an integer "
                           r"from 1 to 175"),
    "value that would break the query": (change("scene_type.parameters", {"producttype": "S2MSI1C' or 1 eq 1"}),
                                         r"field 'scene_type.parameters.producttype': .* may only hold"),
    "record tag not a string": (change("record_tags.area", 3), r"field 'record_tags.area': must be a string, got 3"),
    "latitude out of range": (change("geometry", {"type": "Polygon", "coordinates": [[[9.9, 54.9], [10, 95], [10, 55],
                                                                                        [9.9, 54.9]]]}),
                              r"field 'geometry': .* out of range"),
    "AOI without area": (change("geometry", {"type": "Point", "coordinates": [9.9, 54.9]}),
                         r"field 'geometry': the AOI has no polygon"),
    "is_retriable not a boolean": (change("is_retriable", "yes"), r"field 'is_retriable': must be true or false"),
    "negative retry count": (change("retry_count", -1), r"field 'retry_count': must be from 0 to 100, got -1"),
    "limit as a string": (change("limit", "100"), r"field 'limit': must be an integer, got \"100\""),
    "min_coverage as a percentage": (change("min_coverage", 50),
                                     r"field 'min_coverage': must be from 0 to 1 \(a share of the AOI\), got 50 "
                                     r"\(a share, not a percentage: 50 % is 0.5\)"),
    "min_coverage negative": (change("min_coverage", -0.1), r"field 'min_coverage': must be from 0 to 1 .*got -0.1$"),
    "min_coverage as a string": (change("min_coverage", "0.5"),
                                 r"field 'min_coverage': must be a number from 0 to 1 .*got '0.5'"),
    "min_coverage as a bool": (change("min_coverage", True), r"field 'min_coverage': must be a number from 0 to 1"),
    "layer without instance": (change("layers.B01", {"variable": "B01"}), r"field 'layers.B01.instance': is required"),
    "OneAtlas without an API key": (lambda d: {**change("scene_type", {"constellation": "spot"})(d)},
                                    r"oneatlas: no API key: set INGESTER_ONEATLAS_API_KEY, or a ~/.netrc entry"),
}


@pytest.fixture
def fake():
    with FakeCdseCatalogue() as server:
        yield server


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_payload_is_refused_with_file_and_field_exit_2_and_nothing_written(case, cli, repo, fake):
    mutate, message = CASES[case]
    path = Path("bad.json")
    path.write_text(json.dumps(mutate(good(repo))))
    result = cli("scenes", path, env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: bad.json: "), line
    assert re.search(message, line), line
    assert not OUT.exists() and not Path("outputs").exists()
    assert fake.requests == []


@pytest.mark.parametrize("text, message", [
    (None, r"error: missing.json: file not found"),
    ('{"name": "x",\n  "type": "Feature",\n  oops}', r"error: missing.json: invalid JSON at line 3, column 3"),
    ("[1, 2]", r"error: missing.json: the payload must be a JSON object, got list"),
])
def test_unreadable_payload_files_exit_2(text, message, cli, fake):
    if text is not None:
        Path("missing.json").write_text(text)
    result = cli("scenes", "missing.json", env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2 and re.search(message, result.stderr), result.stderr
    assert not OUT.exists() and fake.requests == []


def test_record_tag_conflicting_with_the_catalogue_exits_2_naming_scene_and_tag(cli, repo, fake):
    from datetime import UTC, datetime

    from shapely.geometry import box

    product = s2_product(sensing=datetime(2022, 1, 2, tzinfo=UTC), geometry=box(9, 54, 11, 56))
    fake.add([product])
    doc = good(repo)
    doc["record_tags"]["productType"] = "S2MSI2A"
    Path("p.json").write_text(json.dumps(doc))
    result = cli("scenes", "p.json", env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2
    assert (f"error: p.json: field 'record_tags.productType': 'S2MSI2A' conflicts with scene "
            f"'{product['Name'][:-5]}', whose catalogue tag 'productType' is 'S2MSI1C'") in result.stderr
    assert not OUT.exists()


def test_invalid_aoi_ring_is_repaired_with_a_warning(cli, repo, fake):
    doc = good(repo)
    doc["geometry"] = {"type": "Polygon", "coordinates": [[[9.8, 54.9], [10.0, 55.0], [10.0, 54.9], [9.8, 55.0],
                                                          [9.8, 54.9]]]}  # a bow tie
    Path("p.json").write_text(json.dumps(doc))
    result = cli("scenes", "p.json", env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 0, result.stderr
    assert "warning: p.json: field 'geometry': invalid AOI repaired (Self-intersection" in result.stderr
    assert json.loads(OUT.read_text())["features"] == []
