"""Measures on the ellipsoid: buffers in metres (the burst test's AOI), coverage shares."""

from __future__ import annotations

import random
import re

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, box

from ingester.app.config_report import explain_settings
from ingester.config import Settings, load_settings
from ingester.distance import DEFAULT_BUFFER, Buffer, parse_buffer
from ingester.errors import ConfigError
from ingester.geodesy import buffer_area, coverage, geodesic_area
from ingester.tiling.annotation import parse_annotation
from tests.fakes.cdse_nodes import IW2_2022, IW2_2023, make_product

WGS84 = Geod(ellps="WGS84")


@pytest.mark.parametrize(("text", "expected"), [
    ("5000", Buffer(5000, "m")), ("5000m", Buffer(5000, "m")), ("5 km", Buffer(5000, "m")), ("0", Buffer(0, "m")),
    ("1.5e3", Buffer(1500, "m")), ("0.05deg", Buffer(0.05, "deg")), ("0.05°", Buffer(0.05, "deg")),
    ("0deg", Buffer(0, "deg")), ("5KM", Buffer(5000, "m")), ("0.05DEG", Buffer(0.05, "deg")),
])
def test_a_buffer_is_metres_unless_it_says_degrees(text, expected):
    assert parse_buffer(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("0.05", "a bare number is metres (buffers were degrees before): write 0.05deg"),
    ("-5", "must be ≥ 0"), ("5 miles", "is not a distance"), ("", "is not a distance"), ("nan", "is not a distance"),
])
def test_a_buffer_that_is_no_distance_or_a_bare_old_degree_value_is_refused(text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_buffer(text)


def _reach(area: MultiPolygon, grown: MultiPolygon) -> dict[str, float]:
    """How far (metres, on the ellipsoid) the grown area reaches beyond the area north, south, east, west,
    measured from the area's edges at the middle of each side."""
    west, south, east, north = area.bounds
    gwest, gsouth, geast, gnorth = grown.bounds
    lon, lat = (west + east) / 2, (south + north) / 2
    return {"north": WGS84.inv(lon, north, lon, gnorth)[2], "south": WGS84.inv(lon, south, lon, gsouth)[2],
            "east": WGS84.inv(east, lat, geast, lat)[2], "west": WGS84.inv(west, lat, gwest, lat)[2]}


@pytest.mark.parametrize("latitude", [0.0, 34.1, 55.5, 70.0])
def test_a_metre_buffer_reaches_as_far_in_every_direction_at_any_latitude(latitude):
    aoi = MultiPolygon([box(10.0, latitude, 10.05, latitude + 0.03)])
    reach = _reach(aoi, buffer_area(aoi, Buffer(5000)))
    assert reach == {side: pytest.approx(5000, rel=2e-3) for side in reach}


def test_a_degree_buffer_shrinks_east_west_with_latitude_as_before():
    aoi = MultiPolygon([box(10.0, 60.0, 10.05, 60.03)])
    reach = _reach(aoi, buffer_area(aoi, Buffer(0.05, "deg")))
    assert reach["north"] == pytest.approx(5580, rel=5e-3)
    assert reach["east"] == pytest.approx(2790, rel=5e-3)  # 0.05° of longitude at 60°N


def test_a_zero_buffer_is_the_exact_aoi():
    aoi = MultiPolygon([box(10.0, 60.0, 10.05, 60.03)])
    assert buffer_area(aoi, Buffer(0)) is aoi and buffer_area(aoi, Buffer(0, "deg")) is aoi


def test_a_buffer_across_the_antimeridian_comes_back_on_the_other_side():
    aoi = MultiPolygon([box(179.95, -17.0, 180.0, -16.9)])
    grown = buffer_area(aoi, Buffer(5000))
    assert grown.bounds[0] == -180 and grown.bounds[2] == 180
    west_part = grown.intersection(box(-180, -90, 0, 90))
    assert WGS84.inv(180, -16.95, west_part.bounds[2], -16.95)[2] == pytest.approx(5000, rel=2e-3)
    assert grown.covers(aoi)


def test_a_buffer_over_a_pole_covers_the_cap_and_the_whole_world_stays_the_whole_world():
    near_pole = MultiPolygon([box(0.0, 89.97, 10.0, 89.98)])
    grown = buffer_area(near_pole, Buffer(5000))
    assert grown.bounds[0] == -180 and grown.bounds[2] == 180 and grown.bounds[3] == 90
    assert grown.covers(near_pole)
    world = MultiPolygon([box(-180, -90, 180, 90)])
    assert buffer_area(world, Buffer(5000)).area == pytest.approx(world.area)


def test_a_wide_aoi_is_buffered_everywhere_along_its_edges():
    wide = MultiPolygon([box(-30.0, 10.0, 30.0, 50.0)])  # 60° × 40°: buffered cell by cell
    grown = buffer_area(wide, Buffer(5000))
    assert grown.covers(wide)
    for lon in (-25.0, 0.0, 25.0):
        north = shapely.intersection(grown, shapely.LineString([(lon, 40), (lon, 60)])).bounds[3]
        assert WGS84.inv(lon, 50, lon, north)[2] == pytest.approx(5000, rel=5e-3)


def _fixture_bursts(testdata):
    out = []
    for fixture in (IW2_2023, IW2_2022):
        product = make_product(testdata, fixture)
        out.append([f for name, data in product.annotations.items() for f in parse_annotation(data, name).footprints()])
    return out


@pytest.mark.parametrize("shift", [0.0, 21.0], ids=["34N", "55N"])
def test_the_default_buffer_keeps_every_burst_the_old_default_kept(testdata, shift):
    """The old default was 0.05° (5.53–5.59 km north-south, 0.05° × cos(latitude) east-west); 5600 m keeps
    each burst it kept, for AOIs anywhere around the real bursts of the fixtures at Los Angeles (34°N) and
    moved to Denmark's latitude (55°N)."""
    assert parse_buffer(DEFAULT_BUFFER) == Buffer(5600)
    rng = random.Random(13)
    for footprints in _fixture_bursts(testdata):
        bursts = [shapely.affinity.translate(f, yoff=shift) for f in footprints]
        west, south, east, north = shapely.unary_union(bursts).bounds
        for _ in range(60):
            x, y, size = rng.uniform(west - 0.2, east + 0.2), rng.uniform(south - 0.2, north + 0.2), rng.choice(
                [0.001, 0.01, 0.05])
            aoi = MultiPolygon([box(x, y, x + size, y + size)])
            old, new = buffer_area(aoi, Buffer(0.05, "deg")), buffer_area(aoi, Buffer(5600))
            kept_before = {i for i, b in enumerate(bursts) if old.intersects(b)}
            kept_now = {i for i, b in enumerate(bursts) if new.intersects(b)}
            assert kept_before <= kept_now


def test_the_buffer_setting_is_checked_and_the_old_degrees_setting_still_read(tmp_path):
    assert load_settings(env={}).aoi_buffer == "5600m"
    assert load_settings(env={"INGESTER_AOI_BUFFER": "2km"}).aoi_buffer == "2km"
    assert load_settings(env={"INGESTER_AOI_BUFFER_DEGREES": "0.1"}).aoi_buffer == "0.1deg"
    both = {"INGESTER_AOI_BUFFER_DEGREES": "0.1", "INGESTER_AOI_BUFFER": "3000"}
    assert load_settings(env=both).aoi_buffer == "3000"
    toml = tmp_path / "ingester.toml"
    toml.write_text("aoi_buffer_degrees = 0.2\n")
    assert load_settings(env={}, toml_path=toml).aoi_buffer == "0.2deg"
    [row] = [r for r in explain_settings(env={"INGESTER_AOI_BUFFER_DEGREES": "0.1"}) if r["name"] == "aoi_buffer"]
    assert (row["value"], row["source"], row["origin"]) == ("0.1deg", "environment", "INGESTER_AOI_BUFFER_DEGREES")
    with pytest.raises(ConfigError, match="INGESTER_AOI_BUFFER: '0.05': a bare number is metres"):
        load_settings(env={"INGESTER_AOI_BUFFER": "0.05"})
    with pytest.raises(ConfigError, match="INGESTER_AOI_BUFFER_DEGREES: aoi_buffer_degrees: expected a number ≥ 0"):
        load_settings(env={"INGESTER_AOI_BUFFER_DEGREES": "-1"})
    with pytest.raises(ConfigError):
        Settings(aoi_buffer="far")


# --- coverage --------------------------------------------------------------------------------------

def test_coverage_is_the_geodesic_share_of_the_aoi():
    aoi = box(10.0, 55.0, 11.0, 56.0)
    south_half = box(9.0, 54.0, 12.0, 55.5)
    shares = coverage([box(0, 0, 1, 1), south_half, box(9, 54, 12, 57), None], aoi)
    expected = geodesic_area(aoi.intersection(south_half)) / geodesic_area(aoi)
    assert shares == [0.0, pytest.approx(expected, rel=1e-9), 1.0, None]
    assert 0.5 < expected < 0.51  # the southern half of a degree square is a little wider, so a little more


def test_an_empty_buffer_setting_is_the_default_as_for_the_other_list_settings(monkeypatch):
    from ingester.config import load_settings
    from ingester.distance import DEFAULT_BUFFER

    monkeypatch.setenv("INGESTER_AOI_BUFFER", "")
    assert load_settings().aoi_buffer == DEFAULT_BUFFER
