"""Annotation parsing, ESA burst ids, AnxTime keys and footprints on the real S1 fixtures
(docs/bursts.md, "Test fixtures")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from shapely.geometry import MultiPolygon, Point, Polygon

from ingester.geometry import from_wkt
from ingester.tiling.annotation import AnnotationError, footprint_wkt, parse_annotation
from ingester.tiling.burst_ids import T_ORB, anx_key, burst_ids, relative_orbit_from_absolute
from tests.fakes.cdse_nodes import EW1_2021, IW2_2022, IW2_2023, shift_annotation

T0 = datetime(2023, 1, 1, tzinfo=UTC)


def load(testdata, name):
    data = (testdata / "s1" / name).read_bytes()
    return parse_annotation(data, name)


@pytest.mark.parametrize("fixture, swath, orbit, lpb, spb, n", [
    (IW2_2023, "IW2", 46693, 1509, 25359, 9),
    (IW2_2022, "IW2", 45461, 1508, 25470, 9),
    (EW1_2021, "EW1", 37286, 1168, 8185, 17),
])
def test_annotation_header_and_burst_list_are_read(testdata, fixture, swath, orbit, lpb, spb, n):
    ann = load(testdata, fixture)
    assert (ann.swath, ann.absolute_orbit, ann.lines_per_burst, ann.samples_per_burst) == (swath, orbit, lpb, spb)
    assert len(ann.bursts) == n
    assert len(ann.grid) == 21 * (n + 1)
    assert ann.mission == "S1A"


def test_iw_2023_header_values_match_the_reference_table(testdata):
    ann = load(testdata, IW2_2023)
    assert ann.pass_direction == "Descending"
    assert ann.polarisation == "VV"
    assert ann.number_of_lines == 13581
    assert ann.anx_time.isoformat() == "2023-01-08T13:12:46.612135+00:00"
    assert ann.bursts[0].azimuth_anx_time == pytest.approx(2404.77178999830)
    assert ann.bursts[0].sensing_time.isoformat() == "2023-01-08T13:52:52.399810+00:00"
    assert list(ann.grid_lines())[-1] == 13580


@pytest.mark.parametrize("fixture, orbit, first, first_abs", [
    (IW2_2023, 71, 151227, 100291920),
    (IW2_2022, 64, 135518, 97644999),
])
def test_computed_burst_ids_equal_the_annotated_ones_for_all_iw_bursts(testdata, fixture, orbit, first, first_abs):
    ann = load(testdata, fixture)
    assert relative_orbit_from_absolute(ann.mission, ann.absolute_orbit) == orbit
    annotated = [(b.annotated_id, b.annotated_absolute_id) for b in ann.bursts]
    assert annotated == [(first + i, first_abs + i) for i in range(9)]
    computed = [ann.computed_ids(b, orbit) for b in ann.bursts]
    assert computed == annotated


def test_ew_burst_ids_follow_the_ew_constants(testdata):
    ann = load(testdata, EW1_2021)
    assert all(b.annotated_id is None for b in ann.bursts)  # IPF 3.31: no burstId
    ids = [ann.computed_ids(b, 114) for b in ann.bursts]
    assert [r for r, _a in ids] == list(range(220876, 220893))
    assert [a for _r, a in ids] == list(range(72703073, 72703090))


@pytest.mark.parametrize("fixture, first, second, last", [
    (IW2_2023, 24048, 24075, 24268),
    (IW2_2022, 5470, 5497, 5690),
    (EW1_2021, 16257, 16288, 16743),
])
def test_anx_keys_match_geocube_names(testdata, fixture, first, second, last):
    ann = load(testdata, fixture)
    keys = [ann.anx_key(b) for b in ann.bursts]
    assert (keys[0], keys[1], keys[-1]) == (first, second, last)


def test_anx_key_uses_the_integer_period_and_rounds_halves_away_from_zero():
    assert anx_key(895.05) == 8951  # 8950.5 → 8951, not banker's 8950
    assert anx_key(5924.8) == 8  # the original's 5924 s modulus (docs/bursts.md, "AnxTime key")
    assert anx_key(12.25) == 123


def test_burst_after_the_next_anx_wraps_into_the_id_range():
    relative, _absolute = burst_ids("IW1", T_ORB + 3.0, 175, 175)
    assert relative == 1  # past the end of track 175 → the first burst of track 1


@pytest.mark.parametrize("fixture, expected", [
    (IW2_2023, "POLYGON((-117.255427 34.245931, -117.280617 34.078497, -118.279711 34.225971, "
               "-118.256686 34.393244, -117.255427 34.245931))"),
    (IW2_2022, "POLYGON((-117.898978 33.875591, -117.935201 34.041246, -116.911971 34.192208, "
               "-116.878511 34.026539, -117.898978 33.875591))"),
    (EW1_2021, "POLYGON((-61.831510 79.267429, -62.405836 79.117108, -67.199410 79.685464, "
               "-66.669240 79.843877, -61.831510 79.267429))"),
])
def test_geocube_first_burst_polygon_is_byte_identical(testdata, fixture, expected):
    ann = load(testdata, fixture)
    polygons = ann.geocube_polygons()
    assert polygons[0] == expected
    assert len(polygons) == len(ann.bursts)


@pytest.mark.parametrize("fixture", [IW2_2023, IW2_2022])
def test_los_angeles_point_is_in_the_second_burst_only(testdata, fixture):
    ann = load(testdata, fixture)
    point = Point(-117.6, 34.1)
    inside = [i for i, fp in enumerate(ann.footprints()) if fp.contains(point)]
    assert inside == [1]


def test_footprints_use_all_grid_points_of_both_bounding_lines(testdata):
    ann = load(testdata, IW2_2023)
    footprints = ann.footprints()
    assert all(isinstance(fp, Polygon) and fp.is_valid for fp in footprints)
    assert len(footprints[0].exterior.coords) == 21 + 21 + 1
    # consecutive bursts share their bounding grid line: they tile the swath without gaps or overlaps
    shared = footprints[0].intersection(footprints[1])
    assert shared.area == pytest.approx(0, abs=1e-9) and shared.length > 0.9
    # the last burst ends on the final grid line (numberOfLines − 1)
    last_line = ann.grid_lines()[13580]
    assert footprints[-1].exterior.coords[21][:2] == pytest.approx(last_line[-1][1:])


def test_footprint_wkt_has_six_decimals_and_no_space_after_polygon(testdata):
    ann = load(testdata, IW2_2023)
    wkt = footprint_wkt(ann.footprints()[0])
    assert wkt.startswith("POLYGON((-117.255427 34.245931, ")
    assert from_wkt(wkt).equals_exact(ann.footprints()[0], 1e-6)


def _move_longitudes(data: bytes, offset: float) -> bytes:
    def move(m: re.Match[bytes]) -> bytes:
        lon = (float(m.group(1)) + offset + 180) % 360 - 180
        return b"<longitude>%.12e</longitude>" % lon
    return re.sub(rb"<longitude>([^<]+)</longitude>", move, data)


def test_footprint_crossing_the_antimeridian_is_split(testdata):
    data = _move_longitudes((testdata / "s1" / EW1_2021).read_bytes(), 245.0)  # burst 1 spans 177.8 … -176.8
    ann = parse_annotation(data, "moved")
    footprint = ann.footprints()[0]
    assert isinstance(footprint, MultiPolygon) and len(footprint.geoms) == 2
    xs = sorted(x for poly in footprint.geoms for x, _y in poly.exterior.coords)
    assert xs[0] >= -180 and xs[-1] <= 180
    assert footprint.bounds[0] < -170 and footprint.bounds[2] > 170
    assert footprint.contains(Point(179.5, 79.5)) or footprint.contains(Point(-179.5, 79.5))
    wkt = footprint_wkt(footprint)
    assert wkt.startswith("MULTIPOLYGON(((") and from_wkt(wkt).equals_exact(footprint, 1e-6)


def test_shifted_copy_keeps_relative_ids_and_moves_absolute_ids_by_one_cycle(testdata):
    data = (testdata / "s1" / IW2_2023).read_bytes()
    ann = parse_annotation(shift_annotation(data, 1), "shifted")
    assert ann.absolute_orbit == 46693 + 175
    assert [ann.anx_key(b) for b in ann.bursts][:2] == [24048, 24075]
    ids = [ann.computed_ids(b, 71) for b in ann.bursts]
    assert [r for r, _a in ids] == [b.annotated_id for b in ann.bursts] == list(range(151227, 151236))
    assert ids[0][1] == 100291920 + 375887  # ≈ 175 × T_orb / T_beam


def test_not_xml_is_a_clear_error():
    with pytest.raises(AnnotationError, match=r"bad\.xml: not valid XML"):
        parse_annotation(b"<product><adsHeader>", "bad.xml")


def test_calibration_file_is_not_a_product_annotation():
    with pytest.raises(AnnotationError, match=r"cal\.xml: not a Sentinel-1 product annotation \(no .*swathTiming"):
        parse_annotation(b"<calibration><adsHeader><swath>IW1</swath></adsHeader></calibration>", "cal.xml")


def test_grid_that_does_not_match_the_burst_count_is_an_error(testdata):
    data = (testdata / "s1" / IW2_2023).read_bytes()
    # drop the final grid line (line 13580): 9 lines for 9 bursts
    data = re.sub(rb"<geolocationGridPoint>(?:(?!</geolocationGridPoint>).)*<line>13580</line>.*?"
                  rb"</geolocationGridPoint>\s*", b"", data, flags=re.S)
    ann = parse_annotation(data, "short.xml")
    with pytest.raises(AnnotationError, match=r"short\.xml: geolocation grid has 9 lines for 9 bursts"):
        ann.footprints()


def test_burst_count_attribute_must_match_the_bursts(testdata):
    data = (testdata / "s1" / IW2_2023).read_bytes().replace(b'<burstList count="9">', b'<burstList count="8">')
    with pytest.raises(AnnotationError, match=r"count=8 but 9 burst elements"):
        parse_annotation(data, "x.xml")


def test_grid_in_an_unexpected_element_order_is_read_by_the_xml_parser(testdata):
    data = (testdata / "s1" / IW2_2023).read_bytes()
    reordered = re.sub(rb"(<line>[^<]*</line>)(\s*)(<pixel>[^<]*</pixel>)", rb"\3\2\1", data)
    assert reordered != data
    assert parse_annotation(reordered, "x").grid == parse_annotation(data, "y").grid


def test_annotated_burst_id_wins_over_a_different_computed_one_with_warnings(testdata):
    import warnings as w

    from ingester.errors import TilingWarning
    from ingester.payload import Payload
    from ingester.tiling.inventory import scene_bursts
    from tests.fakes.cdse_nodes import make_product, product_scene

    data = (testdata / "s1" / IW2_2023).read_bytes().replace(b">151231</burstId>", b">151299</burstId>")
    ann = parse_annotation(data, "odd.xml")
    product = make_product(testdata, IW2_2023)
    payload = Payload(name="t", aoi=MultiPolygon([Polygon([(-120, 33), (-116, 33), (-116, 36), (-120, 36)])]),
                      start_time=T0, end_time=T0, constellation="sentinel1", parameters={})
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        tiles = scene_bursts(product_scene(product), [ann], payload.aoi, payload)
    messages = [str(c.message) for c in caught if issubclass(c.category, TilingWarning)]
    assert "odd.xml: burst 5: computed burst id 151231 differs from the annotated 151299" in messages[0]
    assert any("burst ids not contiguous (151230 then 151299)" in m for m in messages)
    assert [t.burst_id for t in tiles][3:6] == [151230, 151299, 151232]


def _with_anx(data: bytes, seconds_earlier: float) -> bytes:
    from datetime import timedelta

    m = re.search(rb"<ascendingNodeTime>([^<]+)</ascendingNodeTime>", data)
    anx = datetime.fromisoformat(m.group(1).decode()) - timedelta(seconds=seconds_earlier)
    return data.replace(m.group(0), b"<ascendingNodeTime>%s</ascendingNodeTime>" % anx.isoformat().encode())


def test_stale_ascending_node_time_one_orbit_early_gives_the_same_ids(testdata):
    data = _with_anx((testdata / "s1" / IW2_2023).read_bytes(), T_ORB)
    ann = parse_annotation(data, "stale")
    assert [ann.burst_identity(b, 71) for b in ann.bursts] == [
        (71, b.annotated_id, b.annotated_absolute_id) for b in ann.bursts]


def test_product_crossing_the_ascending_node_switches_track_with_contiguous_ids(testdata):
    data = (testdata / "s1" / IW2_2023).read_bytes()
    ann = parse_annotation(data, "x")
    cycle_start_5 = (ann.bursts[4].sensing_time - ann.anx_time).total_seconds() - 0.832  # IW2 → IW1
    ann = parse_annotation(_with_anx(data, T_ORB - cycle_start_5 + 0.5), "crossing")
    identities = [ann.burst_identity(b, 71) for b in ann.bursts]
    assert [track for track, _r, _a in identities] == [71] * 4 + [72] * 5
    ids = [r for _t, r, _a in identities]
    assert ids == list(range(ids[0], ids[0] + 9))
