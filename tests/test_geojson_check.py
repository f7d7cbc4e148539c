"""GeoJSON validity (the `geojson` package's rules) of scenes/tiles files and of the payload's AOI: a message
naming the file, the line, the feature and the field, exit 2, nothing written."""

from __future__ import annotations

import dataclasses
import json

import geojson
import pytest

from ingester.errors import PayloadError, ScenesFileError
from ingester.geojson_check import geometry_problem, geometry_problems
from ingester.payload import parse_payload
from ingester.scenes import read_scenes, write_scenes
from tests.fakes.writer_data import writer_scenes

SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]


@pytest.mark.parametrize(("geometry", "problems"), [
    ({"type": "Polygon", "coordinates": [SQUARE]}, []),
    ({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:3]]]},
     [("g.coordinates[1]", "Each linear ring must contain at least 4 positions")]),
    ({"type": "Polygon", "coordinates": [SQUARE[:-1]]},
     [("g.coordinates", "Each linear ring must end where it started")]),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, "0"], [1, 1], [0, 0]]]},
     [("g.coordinates", "a position must be a list of numbers")]),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], None, [0, 0]]]},
     [("g.coordinates", "a position must be a list of numbers")]),
    ({"type": "Polygon", "coordinates": [[[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]]}, []),
    ({"type": "MultiPoint", "coordinates": [[0, 0], [0, 0, 0, 0]]},
     [("g.coordinates[1]", "a position must have exactly 2 or 3 values")]),
    ({"type": "LineString", "coordinates": [[0, 0]]},
     [("g.coordinates", 'the "coordinates" member must be an array of two or more positions')]),
    ({"type": "Point", "coordinates": [0, "x"]}, [("g.coordinates", "a position cannot have inner positions")]),
    ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]},
                                                   {"type": "Polygon", "coordinates": [SQUARE[:-1]]}]},
     [("g.geometries[1].coordinates", "Each linear ring must end where it started")]),
    ({"type": "Circle", "coordinates": [0, 0]}, [("g.type", "'Circle' is not a GeoJSON geometry type (Point, "
                                                            "MultiPoint, LineString, MultiLineString, Polygon, "
                                                            "MultiPolygon, GeometryCollection)")]),
    ({"type": "Polygon", "coordinates": "0 0, 1 1"},
     [("g.coordinates", "must be a list (of positions, lines, rings or polygons)")]),
])
def test_geometry_problems_name_the_member_and_say_what_geojson_finds(geometry, problems):
    assert geometry_problems(geometry, "g") == problems
    assert geometry_problem(geometry, "g") == (f"{problems[0][0]}: {problems[0][1]}" if problems else None)
    assert (problems == []) == _package_says_valid(geometry)


def _package_says_valid(geometry) -> bool:
    """The geojson package's own verdict through its public API: decode into its objects, then `is_valid`
    (its constructors refuse what is not a number)."""
    try:
        obj = geojson.loads(json.dumps(geometry))
    except ValueError:
        return False
    return isinstance(obj, geojson.GeoJSON) and obj.is_valid


def _file_with(tmp_path, geometry=None, feature_type="Feature"):
    """The old writer's file with the geometry (or the type) of its third feature replaced, written back one
    feature per line (so the feature is line 4)."""
    path = tmp_path / "tiles.json"
    write_scenes(path, writer_scenes()[:3])  # the Los Angeles ones
    lines = path.read_text(encoding="utf-8").split("\n")
    feature = json.loads(lines[3].rstrip(","))
    if geometry is not None:
        feature["geometry"] = geometry
    feature["type"] = feature_type
    lines[3] = json.dumps(feature, ensure_ascii=False) + ("," if lines[3].endswith(",") else "")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_a_hand_broken_geometry_in_a_scenes_file_is_named_by_file_line_feature_and_field(tmp_path):
    path = _file_with(tmp_path, {"type": "Polygon", "coordinates": [SQUARE[:-1]]})
    with pytest.raises(ScenesFileError) as caught:
        read_scenes(path)
    assert str(caught.value) == (f"{path}: line 4: features[2].geometry.coordinates: Each linear ring must end where "
                                 "it started (GeoJSON, RFC 7946)")


def test_a_feature_that_is_not_a_feature_is_refused(tmp_path):
    path = _file_with(tmp_path, feature_type="Point")
    with pytest.raises(ScenesFileError, match=r"line 4: features\[2\].type: must be \"Feature\" \(GeoJSON\), "
                                              r"got 'Point'"):
        read_scenes(path)


def test_a_null_geometry_is_valid_geojson(tmp_path):
    path = _file_with(tmp_path, geometry=None)
    doc = path.read_text(encoding="utf-8").replace('"geometry": {', '"geometry": null, "x": {', 1)
    path.write_text(doc, encoding="utf-8")
    assert len(read_scenes(path).scenes) == 3


@pytest.mark.parametrize("command", [["tiles", "PAYLOAD", "--scenes"], ["show"],
                                     ["filter", "--max-cloud", "50", "-o", "kept.json"],
                                     ["aoi", "PAYLOAD", "--create-layers", "--dry-run", "--tiles"]])
