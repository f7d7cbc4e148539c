"""Valid payloads: every AOI form (docs/payload.md, "AOI geometry"), times normalised to UTC, the example files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingester.payload import load_payload, parse_payload

RING = [[9.9, 54.9], [10.0, 54.9], [10.0, 55.0], [9.9, 54.9]]
OTHER = [[11.9, 54.9], [12.0, 54.9], [12.0, 55.0], [11.9, 54.9]]
BASE = {"name": "A", "start_time": "2022-01-01T01:00:00+01:00", "end_time": "2022-01-02T00:00:00Z",
        "scene_type": {"constellation": "Sentinel-2", "parameters": {"cloudcoverpercentage": "[0 TO 80]"}}}


@pytest.mark.parametrize("aoi, polygons", [
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [RING]}}, 1),
    ({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[RING], [OTHER]]}}, 2),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [RING]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [OTHER]}}]}, 2),
    ({"type": "Polygon", "coordinates": [RING]}, 1),
])
def test_every_aoi_form_becomes_a_multipolygon(aoi, polygons):
    p = parse_payload({**BASE, **aoi}, "a.json")
    assert p.aoi.geom_type == "MultiPolygon" and len(p.aoi.geoms) == polygons
    assert p.constellation == "sentinel2"
    assert p.start_time == datetime(2022, 1, 1, tzinfo=UTC)


def test_example_payloads_load(repo):
    s1 = load_payload(repo / "payloads" / "denmark-s1.json")
    s2 = load_payload(repo / "payloads" / "denmark-s2.json")
    assert (s1.name, s1.constellation, s1.parameters["relativeorbitnumber"]) == ("DenmarkDemoS1", "sentinel1", "44")
    assert (s2.name, s2.constellation, s2.is_retriable, s2.retry_count) == ("DenmarkDemoS2", "sentinel2", True, 1)
    assert set(s2.layers) == {f"B{i:02d}" for i in range(1, 13)}
    assert s1.record_tags == s2.record_tags == {"source": "tutorial", "provider": "geocube-ingester", "area": "Denmark"}


@pytest.mark.parametrize("given, share", [(None, 0.0), (0, 0.0), (0.5, 0.5), (1, 1.0)])
def test_min_coverage_is_a_share_of_the_aoi_from_0_to_1(given, share):
    extra = {} if given is None else {"min_coverage": given}
    p = parse_payload({**BASE, "type": "Polygon", "coordinates": [RING], **extra}, "a.json")
    assert p.min_coverage == share
