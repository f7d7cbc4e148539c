"""OneAtlas search (Pléiades, SPOT) against the fake OneAtlas: the documented request, paging as for CDSE,
footprints cut to the exact AOI with a geodesic minimum area, the scene mapping with the original's
defects fixed, the API-key login, and `ingester scenes --estimate`."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import shapely
from shapely.geometry import shape

from ingester import oneatlas
from ingester.catalogue import search
from ingester.catalogue.oneatlas import geodesic_area
from ingester.config import load_settings
from ingester.errors import CredentialsRefused, InputError
from ingester.http import Clients
from ingester.payload import parse_payload
from tests.fakes.oneatlas import FakeOneAtlas, footprint_around

AOI = [[1.438, 43.5965], [1.452, 43.5965], [1.452, 43.6055], [1.438, 43.6055], [1.438, 43.5965]]
PHR = "DS_PHR1A_{:%Y%m%d%H%M%S}0_FR1_PX_E001N43_0615_{:05d}"


@pytest.fixture
def fake(monkeypatch):
    with FakeOneAtlas() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


def raw_payload(**parameters) -> dict:
    return {"name": "ToulousePHR", "type": "Polygon", "coordinates": [AOI], "start_time": "2022-04-01T00:00:00Z",
            "end_time": "2022-04-30T23:59:59Z", "scene_type": {"constellation": "phr", "parameters": parameters},
            "scene_graph_name": "PhrPreProcessing", "tile_graph_name": "PhrProcessing",
            "record_tags": {"area": "Toulouse"}}


def add_days(fake: FakeOneAtlas, count: int, **kw) -> list[str]:
    from datetime import UTC, datetime, timedelta

    ids = []
    for i in range(count):
        when = datetime(2022, 4, 1, 10, 53, 44, tzinfo=UTC) + timedelta(minutes=i)
        fake.add_item(PHR.format(when, i), when.strftime("%Y-%m-%dT%H:%M:%S.012Z"), footprint_around(1.445, 43.601),
                      **kw)
        ids.append(PHR.format(when, i))
    return ids


def searches(fake: FakeOneAtlas) -> list[dict]:
    return [r for r in fake.requests if r["path"] == "/api/v2/opensearch"]


def test_search_sends_the_documented_body_with_the_bearer_token_of_the_api_key(fake):
    add_days(fake, 2)
    params = {"cloudCover": "[0, 20]", "incidenceAngle": "[0 TO 30]", "productType": "bundle",
              "processingLevel": "SENSOR", "platform": "PHR1A", "workspace": "public", "relation": "intersects",
              "acquisitionIdentifier": "DS_PHR1A_*"}
    result = search(parse_payload(raw_payload(**params)), load_settings())
    body = searches(fake)[0]["body"]
    hull = shapely.convex_hull(shapely.Polygon(AOI))
    assert body["constellation"] == "PHR" and body["sortBy"] == "acquisitionDate"
    assert body["acquisitionDate"] == "[2022-04-01T00:00:00.000Z,2022-04-30T23:59:59.000Z]"  # exact times, UTC
    assert shape(body["geometry"]).equals(hull)
    assert (body["itemsPerPage"], body["startPage"]) == (200, 1)
    assert body["cloudCover"] == "[0,20]" and body["incidenceAngle"] == "[0,30]"
    copied = ("productType", "processingLevel", "platform", "workspace", "relation", "acquisitionIdentifier")
    assert {k: body[k] for k in copied} == {k: params[k] for k in copied}
    assert searches(fake)[0]["authorization"].startswith("Bearer oa-acc-")
    grants = [r for r in fake.requests if r["path"].startswith("/auth/")]
    assert [g["body"] for g in grants] == [{"apikey": "***", "grant_type": "api_key", "client_id": "IDP"}]
    assert result.catalogue == "oneatlas" and len(result.scenes) == 2


def test_empty_fields_are_not_sent(fake):
    search(parse_payload(raw_payload()), load_settings())
    body = searches(fake)[0]["body"]
    assert set(body) == {"constellation", "sortBy", "acquisitionDate", "geometry", "itemsPerPage", "startPage"}


@pytest.mark.parametrize(("page", "limit", "first", "count", "next_", "pages"), [
    (0, 0, 0, 450, False, 3),      # limit 0: every row
    (1, 7, 7, 7, True, 1),
    (2, 200, 400, 50, False, 1),   # the last page, short
    (0, 450, 0, 450, False, 3),    # exactly every row: nothing after
    (0, 449, 0, 449, True, 3),
    (0, 200, 0, 200, True, 1),     # a full provider page: the total says more exist
    (3, 200, 600, 0, False, 1),    # past the end
])
def test_paging_gives_rows_page_times_limit_and_next_as_for_cdse(fake, page, limit, first, count, next_, pages):
    ids = add_days(fake, 450)
    result = search(parse_payload(raw_payload()), load_settings(), page, limit)
    assert [s.source_id for s in result.scenes] == ids[first:first + count]
    assert result.next is next_ and result.rows == count and result.pages == pages
    assert [r["body"]["startPage"] for r in searches(fake)] == list(range(first // 200 + 1, first // 200 + 1 + pages))


def test_a_page_with_limit_zero_is_refused(fake):
    with pytest.raises(InputError, match="limit 0 returns every scene"):
        search(parse_payload(raw_payload()), load_settings(), 1, 0)
    assert searches(fake) == []


def test_footprints_are_cut_to_the_exact_aoi_and_small_intersections_dropped(fake):
    # an L-shaped AOI: its convex hull (what is sent) covers the notch, the exact AOI does not
    l_aoi = [[1.40, 43.50], [1.50, 43.50], [1.50, 43.52], [1.42, 43.52], [1.42, 43.60], [1.40, 43.60], [1.40, 43.50]]
    raw = {**raw_payload(), "coordinates": [l_aoi]}
    inside = fake.add_item("DS_PHR1A_202204021053440_FR1_PX_E001N43_0615_00001", "2022-04-02T10:53:44.012Z",
                           [(1.39, 43.49), (1.45, 43.49), (1.45, 43.53), (1.39, 43.53)])
    fake.add_item("DS_PHR1A_202204031053440_FR1_PX_E001N43_0615_00002", "2022-04-03T10:53:44.012Z",
                  footprint_around(1.47, 43.56, 0.02))  # in the notch: outside the exact AOI
    sliver = fake.add_item("DS_PHR1A_202204041053440_FR1_PX_E001N43_0615_00003", "2022-04-04T10:53:44.012Z",
                           [(1.4195, 43.53), (1.43, 43.53), (1.43, 43.55), (1.4195, 43.55)])  # ~0.5 × 2200 m inside
    result = search(parse_payload(raw), load_settings())
    assert [s.metadata["uuid"] for s in result.scenes] == [inside]
    assert result.dropped["outside the exact AOI"] == 1
    assert result.dropped["covering less than 100000 m² of the AOI"] == 1
    scene = result.scenes[0]
    exact = shapely.Polygon([(1.39, 43.49), (1.45, 43.49), (1.45, 43.53), (1.39, 43.53)]).intersection(
        shapely.Polygon(l_aoi))
    assert shapely.from_wkt(scene.wkt).equals(exact)
    assert shape(scene.metadata["geometry"]).equals(exact)
    assert sliver not in [s.metadata["uuid"] for s in result.scenes]


def test_the_minimum_area_is_geodesic_square_metres_and_a_setting(fake, monkeypatch):
    ring = [(1.4195, 43.53), (1.43, 43.53), (1.43, 43.55), (1.4195, 43.55)]
    l_aoi = [[1.40, 43.50], [1.50, 43.50], [1.50, 43.52], [1.42, 43.52], [1.42, 43.60], [1.40, 43.60], [1.40, 43.50]]
    fake.add_item("DS_PHR1A_202204041053440_FR1_PX_E001N43_0615_00003", "2022-04-04T10:53:44.012Z", ring)
    part = shapely.Polygon(ring).intersection(shapely.Polygon(l_aoi))
    metres = geodesic_area(part)
    assert 80_000 < metres < 100_000  # 0.0005° × 0.02° at 43.5°N: ~40 m × 2220 m (1e-5 "square degrees")
    monkeypatch.setenv("INGESTER_ONEATLAS_MIN_AREA", str(metres * 0.99))
    result = search(parse_payload({**raw_payload(), "coordinates": [l_aoi]}), load_settings())
    assert len(result.scenes) == 1


def test_scene_mapping_uses_the_acquisition_date_rfc3339_one_cost_tag_and_keeps_link_and_uuid(fake):
    sid = "DS_PHR1A_202204121053440_FR1_PX_E001N43_0615_01234"
    item = fake.add_item(sid, "2022-04-12T10:53:44.012Z", footprint_around(1.445, 43.601), cloud=3.5,
                         in_workspace=True, processingDate="2022-04-13T02:00:00.000Z",
                         sourceIdentifier=sid + "_SRC")
    scene = search(parse_payload(raw_payload()), load_settings()).scenes[0]
    assert scene.source_id == sid  # parentIdentifier: DS_PHR… (product-name keys, graph constellation)
    assert scene.date.isoformat() == "2022-04-12T10:53:44.012000+00:00"  # acquisition, not processing date
    assert scene.tags == {"sourceID": sid + "_SRC", "uuid": item, "ingestionDate": "2022-04-12T10:53:44.012Z",
                          "productType": "bundle", "constellation": "PHR", "satellite": "PHR1A",
                          "cloudCoverPercentage": "3.5", "aoiCoverage": "1.0000", "area": "Toulouse"}
    assert scene.metadata["uuid"] == item and scene.metadata["catalogue"] == "oneatlas"
    assert scene.metadata["download_link"] == f"{fake.base}/api/v1/items/{item}/download"
    assert scene.metadata["quicklook"].endswith(f"/items/{item}/quicklook")
    assert scene.metadata["processingDate"] == "2022-04-13T02:00:00.000Z"  # every property is kept
    assert scene.graph_name == "PhrPreProcessing"


def test_the_client_checks_the_filters_again(fake):
    add_days(fake, 1, cloud=50.0)
    fake.add_item("DS_SPOT6_202204021032150_FR1_FR1_FR1_FR1_E001N43_01234", "2022-04-02T10:32:15.000Z",
                  footprint_around(1.445, 43.601), constellation="SPOT")
    import warnings

    from ingester.catalogue import oneatlas as cat

    original = fake.search
    fake.search = lambda body: original({k: v for k, v in body.items() if k not in ("cloudCover", "constellation")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cat.search(parse_payload(raw_payload(cloudCover="[0,20]")), load_settings())
    assert result.scenes == []
    assert any("excluded by cloudCover=[0,20]" in str(w.message) for w in caught)
    assert any("excluded by constellation=PHR" in str(w.message) for w in caught)


def test_spot_payloads_search_the_spot_constellation(fake):
    fake.add_item("DS_SPOT6_202204021032150_FR1_FR1_FR1_FR1_E001N43_01234", "2022-04-02T10:32:15.000Z",
                  footprint_around(1.445, 43.601), constellation="SPOT", platform="SPOT6")
    raw = raw_payload()
    raw["scene_type"]["constellation"] = "spot"
    result = search(parse_payload(raw), load_settings())
    assert searches(fake)[0]["body"]["constellation"] == "SPOT"
    assert [s.tags["satellite"] for s in result.scenes] == ["SPOT6"]


def test_without_an_api_key_the_search_is_an_input_error_naming_the_setting(fake, monkeypatch):
    monkeypatch.delenv("INGESTER_ONEATLAS_API_KEY")
    with pytest.raises(InputError, match="no API key: set INGESTER_ONEATLAS_API_KEY, or a ~/.netrc entry for "
                                         "127.0.0.1"):
        search(parse_payload(raw_payload()), load_settings())
    assert fake.requests == []


def test_the_api_key_may_come_from_netrc_for_the_authentication_host(fake, monkeypatch):
    monkeypatch.delenv("INGESTER_ONEATLAS_API_KEY")
    netrc = Path.home() / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login APIKEY password {fake.api_key}\n")
    netrc.chmod(0o600)
    add_days(fake, 1)
    assert len(search(parse_payload(raw_payload()), load_settings()).scenes) == 1
    assert fake.grants == [("api_key", True)]


def test_a_refused_api_key_is_never_sent_twice_by_a_process(fake):
    manager = oneatlas.ApiKeyTokens(fake.auth_url, "wrong-key-123")
    for _ in range(3):
        with pytest.raises(CredentialsRefused, match="refused the API key"):
            manager.current()
    assert fake.grants == [("api_key", False)]
    assert "wrong-key-123" not in repr(manager)


def test_the_token_is_renewed_before_it_expires_and_after_a_401(fake):
    settings = load_settings()
    add_days(fake, 1)
    now = [1000.0]
    clients = Clients()  # one command's: its searches share the login
    manager = oneatlas.login_manager(settings, clients)
    manager.clock = lambda: now[0]
    search(parse_payload(raw_payload()), settings, clients=clients)
    assert fake.grants == [("api_key", True)]
    now[0] += 3600 - 30  # inside the last minute of the hour: renewed before use
    search(parse_payload(raw_payload()), settings, clients=clients)
    assert len(fake.grants) == 2
    fake.revoke_tokens()  # the server drops the token early: 401, one new grant, the request sent again
    assert len(search(parse_payload(raw_payload()), settings, clients=clients).scenes) == 1
    assert len(fake.grants) == 3
    statuses = [r["authorization"] for r in searches(fake)]
    assert len(statuses) == 4 and len(set(statuses)) == 3


def test_scenes_estimate_writes_each_cost_the_total_and_the_balance(fake, cli, tmp_path):
    add_days(fake, 3)
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(raw_payload()))
    r = cli("scenes", payload, "--estimate", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    doc = json.loads(Path("outputs/scenes.json").read_text())
    costs = [f["properties"]["tags"]["estimatedCost"] for f in doc["features"]]
    assert costs == ["12", "12", "12"]
    assert {f["properties"]["tags"]["amountUnit"] for f in doc["features"]} == {"credits"}
    assert doc["properties"] == {"amountUnit": "credits", "globalEstimatedCost": "36", "next": "false"}
    assert summary["estimate"]["total"] == 36 and summary["estimate"]["balance"] == 10000
    assert "estimated cost 36 credits for 3 product(s); balance 10000 credits" in r.stderr
    assert not any(r["path"] == "/api/v1/orders" and r["method"] == "POST" for r in fake.requests)
    prices = [r["body"] for r in fake.requests if r["path"] == "/api/v1/prices"]
    assert len(prices) == 1 and prices[0]["kind"] == "order.data.product" and len(prices[0]["products"]) == 3
    assert {p["productType"] for p in prices[0]["products"]} == {"bundle"}
    assert all(shape(p["aoi"]).equals(shapely.Polygon(AOI)) for p in prices[0]["products"])


def test_a_product_already_ordered_costs_nothing_more_in_the_estimate(fake, cli, tmp_path):
    add_days(fake, 2)
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(raw_payload(GetPrice="true")))  # the original's parameter: same as --estimate
    scene = search(parse_payload(raw_payload()), load_settings()).scenes[0]
    fake.create_order({"kind": "order.data.product",
                       "products": [oneatlas.order_product(scene.metadata, scene.source_id)]})
    r = cli("scenes", payload)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(Path("outputs/scenes.json").read_text())
    assert [f["properties"]["tags"]["estimatedCost"] for f in doc["features"]] == ["0", "12"]
    assert doc["properties"]["globalEstimatedCost"] == "12"
    assert "(1 already ordered: no new cost)" in r.stderr


def test_estimate_is_for_oneatlas_payloads_only(cli, repo, tmp_path):
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "s2.json"))
    r = cli("scenes", payload, "--estimate")
    assert r.exit_code == 2 and "only OneAtlas scenes" in r.stderr


def test_oneatlas_parameters_are_checked_when_the_payload_is_loaded(cli, tmp_path):
    payload = tmp_path / "p.json"
    for params, message in (({"cloudcover": "[0,20]"}, "did you mean 'cloudCover'"),
                            ({"cloudCover": "0-20"}, "must be a range '[min,max]'"),
                            ({"maxCost": "lots"}, "must be a number ≥ 0"),
                            ({"order": "yes"}, 'must be "true" or "false"')):
        payload.write_text(json.dumps(raw_payload(**params)))
        r = cli("scenes", payload)
        assert r.exit_code == 2 and message in r.stderr, (params, r.stderr)


def test_config_shows_the_api_key_from_netrc_masked(cli, monkeypatch):
    monkeypatch.setenv("INGESTER_ONEATLAS_AUTH_URL", "https://authenticate.example.test/auth/realms/IDP/token")
    netrc = Path.home() / ".netrc"
    netrc.write_text("machine authenticate.example.test login APIKEY password key-from-netrc-99\n")
    netrc.chmod(0o600)
    r = cli("config", "--json")
    assert r.exit_code == 0, r.stderr
    item = next(i for i in json.loads(r.stdout) if i["name"] == "oneatlas_api_key")
    assert (item["value"], item["source"]) == ("***", "netrc") and "authenticate.example.test" in item["origin"]
    assert "key-from-netrc-99" not in r.stdout + r.stderr


def test_oneatlas_listed_without_an_api_key_is_exit_2_before_anything(cli, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTER_PROVIDERS", "local,oneatlas")
    payload = Path(shutil.copy(repo / "payloads" / "toulouse-phr.json", tmp_path / "p.json"))
    r = cli("aoi", payload, "--scenes", tmp_path / "none.json")
    assert r.exit_code == 2 and "oneatlas is listed but has no API key" in r.stderr
    assert not Path("outputs").exists()


def test_a_refused_api_key_is_exit_2_for_scenes_and_for_the_pre_flight_of_aoi(fake, cli, repo, tmp_path, monkeypatch):
    payload = Path(shutil.copy(repo / "payloads" / "toulouse-phr.json", tmp_path / "p.json"))
    add_days(fake, 1)
    assert cli("scenes", payload).exit_code == 0
    monkeypatch.setenv("INGESTER_ONEATLAS_API_KEY", "revoked-key-000")
    r = cli("scenes", payload, "-o", tmp_path / "again.json")
    assert r.exit_code == 2 and "refused the API key" in r.stderr and "revoked-key-000" not in r.stderr
    r = cli("aoi", payload, "--scenes", "outputs/scenes.json", "--create-layers")
    assert r.exit_code == 2 and "pre-flight check failed" in r.stderr and "refused the API key" in r.stderr
    assert not Path("outputs/ingester.db").exists()
    assert [g for g in fake.grants if not g[1]] == [("api_key", False), ("api_key", False)]  # one per process


def test_refresh_is_refused_for_a_oneatlas_scene(cli, fake, repo, tmp_path):
    from ingester.store import Store

    payload = Path(shutil.copy(repo / "payloads" / "toulouse-phr.json", tmp_path / "p.json"))
    add_days(fake, 1)
    assert cli("aoi", payload, "--create-layers", "--max-wait", "0").exit_code in (4, 5)  # no --order: an error
    with Store("outputs/ingester.db") as st:
        assert st.one("SELECT count(*) FROM scene") == 1
    r = cli("refresh", "--scene", "1")
    assert r.exit_code == 2 and "comes from OneAtlas" in r.stderr and "ingester retry --scene 1" in r.stderr


def test_a_server_that_pages_by_fewer_rows_than_asked_is_followed_in_its_own_size(fake):
    ids = add_days(fake, 250)
    original = fake.search

    def capped(body):  # a server whose pages hold at most 100 rows, whatever is asked
        status, answer = original({**body, "itemsPerPage": min(int(body["itemsPerPage"]), 100)})
        return status, answer

    fake.search = capped
    everything = search(parse_payload(raw_payload()), load_settings())
    assert [s.source_id for s in everything.scenes] == ids and everything.next is False
    fake.requests.clear()
    result = search(parse_payload(raw_payload()), load_settings(), 1, 120)  # rows 120 … 239
    assert [s.source_id for s in result.scenes] == ids[120:240] and result.next is True
    assert [r["body"]["startPage"] for r in searches(fake)] == [1, 2, 3]  # page 1 is the same in any size
    fake.requests.clear()
    result = search(parse_payload(raw_payload()), load_settings(), 20, 10)  # rows 200 … 209
    assert [s.source_id for s in result.scenes] == ids[200:210] and result.next is True
    assert [r["body"]["startPage"] for r in searches(fake)] == [2, 3]  # page 2 of 200 re-asked as page 3 of 100


def test_oneatlas_scenes_carry_their_coverage_of_the_aoi_and_min_coverage_drops_the_small_ones(fake):
    """Like every catalogue: `aoiCoverage` is the geodesic share of the AOI each footprint covers (measured
    here with pyproj directly), and the payload's `min_coverage` drops those covering less."""
    from pyproj import Geod

    aoi = shapely.Polygon(AOI)
    west, south, east, north = aoi.bounds
    rings = [[(west - 0.01, south - 0.01), (west + (east - west) * k / 3, south - 0.01),
              (west + (east - west) * k / 3, north + 0.01), (west - 0.01, north + 0.01)] for k in (1, 2, 3)]
    ids = [fake.add_item(PHR.format(datetime(2022, 4, 2 + k, 10, 53, 44), k), f"2022-04-{2 + k:02d}T10:53:44.012Z",
                         ring) for k, ring in enumerate(rings)]
    geod = Geod(ellps="WGS84")
    shares = [abs(geod.geometry_area_perimeter(shapely.Polygon(r).intersection(aoi))[0])
              / abs(geod.geometry_area_perimeter(aoi)[0]) for r in rings]
    assert 0.3 < shares[0] < 0.4 and shares[2] == pytest.approx(1.0)

    result = search(parse_payload(raw_payload()), load_settings())
    assert [s.metadata["uuid"] for s in result.scenes] == ids
    assert [s.tags["aoiCoverage"] for s in result.scenes] == [f"{x:.4f}" for x in shares]
    kept = search(parse_payload({**raw_payload(), "min_coverage": 0.5}), load_settings())
    assert [s.metadata["uuid"] for s in kept.scenes] == ids[1:]
    assert kept.dropped["below min_coverage"] == 1