def test_commands_exit_2_on_a_file_with_an_invalid_geometry_and_write_nothing(cli, tmp_path, repo, command):
    path = _file_with(tmp_path, {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[0, 0], [1, 1], [0, 0]]]]})
    args = [str(repo / "payloads" / "losangeles-s1.json") if a == "PAYLOAD" else a for a in command]
    result = cli(*args, path, "--db", tmp_path / "store.db") if command[0] == "aoi" else cli(*args, path)
    assert result.exit_code == 2, result.stderr
    assert (f"{path}: line 4: features[2].geometry.coordinates[1]: Each linear ring must contain at least 4 "
            "positions (GeoJSON, RFC 7946)") in result.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "store.db").exists()
    assert not (tmp_path / "kept.json").exists()


BASE = {"name": "A", "start_time": "2022-01-01T00:00:00Z", "end_time": "2022-01-02T00:00:00Z",
        "scene_type": {"constellation": "sentinel2"}}


@pytest.mark.parametrize(("aoi", "message"), [
    ({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[0, 0], [1, 1], [0, 0]]]]}},
     "p.json: field 'geometry.coordinates[1]': Each linear ring must contain at least 4 positions (GeoJSON, RFC 7946)"),
    ({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[0, 0, 0, 9], [1, 0, 0, 9]]]},
     "p.json: field 'coordinates[1]': a position must have exactly 2 or 3 values (GeoJSON, RFC 7946)"),
    ({"type": "GeometryCollection", "geometries": [{"type": "Polygon", "coordinates": [SQUARE]},
                                                   {"type": "LineString", "coordinates": [[0, 0]]}]},
     "p.json: field 'geometries[1].coordinates': the \"coordinates\" member must be an array of two or more "
     "positions (GeoJSON, RFC 7946)"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}},
        {"type": "Feature", "geometry": {"type": "GeometryCollection", "geometries": [
            {"type": "LineString", "coordinates": [[0, 0]]}]}}]},
     "p.json: field 'features[1].geometry.geometries[0].coordinates': the \"coordinates\" member must be an array of "
     "two or more positions (GeoJSON, RFC 7946)"),
])
def test_an_aoi_that_is_not_valid_geojson_names_the_member(aoi, message):
    with pytest.raises(PayloadError) as caught:
        parse_payload({**BASE, **aoi}, "p.json")
    assert str(caught.value) == message


def test_an_open_ring_of_the_aoi_is_still_closed_with_a_warning():
    with pytest.warns(UserWarning, match="a ring is not closed"):
        payload = parse_payload({**BASE, "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}, "p.json")
    assert payload.aoi.area == pytest.approx(0.5)


def test_a_geometry_edited_apart_from_the_wkt_the_tool_uses_is_refused_naming_both_footprints(tmp_path):
    path = tmp_path / "scenes.json"
    write_scenes(path, [dataclasses.replace(s, tiles=[]) for s in writer_scenes()[:3]])  # a scenes file
    lines = path.read_text(encoding="utf-8").split("\n")
    feature = json.loads(lines[3].rstrip(","))
    feature["properties"]["wkt"] = "POLYGON ((100 0, 101 0, 101 1, 100 1, 100 0))"  # moved to the equator
    lines[3] = json.dumps(feature) + ("," if lines[3].endswith(",") else "")
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ScenesFileError) as caught:
        read_scenes(path)
    message = str(caught.value)
    assert f"{path}: line 4: features[2].geometry: covers lon -1" in message
    assert "but properties.wkt, the footprint the tool uses, covers lon 100…101, lat 0…1" in message


def test_a_source_id_that_is_not_a_string_is_named_as_such_not_as_missing(tmp_path):
    path = tmp_path / "scenes.json"
    write_scenes(path, writer_scenes()[:2])
    path.write_text(path.read_text(encoding="utf-8").replace('"source_id": "', '"source_id": 42, "x": "', 1),
                    encoding="utf-8")
    with pytest.raises(ScenesFileError, match=r"line 2: features\[0\]\.properties\.source_id: must be a string "
                                              r"\(the product id\), got 42"):
        read_scenes(path)


def test_a_polygon_position_of_one_number_is_read_as_the_geojson_package_reads_it_without_a_traceback(tmp_path):
    path = tmp_path / "scenes.json"
    write_scenes(path, [dataclasses.replace(s, tiles=[]) for s in writer_scenes()[:2]])
    lines = path.read_text(encoding="utf-8").split("\n")
    feature = json.loads(lines[1].rstrip(","))
    feature["geometry"]["coordinates"][0][1] = [feature["geometry"]["coordinates"][0][1][0]]
    lines[1] = json.dumps(feature) + ","
    path.write_text("\n".join(lines), encoding="utf-8")
    assert [s.source_id for s in read_scenes(path).scenes] == [s.source_id for s in writer_scenes()[:2]]
