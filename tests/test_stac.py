"""STAC export: Items per tile with tags mapped to sat/sar/eo/proj, raster scale/offset from the dformat,
validated with pystac against the STAC 1.1 and extension schemas (vendored: no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest

from ingester.index import StacDataset, StacTile, build_item, raster_band, write_stac
from tests.fakes.graph_jobs import S2_ID, WKT
from tests.fakes.stac_schemas import offline_validation


@pytest.fixture
def offline_validator():
    with offline_validation() as validator:
        yield validator


S1_TAGS = {"constellation": "SENTINEL1", "satellite": "SENTINEL1A", "orbitDirection": "ASCENDING",
           "relativeOrbit": "44", "orbit": "41000", "productType": "SLC", "polarisationMode": "VV&VH",
           "ingestionDate": "2022-01-11T17:01:11.000000Z", "processingDate": "2022-02-01 10:00:00",
           "previous_scenes": "[]", "reference_scenes": "[]"}
S2_TAGS = {"constellation": "SENTINEL2", "satellite": "SENTINEL2A", "orbitDirection": "", "relativeOrbit": "51",
           "orbit": "13204", "productType": "S2MSI1C", "cloudCoverPercentage": "50.9439586971957"}


def s1_tile(day: int, prev: int | None, ref: int | None) -> StacTile:
    date = datetime(2022, 1, day, 17, 1, 11, tzinfo=UTC)
    sid = f"S1A_IW_SLC__1SDV_202201{day:02d}T170111_X"

    def link(d):
        return None if d is None else (f"S1A_IW_SLC__1SDV_202201{d:02d}T170111_X", "A44_IW1_8951",
                                      datetime(2022, 1, d, 17, 1, 11, tzinfo=UTC))

    datasets = (
        StacDataset("sigma0_VV", f"/data/{day}_sigma0_VV.tif", "int16", -32768, 0, 1000, 0, 1,
                    extra={"proj_code": "EPSG:4326", "shape": [10, 20], "transform": [0.001, 0, 10, 0, -0.001, 55],
                           "bbox": [10, 54.99, 10.02, 55]}),
        StacDataset("coh_VV", f"s3://bucket/{day}_coh_VV.tif", "float32", 0, 0, 1, 0, 1, exponent=2),
    )
    return StacTile(sid, "A44_IW1_8951", date, WKT, dict(S1_TAGS), datasets, link(prev), link(ref),
                    "S1BackscatterCoherence")


def test_raster_band_scale_and_offset_follow_the_dformat_mapping():
    int16 = StacDataset("x", "x.tif", "int16", -32768, 0, 1000, 0, 1)
    assert raster_band(int16) == {"data_type": "int16", "nodata": -32768, "scale": 0.001, "offset": 0.0}
    s2 = StacDataset("B01", "x.tif", "uint16", 0, 1, 65535, -0.0999, 6.4535)
    assert raster_band(s2) == {"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": -0.1}
    no_nodata = StacDataset("x", "x.tif", "uint16", float("nan"), 0, 32767, 0, 1)
    assert "nodata" not in raster_band(no_nodata)
    nonlinear = StacDataset("x", "x.tif", "float32", float("nan"), 0, 1, 0, 1, exponent=2)
    assert raster_band(nonlinear) == {"data_type": "float32", "nodata": "nan"}


def test_s1_item_maps_tags_to_sat_sar_processing_fields():
    item = build_item(s1_tile(23, 11, 11))
    props = item.properties
    assert item.id == "20220123_A44_IW1_8951"
    assert (props["constellation"], props["platform"]) == ("sentinel-1", "sentinel-1a")
    assert (props["sat:orbit_state"], props["sat:relative_orbit"], props["sat:absolute_orbit"]) == \
        ("ascending", 44, 41000)
    assert (props["sar:instrument_mode"], props["sar:frequency_band"], props["sar:polarizations"],
            props["sar:product_type"]) == ("IW", "C", ["VV", "VH"], "SLC")
    assert props["processing:datetime"] == "2022-02-01T10:00:00Z"
    assert props["proj:code"] == "EPSG:4326"
    assert item.bbox == [10, 54.99, 10.02, 55]
    assert item.assets["sigma0_VV"].href == "/data/23_sigma0_VV.tif"
    assert item.assets["coh_VV"].extra_fields["geocube:exponent"] == 2


def test_catalog_of_a_chain_and_an_s2_tile_is_valid(tmp_path, offline_validator):
    s2 = StacTile(S2_ID, S2_ID, datetime(2018, 1, 1, 10, 54, 41, tzinfo=UTC), WKT, S2_TAGS, (
        StacDataset("B01", str(tmp_path / "B01.tif"), "uint16", 0, 1, 65535, -0.0999, 6.4535,
                    extra={"proj_code": "EPSG:32631", "shape": [1830, 1830],
                           "transform": [60, 0, 399960, 0, -60, 4800000], "bbox": [1.77, 42.4, 3.1, 43.4]}),),
        graph_name="ExtractS2Bands")
    tiles = [s1_tile(11, None, None), s1_tile(23, 11, 11), s1_tile(28, 23, 11), s2]
    path = write_stac("DenmarkDemo", tiles, tmp_path / "stac")
    assert path == tmp_path / "stac" / "DenmarkDemo" / "collection.json"
    collection = pystac.Collection.from_file(str(path))
    collection.validate()
    assert collection.validate_all() == 4  # every item valid
    items = {i.id: i for i in collection.get_items()}
    checked = items["20220123_A44_IW1_8951"].validate()
    assert {u.split("/")[3] for u in checked if "stac-extensions" in u} == {"projection", "raster", "sat", "sar",
                                                                             "processing"}
    assert set(items) == {"20220111_A44_IW1_8951", "20220123_A44_IW1_8951", "20220128_A44_IW1_8951",
                          f"20180101_{S2_ID}"}
    derived = [link.get_href() for link in items["20220128_A44_IW1_8951"].links if link.rel == "derived_from"]
    assert sorted(Path(h).parent.name for h in derived) == ["20220111_A44_IW1_8951", "20220123_A44_IW1_8951"]
    b01 = items[f"20180101_{S2_ID}"].assets["B01"].to_dict()
    assert b01["eo:bands"] == [{"name": "B01", "common_name": "coastal", "center_wavelength": 0.443}]
    assert b01["raster:bands"] == [{"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": -0.1}]
    assert items[f"20180101_{S2_ID}"].properties["eo:cloud_cover"] == pytest.approx(50.94395869)


def test_an_item_geometry_is_the_outputs_extent_inside_the_tile_footprint():
    """A window of a scene (stac-assets window mode) reaches past the footprint's edge: the Item keeps
    the part with data; a footprint inside the extent is the geometry; an extent that does not meet the
    footprint, or a footprint that is not a polygon, leaves the extent as it is."""
    window = StacDataset("B04", "/data/B04.tif", "uint16", 0, 1, 65535, -0.0999, 6.4535,
                         extra={"bbox": [9.9, 54.95, 10.2, 55.12]})
    footprint = "POLYGON ((10 54.5, 11 54.5, 11 56, 10 56, 10 54.5))"
    item = build_item(StacTile(S2_ID, S2_ID, datetime(2022, 1, 4, tzinfo=UTC), footprint, S2_TAGS, (window,)))
    assert item.bbox == pytest.approx([10, 54.95, 10.2, 55.12])
    inside = build_item(StacTile(S2_ID, S2_ID, datetime(2022, 1, 4, tzinfo=UTC), WKT, S2_TAGS, (window,)))
    assert inside.bbox == pytest.approx([10, 55, 10.1, 55.1])
    far = "POLYGON ((20 50, 21 50, 21 51, 20 51, 20 50))"
    elsewhere = build_item(StacTile(S2_ID, S2_ID, datetime(2022, 1, 4, tzinfo=UTC), far, S2_TAGS, (window,)))
    assert elsewhere.bbox == pytest.approx([9.9, 54.95, 10.2, 55.12])
    broken = build_item(StacTile(S2_ID, S2_ID, datetime(2022, 1, 4, tzinfo=UTC), "POINT (10 55)", S2_TAGS, (window,)))
    assert broken.bbox == pytest.approx([9.9, 54.95, 10.2, 55.12])


def test_an_invalid_item_is_caught_by_the_vendored_schemas(tmp_path, offline_validator):
    item = build_item(s1_tile(23, 11, 11))
    item.properties["sat:relative_orbit"] = "44"  # must be an integer
    with pytest.raises(pystac.STACValidationError):
        item.validate()
