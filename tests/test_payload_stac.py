"""Payload checks for Landsat and STAC catalogues: aliases, parameters and `scene_type.catalogue`."""

from __future__ import annotations

import json

import pytest

from ingester.errors import PayloadError
from ingester.payload import parse_payload


def payload(scene_type: dict) -> dict:
    return {"name": "A", "type": "Polygon", "coordinates": [[[10, 55], [10.1, 55], [10.1, 55.1], [10, 55]]],
            "start_time": "2022-01-01T00:00:00Z", "end_time": "2022-01-02T00:00:00Z", "scene_type": scene_type}


@pytest.mark.parametrize("alias,platform", [("landsat", None), ("landsat-8", "LANDSAT_8"), ("Landsat-9", "LANDSAT_9"),
                                            ("landsat89", None)])
def test_landsat_aliases_mean_landsat89_and_a_platform_alias_picks_its_platform(alias, platform):
    p = parse_payload(payload({"constellation": alias}))
    assert p.constellation == "landsat89" and p.parameters.get("platformname") == platform


@pytest.mark.parametrize("scene_type,field", [
    ({"constellation": "landsat89", "parameters": {"producttype": "L3"}}, "scene_type.parameters.producttype"),
    ({"constellation": "landsat89", "parameters": {"platformname": "LANDSAT_7"}}, "scene_type.parameters.platformname"),
    ({"constellation": "sentinel2", "catalogue": "ftp://x"}, "scene_type.catalogue"),
    ({"constellation": "sentinel2", "catalogue": "earth-search", "parameters": {"producttype": "S2MSI2A"}},
     "scene_type.parameters.producttype"),
    ({"constellation": "sentinel2", "catalogue": "earth-search", "parameters": {"collection": "a b"}},
     "scene_type.parameters.collection"),
])
def test_bad_landsat_and_stac_parameters_name_the_field(scene_type, field):
    with pytest.raises(PayloadError, match=f"field '{field}'"):
        parse_payload(payload(scene_type), "p.json")


def test_the_cli_refuses_a_bad_catalogue_with_exit_2_before_any_search(cli, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload({"constellation": "sentinel2", "catalogue": "stac:notaurl"})))
    r = cli("scenes", path)
    assert r.exit_code == 2 and "field 'scene_type.catalogue'" in r.stderr
