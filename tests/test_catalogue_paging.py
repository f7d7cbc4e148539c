"""Paging: acquisitions P·L … P·L+L−1, `next`, --limit 0, next links, $skip ceiling (time windows), reprocessings."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box

from ingester.catalogue import search
from ingester.config import load_settings
from ingester.payload import parse_payload
from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product

AREA = box(9.5, 54.5, 10.5, 55.5)
T0 = datetime(2022, 1, 1, 10, 0, tzinfo=UTC)
TILES = ["32UNG", "32UNH", "32UPG", "32UPH", "32VNH"]


def payload():
    raw = {"name": "P", "type": "Polygon", "coordinates": [[[9.8, 54.9], [10, 54.9], [10, 55], [9.8, 54.9]]],
           "start_time": "2022-01-01T00:00:00Z", "end_time": "2023-01-01T00:00:00Z",
           "scene_type": {"constellation": "sentinel2"}}
    return parse_payload(raw, "p.json")


def catalogue(n: int, per_date: int = 1) -> list[dict]:
    """n products; `per_date` of them share each sensing time (tiles of one datatake)."""
    return [s2_product(sensing=T0 + timedelta(hours=i // per_date), tile=TILES[i % per_date], geometry=AREA)
            for i in range(n)]


def names(result) -> list[str]:
    return [s.source_id for s in result.scenes]


def ordered(products: list[dict], start: int = 0, stop: int | None = None) -> list[str]:
    """Rows start … stop−1 in the server's order (date, then Id), listed as the client sorts
    its scenes (date, then name)."""
    rows = sorted(products, key=lambda p: p["Id"])
    rows.sort(key=lambda p: p["ContentDate"]["Start"])
    rows = sorted(rows[start:stop], key=lambda p: (p["ContentDate"]["Start"], p["Name"]))
    return [p["Name"][:-5] for p in rows]


def run(fake, page=None, limit=None, **settings):
    s = load_settings({"cdse_catalogue_url": fake.url, **settings})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected while paging
        return search(payload(), s, page, limit)


@pytest.mark.parametrize("page, limit", [(0, 3), (1, 3), (3, 3), (4, 3), (5, 3), (0, 13), (0, 14), (2, 5), (6, 2)])
def test_page_and_limit_select_rows_and_next_says_whether_more_exist(page, limit):
    products = catalogue(13, per_date=2)
    with FakeCdseCatalogue(products) as fake:
        result = run(fake, page, limit, cdse_page_size=4)
    assert names(result) == ordered(products, page * limit, page * limit + limit)
    assert result.next == (len(products) > page * limit + limit)


def test_pages_cover_everything_once_in_order():
    products = catalogue(23, per_date=3)
    with FakeCdseCatalogue(products) as fake:
        seen: list[str] = []
        page = 0
        while True:
            result = run(fake, page, 5, cdse_page_size=4)
            assert names(result) == ordered(products, page * 5, page * 5 + 5)
            seen += names(result)
            if not result.next:
                break
            page += 1
    assert sorted(seen) == sorted(ordered(products)) and len(seen) == 23 and page == 4


def test_limit_zero_follows_next_links_to_the_end():
    products = catalogue(25)
    with FakeCdseCatalogue(products) as fake:
        result = run(fake, 0, 0, cdse_page_size=10)
        requests = fake.product_requests
    assert names(result) == ordered(products) and result.next is False
    assert [r["params"].get("$skip", "0") for r in requests] == ["0", "10", "20"]
    assert all(r["params"]["$orderby"] == "ContentDate/Start asc" for r in requests)
    # the 2nd and 3rd requests are the server's own next links, followed as given
    assert result.pages == 3 and result.requests == 3


def test_payload_page_and_limit_apply_when_no_option_is_given():
    products = catalogue(6)
    raw = payload()
    with FakeCdseCatalogue(products) as fake:
        s = load_settings({"cdse_catalogue_url": fake.url})
        import dataclasses

        result = search(dataclasses.replace(raw, page=1, limit=2), s)
        override = search(dataclasses.replace(raw, page=1, limit=2), s, page=0, limit=0)
    assert names(result) == ordered(products)[2:4] and result.next
    assert names(override) == ordered(products) and not override.next


@pytest.mark.parametrize("spelling", ["@OData.nextLink", None])
def test_documented_link_spelling_and_missing_links_are_handled(spelling):
    products = catalogue(25)
    with FakeCdseCatalogue(products) as fake:
        fake.next_link_key = spelling
        result = run(fake, 0, 0, cdse_page_size=10)
        skips = [r["params"].get("$skip", "0") for r in fake.product_requests]
    assert names(result) == ordered(products)
    assert skips == ["0", "10", "20"]


@pytest.mark.parametrize("link_key, skips", [("@odata.nextLink", ["0", "10"]), (None, ["0", "10", "20"])])
def test_exactly_full_last_page_ends_without_an_empty_request_when_the_server_sends_links(link_key, skips):
    products = catalogue(20)
    with FakeCdseCatalogue(products) as fake:
        fake.next_link_key = link_key
        result = run(fake, 0, 0, cdse_page_size=10)
        assert [r["params"].get("$skip", "0") for r in fake.product_requests] == skips
    assert names(result) == ordered(products) and not result.next


@pytest.mark.parametrize("per_date", [1, 3])
def test_limit_zero_beyond_the_skip_ceiling_splits_by_time_window(per_date):
    products = catalogue(57, per_date=per_date)
    with FakeCdseCatalogue(products, max_skip=20) as fake:
        result = run(fake, 0, 0, cdse_page_size=10, cdse_max_skip=20)
        requests = fake.product_requests
    assert names(result) == ordered(products)  # every row once, in order
    assert all(r["status"] == 200 for r in requests)
    assert all(int(r["params"].get("$skip", 0)) <= 20 for r in requests)
    windows = [r for r in requests if "ContentDate/Start ge " in r["params"]["$filter"]]
    assert windows, "the search was split by time window"


@pytest.mark.parametrize("page, limit", [(5, 10), (3, 13), (11, 5), (0, 57)])
def test_pages_past_the_skip_ceiling_are_exact(page, limit):
    products = catalogue(57, per_date=3)
    with FakeCdseCatalogue(products, max_skip=20) as fake:
        result = run(fake, page, limit, cdse_page_size=10, cdse_max_skip=20)
        assert all(r["status"] == 200 for r in fake.product_requests)
    assert names(result) == ordered(products, page * limit, page * limit + limit)
    assert result.next == (len(products) > page * limit + limit)


def test_products_sharing_one_date_beyond_a_page_cannot_be_split_and_say_so():
    products = [s2_product(sensing=T0, tile=f"3{i:02d}AA", geometry=AREA) for i in range(40)]  # one datatake
    with FakeCdseCatalogue(products, max_skip=20) as fake:
        from ingester.errors import CatalogueError

        with pytest.raises(CatalogueError, match="too many products share ContentDate/Start .* narrow the search"):
            run(fake, 0, 0, cdse_page_size=10, cdse_max_skip=20)


def test_a_broken_next_link_falls_back_to_a_computed_skip():
    products = catalogue(25)
    with FakeCdseCatalogue(products) as fake:
        fake.link_resource = "Productz"
        result = run(fake, 0, 0, cdse_page_size=10)
        answered = [(r["path"].rsplit("/", 1)[1], r["params"].get("$skip", "0"), r["status"]) for r in fake.requests]
    assert names(result) == ordered(products)
    assert answered == [("Products", "0", 200), ("Productz", "10", 404), ("Products", "10", 200),
                        ("Productz", "20", 404), ("Products", "20", 200)]


def test_time_windows_keep_microseconds_of_the_cut_date():
    products = [s2_product(sensing=T0 + timedelta(minutes=i // 3, microseconds=123457), tile=TILES[i % 3],
                           geometry=AREA) for i in range(45)]
    with FakeCdseCatalogue(products, max_skip=20) as fake:
        result = run(fake, 0, 0, cdse_page_size=10, cdse_max_skip=20)
        cuts = {r["params"]["$filter"].rsplit(" ge ", 1)[1] for r in fake.product_requests
                if " ge " in r["params"]["$filter"]}
    assert names(result) == ordered(products)
    assert cuts and all(c.endswith(".123457Z") for c in cuts)


def test_real_cdse_page_is_read_and_its_upstream_link_not_followed(httpserver, testdata):
    import json

    from werkzeug import Response

    real = json.loads((testdata / "cdse" / "cop_dataspace_search.json").read_text())
    assert real["@odata.nextLink"].startswith("https://catalogue.dataspace.copernicus.eu/")
    empty = {"@odata.context": "$metadata#Products(Attributes())", "value": []}
    httpserver.expect_request("/odata/v1/Products").respond_with_handler(
        lambda request: Response(json.dumps(empty if request.args.get("$skip") else real),
                                 content_type="application/json"))
    guam = {"type": "Polygon", "coordinates": [[[142, 13], [145.5, 13], [145.5, 15], [142, 15], [142, 13]]]}
    p = parse_payload({"name": "G", "type": "Feature", "geometry": guam, "start_time": "2020-08-01T00:00:00Z",
                       "end_time": "2020-08-16T00:00:00Z", "scene_type": {"constellation": "sentinel2"}}, "g.json")
    s = load_settings({"cdse_catalogue_url": httpserver.url_for("/odata/v1"), "cdse_page_size": 2})
    result = search(p, s, 0, 0)
    assert [sc.tags["sourceID"][39:44] for sc in result.scenes] == ["54PXA", "55PBR"]
    assert [dict(r.args).get("$skip", "0") for r, _ in httpserver.log] == ["0", "2"]


@pytest.mark.parametrize("seed", range(16))
def test_random_catalogues_page_exactly_with_a_small_ceiling(seed):
    import random

    rng = random.Random(seed)
    n = rng.randint(0, 70)
    products, t = [], T0
    for i in range(n):
        t += timedelta(minutes=rng.choice([0, 0, 1, 7]))  # many ties: tiles of one datatake
        west = rng.random() < 0.5
        products.append(s2_product(sensing=t, tile=f"{i:02d}ABC", geometry=box(9.5, 54.5, 10.5, 55.5) if west
                                   else box(12.5, 54.5, 13.5, 55.5)))
    two = rng.random() < 0.5
    coords = [[[[9.8, 54.9], [10, 54.9], [10, 55], [9.8, 54.9]]]]
    if two:
        coords.append([[[12.8, 54.9], [13, 54.9], [13, 55], [12.8, 54.9]]])
    raw = {"name": "R", "type": "MultiPolygon", "coordinates": coords, "start_time": "2022-01-01T00:00:00Z",
           "end_time": "2023-01-01T00:00:00Z", "scene_type": {"constellation": "sentinel2"}}
    matching = [p for p in products if two or p["GeoFootprint"]["coordinates"][0][0][0] < 11]
    limit = rng.choice([0, 1, 3, 8, 25])
    page = rng.randint(0, 4) if limit else 0
    page_size, ceiling = rng.choice([(4, 10), (5, 12), (10, 20), (3, 3)])
    from collections import Counter

    from ingester.errors import CatalogueError

    largest_tie = max(Counter(p["ContentDate"]["Start"] for p in matching).values(), default=0)
    with FakeCdseCatalogue(products, max_skip=ceiling) as fake:
        s = load_settings({"cdse_catalogue_url": fake.url, "cdse_page_size": page_size, "cdse_max_skip": ceiling})
        try:
            result = search(parse_payload(raw, "r.json"), s, page, limit)
        except CatalogueError as exc:  # only when a window cannot see past one date: the API's own limit
            assert "too many products share" in str(exc) and largest_tie >= ceiling + page_size
            return
        assert all(r["status"] == 200 for r in fake.requests)
    stop = page * limit + limit if limit else None
    assert names(result) == ordered(matching, page * limit, stop)
    assert result.next == (limit > 0 and len(matching) > page * limit + limit)


# --- reprocessed copies and page boundaries -----------------------------------------------------------

def reprocessed_catalogue() -> tuple[list[dict], list[str]]:
    """Seven acquisitions, hourly; the 2nd and the 5th were reprocessed (an older and a newer baseline,
    same sensing time). Returns (products, the newest copy of each acquisition in date order)."""
    products, newest = [], []
    for i in range(7):
        sensing = T0 + timedelta(hours=i)
        copies = [s2_product(sensing=sensing, geometry=AREA, baseline="0510")]
        if i in (1, 4):
            copies = [s2_product(sensing=sensing, geometry=AREA, baseline="0301"),
                      s2_product(sensing=sensing, geometry=AREA, baseline="0511")]
        products += copies
        newest.append(copies[-1]["Name"][:-5])
    return products, newest


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_a_reprocessed_product_and_its_older_copy_never_land_on_two_pages(limit):
    products, newest = reprocessed_catalogue()
    with FakeCdseCatalogue(products) as fake:
        everything = run_dedup(fake, 0, 0)
        pages, page = [], 0
        while True:
            result = run_dedup(fake, page, limit)
            pages.append(names(result))
            if not result.next:
                break
            page += 1
            assert page < 10
    assert names(everything) == newest
    assert [n for p in pages for n in p] == newest  # each acquisition once, newest copy, in order
    assert all(len(p) == limit for p in pages[:-1]) and 0 < len(pages[-1]) <= limit  # windows of acquisitions
    assert len(pages) == -(-len(newest) // limit)  # `next` exact: no empty last page


def test_a_page_window_ending_on_a_reprocessed_acquisition_reads_its_later_copy():
    products, newest = reprocessed_catalogue()
    with FakeCdseCatalogue(products) as fake:
        first = run_dedup(fake, 0, 2)  # acquisitions 0 and 1; the newer copy of 1 is the 4th row
        assert names(first) == newest[:2] and first.next


def run_dedup(fake, page, limit, **settings):
    """`run`, but the de-duplication warnings of the search are allowed."""
    s = load_settings({"cdse_catalogue_url": fake.url, "cdse_page_size": 2, **settings})
    return search(payload(), s, page, limit)
