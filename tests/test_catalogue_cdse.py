"""CDSE OData search against the fake catalogue: clauses, checks, mapping, dedup, retries, polygons."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from ingester.catalogue import search
from ingester.catalogue.cdse import build_filter, filters_of, make_service
from ingester.catalogue.cdse import search as cdse_search
from ingester.config import load_settings
from ingester.errors import (
    CatalogueError,
    CatalogueFilterWarning,
    CatalogueWarning,
    HTTPError,
    InputError,
    OfflineProductWarning,
    PayloadError,
)
from ingester.payload import parse_payload
from tests.fakes.cdse_odata import FakeCdseCatalogue, compile_filter, real_aux_products, s1_product, s2_product

DENMARK = [[10.0612, 54.8863], [9.9571, 54.8724], [9.8062, 54.906], [9.7712, 55.0599], [9.9988, 54.9864],
           [10.0612, 54.8863]]
OVER_DENMARK = box(9.5, 54.5, 10.5, 55.5)
FAR_AWAY = box(20, 40, 21, 41)
T0 = datetime(2022, 1, 1, 10, 34, 31, tzinfo=UTC)


def payload(constellation: str = "sentinel2", parameters: dict | None = None, geometry: dict | None = None,
            **extra) -> object:
    raw = {
        "name": "Test", "type": "Feature",
        "geometry": geometry or {"type": "Polygon", "coordinates": [DENMARK]},
        "start_time": "2022-01-01T00:00:00Z", "end_time": "2022-02-01T00:00:00Z",
        "scene_type": {"constellation": constellation, "parameters": parameters or {}},
        "scene_graph_name": "CopyProductToStorage", "record_tags": {"area": "Denmark"}, **extra,
    }
    return parse_payload(raw, "test.json")


@pytest.fixture
def fake():
    with FakeCdseCatalogue() as server:
        yield server


def settings_for(fake: FakeCdseCatalogue, **overrides):
    return load_settings({"cdse_catalogue_url": fake.url, **overrides})


def run(fake, p, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = search(p, settings_for(fake, **kwargs.pop("settings", {})), **kwargs)
    return result, caught


def daily_s2(n: int, start: datetime = T0, **kwargs) -> list[dict]:
    return [s2_product(sensing=start + timedelta(days=i), geometry=OVER_DENMARK, **kwargs) for i in range(n)]


# --- the query ---------------------------------------------------------------------------------------

def test_query_sends_fixed_clause_table_order_expand_and_utc_dates(fake):
    fake.add(daily_s2(2))
    p = payload("sentinel1", {"relativeorbitnumber": "44", "filename": "*S1A*"},
                start_time="2022-01-01T01:00:00+01:00")
    run(fake, p)
    params = fake.product_requests[0]["params"]
    assert params["$orderby"] == "ContentDate/Start asc" and params["$expand"] == "Attributes"
    assert int(params["$top"]) <= 1000
    clauses = params["$filter"].split(" and Attributes/")
    assert clauses[0].startswith("Collection/Name eq 'SENTINEL-1' and OData.CSC.Intersects(area=geography'SRID=4326;"
                                 "POLYGON ((")
    dates = "ContentDate/Start gt 2022-01-01T00:00:00.000Z and ContentDate/Start lt 2022-02-01T00:00:00.000Z"
    assert dates in clauses[0]
    assert [c.split("'")[1] for c in clauses[1:]] == ["productType", "polarisationChannels", "operationalMode",
                                                      "relativeOrbitNumber"]
    assert "att/OData.CSC.IntegerAttribute/Value eq 44)" in params["$filter"]
    assert "IntegerAttribute/any(att:att/Name eq 'relativeOrbitNumber'" in params["$filter"]
    assert "StringAttribute/Value eq 'VV&VH')" in params["$filter"]
    assert params["$filter"].endswith(" and contains(Name,'S1A')")


def test_string_values_are_escaped_in_the_filter():
    p = payload("sentinel2", {"filename": "S2A"})
    flt = build_filter(filters_of(p).__class__(**{**filters_of(p).__dict__, "filename": "O'Brien"}), box(0, 0, 1, 1))
    assert "contains(Name,'O''Brien')" in flt
    assert compile_filter(flt)  # the fake parses it


@pytest.mark.parametrize("parameters, matching", [
    ({}, {"base", "R051", "cloud20", "T32UNH"}),  # default producttype S2MSI1C
    ({"producttype": "S2MSI2A"}, {"L2A"}),
    ({"relativeorbitnumber": "51"}, {"R051"}),
    ({"cloudcoverpercentage": "[10 TO 30]"}, {"cloud20"}),
    ({"filename": "*T32UNH*"}, {"T32UNH"}),
    ({"platformname": "SENTINEL-1"}, set()),
])
def test_each_s2_parameter_selects_through_its_clause(fake, parameters, matching):
    products = {  # each differs from "base" in one respect
        "base": s2_product(sensing=T0, geometry=OVER_DENMARK, cloud=50.0),
        "L2A": s2_product(sensing=T0 + timedelta(days=1), geometry=OVER_DENMARK, level="L2A", cloud=50.0),
        "R051": s2_product(sensing=T0 + timedelta(days=2), geometry=OVER_DENMARK, relative_orbit=51, cloud=50.0),
        "cloud20": s2_product(sensing=T0 + timedelta(days=3), geometry=OVER_DENMARK, cloud=20.0),
        "T32UNH": s2_product(sensing=T0 + timedelta(days=4), geometry=OVER_DENMARK, tile="32UNH", cloud=50.0),
    }
    fake.add(products.values())
    result, caught = run(fake, payload("sentinel2", parameters))
    assert {s.source_id for s in result.scenes} == {products[k]["Name"][:-5] for k in matching}
    assert not caught  # the server applied every filter: nothing for the client to drop


@pytest.mark.parametrize("parameters, keep", [
    ({}, "default"),
    ({"producttype": "GRD"}, "grd"),
    ({"polarisationmode": "VV"}, "vv"),
    ({"sensoroperationalmode": "EW"}, "ew"),
    ({"relativeorbitnumber": "117"}, "r117"),
])
def test_each_s1_parameter_selects_through_its_clause(fake, parameters, keep):
    geom = OVER_DENMARK
    base = "S1A_IW_SLC__1SDV_20220111T170124_20220111T170151_041416_04ECAD_F4D7"
    products = {
        "default": s1_product(base, sensing=T0 + timedelta(days=10), geometry=geom),
        "grd": s1_product(base.replace("SLC_", "GRDH").replace("F4D7", "AAAA"), sensing=T0 + timedelta(days=11),
                          geometry=geom, product_type="GRD"),
        "vv": s1_product(base.replace("1SDV", "1SSV").replace("F4D7", "BBBB"), sensing=T0 + timedelta(days=12),
                         geometry=geom, polarisation="VV"),
        "ew": s1_product(base.replace("_IW_", "_EW_").replace("F4D7", "CCCC"), sensing=T0 + timedelta(days=13),
                         geometry=geom, mode="EW"),
        "r117": s1_product(base.replace("F4D7", "DDDD").replace("20220111T17", "20220114T17"),
                           sensing=T0 + timedelta(days=14), geometry=geom, relative_orbit=117),
    }
    fake.add(products.values())
    defaults = {"relativeorbitnumber": "44"} if "relativeorbitnumber" not in parameters else {}
    result, _ = run(fake, payload("sentinel1", {**defaults, **parameters}))
    assert [s.source_id for s in result.scenes] == [products[keep]["Name"][:-5]]


def test_dates_and_aoi_restrict_the_search(fake):
    fake.add([
        s2_product(sensing=datetime(2021, 12, 31, tzinfo=UTC), geometry=OVER_DENMARK),
        s2_product(sensing=T0, geometry=OVER_DENMARK),
        s2_product(sensing=T0, geometry=FAR_AWAY, tile="34TDL"),
        s2_product(sensing=datetime(2022, 2, 1, 0, 0, 1, tzinfo=UTC), geometry=OVER_DENMARK),
    ])
    result, _ = run(fake, payload())
    assert [s.date for s in result.scenes] == [T0]


def test_the_fake_rejects_what_the_real_service_rejects(fake):
    service = make_service(settings_for(fake))
    mixed = ("Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'relativeOrbitNumber' and "
             "att/OData.CSC.IntegerAttribute/Value eq 44)")  # what the original sends
    multi = "OData.CSC.Intersects(area=geography'SRID=4326;MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))')"
    for params, status, message in (
        ({"$filter": mixed}, 400, "attribute type mismatch"),
        ({"$filter": multi}, 400, "MULTIPOLYGON is not supported"),
        ({"$filter": "productType eq 'SLC'"}, 400, "unknown field"),
        ({"$top": 1001}, 422, "$top: Input should be less than or equal to 1000"),
        ({"$skip": 10001}, 422, "$skip: Input should be less than or equal to 10000"),
    ):
        with pytest.raises(HTTPError) as info:
            service.get_json("Products", params=params)
        assert info.value.status == status and message in str(info.value)


# --- mapping, tags, metadata -----------------------------------------------------------------------

def test_real_s2_products_map_to_scenes_with_tags_and_metadata(fake):
    from tests.fakes.cdse_odata import real_s2_products

    fake.add(real_s2_products())
    guam = {"type": "Polygon", "coordinates": [[[142, 13], [145.5, 13], [145.5, 15], [142, 15], [142, 13]]]}
    p = payload("sentinel2", {"relativeorbitnumber": "45"}, geometry=guam, start_time="2020-08-01T00:00:00Z",
                end_time="2020-08-16T00:00:00Z", annotations_urls=["s3://bucket/{YEAR}/{TILE}/{SCENE}.zip"])
    result, caught = run(fake, p)
    assert not caught
    first = result.scenes[0]
    assert first.source_id == "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"
    assert first.tags == {
        "aoiCoverage": "0.0520",  # the share of the payload's AOI the footprint covers (geodesic)
        "area": "Denmark", "cloudCoverPercentage": "95.136736479015", "constellation": "SENTINEL2",
        "ingestionDate": "2020-08-08T01:03:11.024000Z", "orbit": "26783", "orbitDirection": "",
        "productType": "S2MSI1C", "relativeOrbit": "45", "satellite": "SENTINEL2A",
        "sourceID": first.source_id, "uuid": "05edf2bb-d103-49f1-a677-9e474138d84f",
    }
    assert first.metadata == {
        "uuid": "05edf2bb-d103-49f1-a677-9e474138d84f",
        "product_name": first.source_id + ".SAFE",
        "checksums": {"MD5": "923ac4992d90b57d41e7ace4d9d90757",
                      "BLAKE3": "2f787caed527ffeb3245594a465abd127da5ee7eaeb974f9a9ab4342f2fba7cf"},
        "size": 224105657, "online": True,
        "s3_path": "/eodata/Sentinel-2/MSI/L1C_N0500/2020/08/08/" + first.source_id + ".SAFE",
        "publication_date": "2023-08-23T09:26:23.105134Z",
        "download_link": f"s3://bucket/2020/T54PXA/{first.source_id}.zip",
    }
    assert first.date == datetime(2020, 8, 8, 1, 3, 11, 24000, tzinfo=UTC)
    assert first.wkt.startswith("POLYGON ((142.352793016856 13.4758743606673, 142.93808729126 13.4725397858819")
    assert [s.graph_name for s in result.scenes] == ["CopyProductToStorage"] * 2


def test_numbers_are_written_plainly(fake):
    big = s1_product("S1A_IW_SLC__1SDV_20220111T170124_20220111T170151_041416_04ECAD_F4D7", sensing=T0,
                     geometry=OVER_DENMARK, orbit=1_000_000, relative_orbit=44)
    tiny = s2_product(sensing=T0, geometry=OVER_DENMARK, cloud=1e-7)
    fake.add([big, tiny])
    s1, _ = run(fake, payload("sentinel1"))
    s2, _ = run(fake, payload("sentinel2"))
    assert s1.scenes[0].tags["orbit"] == "1000000"
    assert s2.scenes[0].tags["cloudCoverPercentage"] == "0.0000001"


def test_record_tag_conflicting_with_a_catalogue_tag_is_an_error_naming_scene_and_tag(fake):
    fake.add(daily_s2(1))
    p = payload(record_tags={"constellation": "LANDSAT"})
    with pytest.raises(PayloadError, match=r"test.json: field 'record_tags.constellation'.*S2A_MSIL1C_2022"):
        run(fake, p)
    p = payload(record_tags={"constellation": "SENTINEL2", "source": "me"})
    result, _ = run(fake, p)
    assert result.scenes[0].tags["source"] == "me"


def test_offline_products_are_listed_flagged_and_warned(fake):
    fake.add([s2_product(sensing=T0, geometry=OVER_DENMARK, online=False)])
    result, caught = run(fake, payload())
    assert result.scenes[0].metadata["online"] is False
    assert [w.category for w in caught] == [OfflineProductWarning]
    assert "1 product(s) offline" in str(caught[0].message)


def test_reprocessed_s2_products_are_deduplicated_newest_baseline_then_generation(fake):
    old = s2_product(sensing=T0, geometry=OVER_DENMARK, baseline="0301", generation=datetime(2024, 5, 1, tzinfo=UTC))
    new = s2_product(sensing=T0, geometry=OVER_DENMARK, baseline="0510", generation=datetime(2024, 4, 23, tzinfo=UTC))
    newer = s2_product(sensing=T0, geometry=OVER_DENMARK, baseline="0510", generation=datetime(2024, 6, 1, tzinfo=UTC))
    other_tile = s2_product(sensing=T0, geometry=OVER_DENMARK, tile="32UNH")
    fake.add([old, new, newer, other_tile])
    result, _ = run(fake, payload())
    assert sorted(s.source_id for s in result.scenes) == sorted([newer["Name"][:-5], other_tile["Name"][:-5]])
    assert result.dropped["reprocessed duplicates"] == 2


def test_reprocessed_s1_products_keep_the_latest_publication(fake):
    name = "S1A_IW_SLC__1SDV_20220111T170124_20220111T170151_041416_04ECAD_"
    a = s1_product(name + "F4D7", sensing=T0, geometry=OVER_DENMARK, published=datetime(2022, 1, 1, tzinfo=UTC))
    b = s1_product(name + "0000", sensing=T0, geometry=OVER_DENMARK, published=datetime(2023, 1, 1, tzinfo=UTC))
    fake.add([a, b])
    result, _ = run(fake, payload("sentinel1"))
    assert [s.source_id for s in result.scenes] == [name + "0000"]


def test_products_without_footprint_are_skipped_with_a_warning(fake):
    fake.add(real_aux_products())  # 47 S1 auxiliary products of the CDSETool pages, null footprints
    fake.ignore_filter = True  # a server that returns them anyway
    p = payload("sentinel1", start_time="2014-04-05T00:00:00Z", end_time="2014-04-14T00:00:00Z")
    result, caught = run(fake, p, settings={"cdse_page_size": 10})
    assert result.scenes == [] and result.rows == 47 and result.pages == 5
    assert [w.category for w in caught] == [CatalogueWarning]
    assert str(caught[0].message).startswith("47 product(s) without footprint skipped: S1A_AUX_INS_V20140406T010000")


def test_products_a_filter_excludes_are_dropped_with_a_typed_warning(fake):
    fake.add([s2_product(sensing=T0, geometry=OVER_DENMARK, cloud=95.0),
              s2_product(sensing=T0, geometry=OVER_DENMARK, tile="32UNH", cloud=5.0),
              s2_product(sensing=T0, geometry=FAR_AWAY, tile="34TDL", cloud=5.0)])
    fake.ignore_filter = True
    result, caught = run(fake, payload("sentinel2", {"cloudcoverpercentage": "[0 TO 80]"}))
    assert [s.tags["cloudCoverPercentage"] for s in result.scenes] == ["5"]
    assert [w.category for w in caught] == [CatalogueFilterWarning]
    assert "excluded by cloudcoverpercentage=[0 TO 80]" in str(caught[0].message)
    assert result.dropped["outside the exact AOI"] == 1


# --- geometry ---------------------------------------------------------------------------------------

def test_multipolygon_aoi_is_searched_per_polygon_and_merged_without_duplicates(fake):
    west, east = box(0, 50, 1, 51), box(5, 50, 6, 51)
    spanning = s2_product(sensing=T0, geometry=box(0.5, 50.2, 5.5, 50.8), tile="31UAA")
    only_west = s2_product(sensing=T0 + timedelta(hours=1), geometry=box(0.2, 50.2, 0.4, 50.4), tile="31UBB")
    only_east = s2_product(sensing=T0 - timedelta(hours=1), geometry=box(5.2, 50.2, 5.4, 50.4), tile="31UCC")
    between = s2_product(sensing=T0, geometry=box(2, 50, 3, 51), tile="31UDD")
    fake.add([spanning, only_west, only_east, between])
    geometry = {"type": "MultiPolygon", "coordinates": [[list(west.exterior.coords)], [list(east.exterior.coords)]]}
    result, _ = run(fake, payload(geometry=geometry))
    assert [s.tags["sourceID"][39:44] for s in result.scenes] == ["31UCC", "31UAA", "31UBB"]
    assert len(fake.product_requests) == 2
    assert all("POLYGON ((" in r["params"]["$filter"] and "MULTI" not in r["params"]["$filter"]
               for r in fake.product_requests)
    # paging over the merged order: row 1 is the spanning product, and more rows exist
    page, _ = run(fake, payload(geometry=geometry), page=1, limit=1)
    assert [s.tags["sourceID"][39:44] for s in page.scenes] == ["31UAA"] and page.next


def test_long_aoi_is_simplified_for_the_query_but_checked_exactly(fake):
    import math

    ring = [(10 + 0.5 * math.cos(2 * math.pi * i / 1000), 55 + 0.3 * math.sin(2 * math.pi * i / 1000))
            for i in range(1000)]
    ring.append(ring[0])
    inside = s2_product(sensing=T0, geometry=box(10.4, 54.95, 10.45, 55.05))
    just_outside = s2_product(sensing=T0 + timedelta(hours=1), geometry=box(10.50001, 54.999, 10.50003, 55.001),
                              tile="32UNH")
    fake.add([inside, just_outside])
    result, _ = run(fake, payload(geometry={"type": "Polygon", "coordinates": [ring]}))
    query = fake.product_requests[0]["params"]["$filter"]
    sent = query.split("POLYGON ((")[1].split("))")[0].count(",") + 1
    assert sent <= 200 < len(ring)
    assert [s.source_id for s in result.scenes] == [inside["Name"][:-5]]
    assert result.rows == 2 and result.dropped["outside the exact AOI"] == 1


# --- HTTP behaviour ----------------------------------------------------------------------------------

def test_429_with_retry_after_then_success(fake):
    fake.add(daily_s2(3))
    fake.fail_next(2, 429, retry_after="7")
    waits: list[float] = []
    s = settings_for(fake, http_retries=3)
    service = make_service(s)
    service.sleep = waits.append
    result = cdse_search(payload(), s, service=service)
    assert len(result.scenes) == 3 and waits == [7.0, 7.0] and result.requests == 3


def test_503_beyond_the_retries_is_a_catalogue_error(fake):
    fake.fail_next(5, 503)
    with pytest.raises(CatalogueError, match=r"answered 503 after 3 requests: Service Unavailable"):
        run(fake, payload())


def test_a_4xx_is_not_retried_and_carries_the_server_message(fake):
    p = payload()
    s = settings_for(fake, cdse_page_size=1000)
    fake.max_top = 10  # a catalogue with a smaller ceiling than we think
    with pytest.raises(CatalogueError, match=r"answered 422: \$top: Input should be less than or equal to 10"):
        search(p, s)
    assert len(fake.requests) == 1


def test_spot_goes_to_oneatlas_and_without_an_api_key_is_an_input_error(fake):
    raw = {"name": "L", "type": "Polygon", "coordinates": [DENMARK], "start_time": "2022-01-01T00:00:00Z",
           "end_time": "2022-02-01T00:00:00Z", "scene_type": {"constellation": "spot"}}
    with pytest.raises(InputError, match=r"oneatlas: no API key: set INGESTER_ONEATLAS_API_KEY"):
        search(parse_payload(raw, "l.json"), settings_for(fake))
    assert fake.requests == []


def test_scenes_are_sorted_by_date_and_stable_between_runs(fake):
    fake.add(reversed(daily_s2(5)))
    a, _ = run(fake, payload())
    b, _ = run(fake, payload())
    assert [s.date for s in a.scenes] == sorted(s.date for s in a.scenes)
    assert json.dumps([s.to_dict() for s in a.scenes]) == json.dumps([s.to_dict() for s in b.scenes])


def test_multipolygon_type_is_kept_out_of_the_polygon_list():
    from ingester.geometry import query_polygons

    polys = query_polygons(MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]))
    assert len(polys) == 2 and all(isinstance(p, Polygon) for p in polys)


def _fiji_and_africa(fake) -> None:
    fiji_west = s2_product(sensing=T0, geometry=box(178.5, -17.5, 179.5, -16.5), tile="60KXF")
    fiji_east = s2_product(sensing=T0 + timedelta(hours=1), geometry=box(-179.9, -17.5, -179.1, -16.5), tile="01KAB")
    africa = s2_product(sensing=T0 + timedelta(hours=2), geometry=box(20, -17.5, 21, -16.5), tile="34KDF")
    fake.add([fiji_west, fiji_east, africa])


def tiles_found(result) -> list[str]:
    return [s.tags["sourceID"][39:44] for s in result.scenes]


@pytest.mark.parametrize("geometry", [
    {"type": "Polygon", "coordinates": [[[178, -18], [181, -18], [181, -16], [178, -16], [178, -18]]]},
    {"type": "MultiPolygon", "coordinates": [[[[178, -18], [180, -18], [180, -16], [178, -16], [178, -18]]],
                                             [[[-180, -18], [-179, -18], [-179, -16], [-180, -16], [-180, -18]]]]},
], ids=["longitudes beyond 180", "split into two parts"])
def test_an_aoi_across_the_antimeridian_written_the_geojson_way_is_searched_on_both_sides(fake, geometry):
    """RFC 7946 §3.1.9: an area across the antimeridian is cut into parts, or written with longitudes
    past ±180; both mean the same two degrees of Pacific."""
    _fiji_and_africa(fake)
    result, _ = run(fake, payload(geometry=geometry))
    assert tiles_found(result) == ["60KXF", "01KAB"]
    assert len(fake.product_requests) == 2  # one polygon on each side


def test_a_ring_whose_longitudes_jump_is_taken_as_written_not_as_crossing_the_antimeridian(fake):
    _fiji_and_africa(fake)
    ring = [[178, -18], [-179, -18], [-179, -16], [178, -16], [178, -18]]  # 357 degrees wide, across Africa
    result, _ = run(fake, payload(geometry={"type": "Polygon", "coordinates": [ring]}))
    assert tiles_found(result) == ["34KDF"]


def test_an_aoi_wider_than_180_degrees_finds_the_scenes_inside_it(fake):
    inside = [s2_product(sensing=T0 + timedelta(hours=i), geometry=box(x, 54, x + 1, 55), tile=f"3{i}UAA")
              for i, x in enumerate((-5, 60, 120, 170))]
    outside = s2_product(sensing=T0 + timedelta(hours=9), geometry=box(-170, 54, -169, 55), tile="02UAA")
    fake.add([*inside, outside])
    aoi = {"type": "Polygon", "coordinates": [[[-10, 50], [175, 50], [175, 60], [-10, 60], [-10, 50]]]}
    result, _ = run(fake, payload(geometry=aoi))
    assert tiles_found(result) == ["30UAA", "31UAA", "32UAA", "33UAA"]


def test_the_whole_world_is_searched_with_one_request(fake):
    _fiji_and_africa(fake)
    world = {"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}
    result, caught = run(fake, payload(geometry=world))
    assert tiles_found(result) == ["60KXF", "01KAB", "34KDF"]
    assert len(fake.product_requests) == 1
    assert not [w for w in caught if "hemisphere" in str(w.message)]


def test_query_polygons_have_no_edge_longer_than_ten_degrees(fake):
    """The catalogue reads the area as a geography (edges along great circles): a 185-degree edge along
    a parallel would become an arc over the pole. Short edges keep the query on the AOI."""
    from shapely import wkt as shapely_wkt

    aoi = {"type": "Polygon", "coordinates": [[[-10, 50], [175, 50], [175, 60], [-10, 60], [-10, 50]]]}
    run(fake, payload(geometry=aoi))
    widths = 0.0
    for request in fake.product_requests:
        text = request["params"]["$filter"].split("SRID=4326;", 1)[1].split("'", 1)[0]
        polygon = shapely_wkt.loads(text)
        coords = list(polygon.exterior.coords)
        assert max(abs(b[0] - a[0]) + abs(b[1] - a[1]) for a, b in zip(coords, coords[1:], strict=False)) <= 10
        widths += polygon.bounds[2] - polygon.bounds[0]
    assert widths >= 185  # and together they still cover the whole AOI


def test_a_search_that_finds_nothing_over_more_than_a_hemisphere_warns(fake):
    aoi = {"type": "Polygon", "coordinates": [[[-170, -80], [170, -80], [170, 80], [-170, 80], [-170, -80]]]}
    result, caught = run(fake, payload(geometry=aoi))
    assert result.scenes == []
    messages = [str(w.message) for w in caught if issubclass(w.category, CatalogueWarning)]
    assert any("covers more than a hemisphere" in m and "found nothing" in m for m in messages), messages
    small, caught = run(fake, payload())  # an empty answer over Denmark is just an empty answer
    assert not [w for w in caught if "hemisphere" in str(w.message)]


def test_longitudes_beyond_360_or_an_aoi_wider_than_the_earth_are_refused():
    with pytest.raises(PayloadError, match="out of range"):
        payload(geometry={"type": "Polygon", "coordinates": [[[0, 0], [400, 0], [400, 1], [0, 0]]]})
    with pytest.raises(PayloadError, match="wider than 360"):
        payload(geometry={"type": "Polygon", "coordinates": [[[-200, 0], [200, 0], [200, 1], [-200, 0]]]})


def test_download_link_only_from_a_single_annotations_url(fake):
    fake.add(daily_s2(1))
    two, _ = run(fake, payload(annotations_urls=["file:///a/{SCENE}.zip", "file:///b/{SCENE}.zip"]))
    one, _ = run(fake, payload(annotations_urls=["file:///{AREA}/{YEAR}/{SCENE}.zip"]))
    assert "download_link" not in two.scenes[0].metadata
    assert one.scenes[0].metadata["download_link"] == f"file:///Test/2022/{one.scenes[0].source_id}.zip"


# --- many polygons: searched concurrently, bounded, same result ---------------------------------------------

def _islands(n: int) -> dict:
    """A MultiPolygon of `n` small squares (an archipelago), 0.2° apart."""
    return {"type": "MultiPolygon", "coordinates": [
        [[[x, y], [x + 0.1, y], [x + 0.1, y + 0.1], [x, y + 0.1], [x, y]]]
        for i in range(n) for x, y in [(5 + 0.2 * (i % 20), 50 + 0.2 * (i // 20))]]}


def test_the_parts_of_a_multipolygon_are_searched_concurrently_within_the_connection_cap(fake):
    fake.add([s2_product(sensing=T0 + timedelta(hours=i), geometry=box(5 + 0.2 * i, 50, 5.15 + 0.2 * i, 50.05),
                         tile=f"{i:02d}ABC") for i in range(20)])
    fake.latency = 0.05
    islands = payload(geometry=_islands(40))
    result, _ = run(fake, islands, settings={"cdse_search_concurrency": 3})
    assert len(fake.product_requests) == 40
    assert fake.max_in_flight == 3  # concurrent, never above the cap (CDSE: 4 connections per user)
    fake.requests.clear()
    fake.max_in_flight = 0
    one_at_a_time, _ = run(fake, islands, settings={"cdse_search_concurrency": 1})
    assert fake.max_in_flight == 1
    assert [s.to_dict() for s in result.scenes] == [s.to_dict() for s in one_at_a_time.scenes]
    assert len(result.scenes) == 20 and result.rows == one_at_a_time.rows == 20


@pytest.mark.parametrize("page", [0, 1, 2])
def test_pages_of_a_concurrent_multipolygon_search_are_those_of_a_sequential_one(fake, page):
    fake.add([s2_product(sensing=T0 + timedelta(hours=i), geometry=box(5 + 0.2 * i, 50, 5.15 + 0.2 * i, 50.05),
                         tile=f"{i:02d}ABC") for i in range(20)])
    islands = payload(geometry=_islands(40))
    fake.latency = 0.02
    a, _ = run(fake, islands, page=page, limit=7, settings={"cdse_search_concurrency": 4})
    assert 2 <= fake.max_in_flight <= 4  # the first answer of every part, side by side
    fake.max_in_flight = 0
    b, _ = run(fake, islands, page=page, limit=7, settings={"cdse_search_concurrency": 1})
    assert fake.max_in_flight == 1
    assert [s.source_id for s in a.scenes] == [s.source_id for s in b.scenes] and len(a.scenes) == (7 if page < 2
                                                                                                     else 6)
    assert a.next == b.next == (page < 2)


# --- coverage of the AOI ------------------------------------------------------------------------------

def _geodesic_share(footprint, aoi) -> float:
    """The share of the AOI a footprint covers, measured here with pyproj directly (not the tool's code)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    covered = abs(geod.geometry_area_perimeter(footprint.intersection(aoi))[0])
    return covered / abs(geod.geometry_area_perimeter(aoi)[0])


def test_every_scene_is_tagged_with_the_share_of_the_aoi_it_covers_and_min_coverage_drops_the_small_ones(fake):
    aoi = Polygon(DENMARK)
    west, south, east, north = aoi.bounds
    thirds = [box(west - 1, south - 1, west + (east - west) * k / 3, north + 1) for k in (1, 2, 3)]
    fake.add([s2_product(sensing=T0 + timedelta(days=k), geometry=g) for k, g in enumerate(thirds)])
    result, _ = run(fake, payload())
    shares = [_geodesic_share(g, aoi) for g in thirds]
    assert [s.tags["aoiCoverage"] for s in result.scenes] == [f"{x:.4f}" for x in shares]
    assert shares[2] == pytest.approx(1.0) and 0.05 < shares[0] < shares[1] < 0.95

    kept, _ = run(fake, payload(min_coverage=round((shares[0] + shares[1]) / 2, 3)))
    assert [s.tags["aoiCoverage"] for s in kept.scenes] == [f"{x:.4f}" for x in shares[1:]]
    assert kept.dropped["below min_coverage"] == 1
    everything, _ = run(fake, payload(min_coverage=0))
    assert len(everything.scenes) == 3 and "below min_coverage" not in everything.dropped


def test_a_record_tag_aoi_coverage_must_agree_with_the_measured_one(fake):
    fake.add(daily_s2(1))  # OVER_DENMARK covers the whole AOI
    result, _ = run(fake, payload(record_tags={"aoiCoverage": "1.0000"}))
    assert result.scenes[0].tags["aoiCoverage"] == "1.0000"
    with pytest.raises(PayloadError, match="record_tags.aoiCoverage': '0.5' conflicts with scene .* is '1.0000'"):
        run(fake, payload(record_tags={"aoiCoverage": "0.5"}))
