"""OneAtlas orders end to end, against the fake OneAtlas and the small DIMAP products of tests/data:
`ingester aoi --order --max-cost` through delivered orders to indexed MS/P datasets and STAC Items;
what is never ordered (no permission, over budget); one order per product, also after a crash right
after ordering; orders being processed defer their jobs (exit 5); failed orders are the job's error;
one login per run, the API key never handed to a job."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pystac
import pytest
import rasterio

from ingester import oneatlas
from ingester.http import Clients
from ingester.store import Store
from tests.conftest import subprocess_env
from tests.fakes.oneatlas import PHR, FakeOneAtlas, add_scenes, footprint_around, product_zip
from tests.fakes.stac_schemas import offline_validation

AOI = "ToulousePHR"
DB = "outputs/ingester.db"


@pytest.fixture
def fake(monkeypatch):
    with FakeOneAtlas() as server:
        for key, value in {**server.env(), "INGESTER_RETRY_BACKOFF": "0", "INGESTER_ONEATLAS_ORDER_RECHECK": "0.2",
                           "INGESTER_WORKERS": "2"}.items():
            monkeypatch.setenv(key, value)
        yield server


@pytest.fixture
def payload(repo, tmp_path) -> Path:
    return Path(shutil.copy(repo / "payloads" / "toulouse-phr.json", tmp_path / "toulouse-phr.json"))


def posted_orders(fake: FakeOneAtlas) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/api/v1/orders"]


def test_aoi_order_ends_with_indexed_ms_and_p_datasets_and_stac_items(cli, fake, payload, tmp_path):
    ids = add_scenes(fake, 2)
    r = cli("aoi", payload, "--order", "--max-cost", "30", "--create-layers", "--max-wait", "60")
    assert r.exit_code == 0, r.stderr
    assert "ordering allowed by --order: OneAtlas estimated cost 24 credits for 2 product(s)" in r.stderr
    assert "within the budget of 30" in r.stderr
    assert len(fake.orders) == 2 and {o["deliveries"][0]["datas"]["id"] for o in fake.orders} == set(ids)
    assert all(o["deliveries"][0]["status"] == "delivered" for o in fake.orders)
    bodies = [r["body"] for r in posted_orders(fake)]
    assert all(b["kind"] == "order.data.product" and b["products"][0]["productType"] == "bundle" for b in bodies)
    downloads = [r for r in fake.requests if r["path"].endswith("/download")]
    assert len(downloads) == 2 and all(d["authorization"].startswith("Bearer oa-acc-") for d in downloads)
    assert fake.balance == 10000 - 24

    listed = cli("datasets", AOI, "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((r["layer"], r["tile"]) for r in rows) == sorted((layer, PHR.format(i, i)) for i in range(2)
                                                                    for layer in ("MS", "P"))
    assert {r["dformat"]["dtype"] for r in rows} == {"int16"} and {r["dformat"]["max"] for r in rows} == {32767}
    ms = next(r for r in rows if r["layer"] == "MS")
    with rasterio.open(ms["uri"]) as ds:
        assert ds.count == 4 and ds.dtypes[0] == "int16"

    out = cli("stac", AOI, "-o", tmp_path / "stac")
    assert out.exit_code == 0, out.stderr
    collection = pystac.Collection.from_file(out.stdout.strip())
    with offline_validation():
        collection.validate()
        assert collection.validate_all() == 2
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == sorted(f"2022041{i}_{PHR.format(i, i)}" for i in range(2))
    assert all(set(i.assets) == {"MS", "P"} for i in items)
    assert len(items[0].assets["MS"].extra_fields["raster:bands"]) == 4


def test_an_over_budget_ingestion_orders_nothing_and_writes_nothing(cli, fake, payload):
    add_scenes(fake, 3)
    r = cli("aoi", payload, "--order", "--max-cost", "30", "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert "refused before any order: the 3 product(s) to order are estimated at 36 credits, above the budget of 30" \
        in r.stderr
    assert posted_orders(fake) == [] and not Path(DB).exists()
    assert not any(r["path"].endswith("/download") for r in fake.requests)


def test_the_payload_budget_applies_when_the_command_gives_none(cli, fake, payload):
    add_scenes(fake, 5)  # 60 credits, the payload's maxCost is 50
    r = cli("aoi", payload, "--order", "--create-layers")
    assert r.exit_code == 2 and "above the budget of 50" in r.stderr
    assert posted_orders(fake) == []


def test_without_order_nothing_is_ordered_and_the_job_says_how_to_allow_it(cli, fake, payload):
    add_scenes(fake, 1)
    r = cli("aoi", payload, "--create-layers", "--max-wait", "0")
    assert r.exit_code == 4, r.stderr
    assert posted_orders(fake) == [] and not any(r["path"] == "/api/v1/prices" for r in fake.requests)
    with Store(DB) as st:
        status, message = st.execute("SELECT status, message FROM scene").fetchone()
    assert status == "RETRY"
    assert "must be ordered, which costs credits, and ordering is not allowed" in message
    assert "`ingester aoi PAYLOAD --order --max-cost N`" in message


def test_max_cost_without_order_is_refused(cli, fake, payload):
    r = cli("aoi", payload, "--max-cost", "10")
    assert r.exit_code == 2 and "give --order too" in r.stderr
    assert fake.requests == []


def test_an_order_being_processed_defers_its_job_and_later_runs_finish_it(cli, fake, payload, monkeypatch):
    monkeypatch.setenv("INGESTER_ONEATLAS_ORDER_RECHECK", "900")
    add_scenes(fake, 1)
    first = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "0", "--json")
    assert first.exit_code == 5, first.stderr
    report = json.loads(first.stdout)
    assert report["deferred"]["total"] == 1 and report["unfinished"]["scene_retry"] == 0
    assert "OneAtlas is processing it" in report["deferred"]["jobs"][0]["message"]
    status = cli("status", AOI)
    assert "Deferred: 1 job(s)" in status.stderr + status.stdout
    codes = []
    for _ in range(4):  # ordered → processing → delivered, one state per look at the orders
        r = cli("retry", AOI, "--max-wait", "0")
        codes.append(r.exit_code)
        if r.exit_code == 0:
            break
    assert codes[-1] == 0 and set(codes[:-1]) <= {5}, codes
    assert len(posted_orders(fake)) == 1
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM dataset") == 2
        assert st.one("SELECT count(*) FROM job_attempt WHERE outcome IN ('error', 'temporary')") == 0


def test_a_failed_order_is_the_jobs_error_with_oneatlas_message(cli, fake, payload):
    (item,) = add_scenes(fake, 1)
    fake.failures[item] = ("failed", "Acquisition not processable: cloud cover above the threshold", "PRD-042")
    r = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "30")
    assert r.exit_code == 4, r.stderr
    with Store(DB) as st:
        status, message = st.execute("SELECT status, message FROM scene").fetchone()
    assert status == "RETRY"
    assert "is failed: Acquisition not processable: cloud cover above the threshold (error code PRD-042)" in message
    assert len(posted_orders(fake)) == 1  # the retry found the failed order: never ordered again by the tool


def test_a_product_already_in_the_workspace_is_downloaded_without_an_order(cli, fake, payload):
    add_scenes(fake, 1, in_workspace=True)
    r = cli("aoi", payload, "--create-layers", "--max-wait", "0")  # no --order needed: nothing to buy
    assert r.exit_code == 0, r.stderr
    assert posted_orders(fake) == [] and fake.orders == []
    assert [r["path"] for r in fake.requests if r["path"].endswith("/download")] != []


def test_spot_through_oneatlas_ends_with_ms_and_p(cli, fake, tmp_path):
    raw = json.loads(Path(__file__).resolve().parent.parent.joinpath("payloads", "toulouse-phr.json").read_text())
    raw.update(name="ToulouseSPOT", scene_graph_name="SpotPreProcessing", tile_graph_name="SpotProcessing")
    raw["scene_type"]["constellation"] = "spot"
    payload = tmp_path / "spot.json"
    payload.write_text(json.dumps(raw))
    fake.add_item("DS_SPOT6_202204131032150_FR1_FR1_FR1_FR1_E001N43_01234", "2022-04-13T10:32:15.000Z",
                  footprint_around(1.445, 43.601), constellation="SPOT", platform="SPOT6", product=product_zip("SPOT"))
    r = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "60")
    assert r.exit_code == 0, r.stderr
    with Store(DB) as st:
        names = st.execute("SELECT i.name FROM dataset d JOIN instance i ON i.id = d.instance_id").fetchall()
        assert sorted(x for (x,) in names) == ["reflectance", "reflectance"]
        assert st.one("SELECT count(*) FROM dataset") == 2


def test_a_crash_right_after_ordering_does_not_order_twice(cli, fake, payload, tmp_path):
    """The run is killed (SIGKILL, with its workers) while OneAtlas records the order, before the answer
    reaches the job and anything reaches the store; the next run finds that order and orders nothing."""
    add_scenes(fake, 1)
    env = subprocess_env({**{k: v for k, v in os.environ.items() if k.startswith("INGESTER_")},
                          "HOME": str(Path.home()), "NETRC": str(Path.home() / ".netrc")})
    proc = subprocess.Popen([sys.executable, "-m", "ingester", "aoi", str(payload), "--order", "--create-layers",
                             "--max-wait", "60", "--quiet"], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def crash(_order: dict) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.5)  # the answer leaves after the client is gone

    fake.on_order = crash
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    fake.on_order = None
    assert len(fake.orders) == 1
    with Store(DB) as st:  # the store knows nothing of the order: the attempt was still running
        assert st.one("SELECT count(*) FROM job_attempt WHERE finished_at IS NULL") == 1
    r = cli("run", AOI, "--max-wait", "60")
    assert r.exit_code == 0, r.stderr
    assert len(fake.orders) == 1 and len(posted_orders(fake)) == 1
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM dataset") == 2


def test_one_login_per_run_shared_by_the_workers_and_jobs_carry_a_token_never_the_key(cli, fake, payload, tmp_path):
    add_scenes(fake, 3)
    r = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "60", "--workers", "3")
    assert r.exit_code == 0, r.stderr
    assert fake.grants == [("api_key", True)]  # search, estimate, orders, downloads: one login

    from ingester.config import load_settings
    from ingester.coordinator import Coordinator
    from ingester.http.tokens import worker_settings

    settings = load_settings()
    with Store(DB) as st:
        job = Coordinator(st, AOI, settings).scene_job(1, 9)
    data = pickle.dumps(job)
    assert fake.api_key.encode() not in data and fake.api_key not in repr(job)
    assert job.tokens["oneatlas"].value.encode() in data and job.tokens["oneatlas"].value not in repr(job)
    assert fake.api_key not in repr(pickle.dumps(worker_settings(settings)))
    assert job.scene.metadata["order"] == {"allowed": True, "capped": True, "approved_cost": 12.0, "unit": "credits"}


def test_an_existing_order_is_found_by_product_area_and_options_whatever_the_server_rounds():
    from ingester.oneatlas import find_order, order_product

    area = {"type": "Polygon", "coordinates": [[[1.438, 43.5965], [1.452, 43.5965], [1.452, 43.6055],
                                                 [1.438, 43.6055], [1.438, 43.5965]]]}
    product = order_product({"uuid": "ABC-1", "geometry": area}, "S")
    rounded = {"type": "Polygon", "coordinates": [[[x + 4e-7, y] for x, y in reversed(area["coordinates"][0])]]}
    other = {"type": "Polygon", "coordinates": [[[1.438, 43.5965], [1.46, 43.5965], [1.452, 43.6055],
                                                  [1.438, 43.5965]]]}

    def order(oid: str, status: str, aoi: dict, updated: str, **datas) -> dict:
        return {"id": oid, "status": status, "deliveries": [
            {"status": status, "updatedAt": updated, "datas": {**product, "id": "abc-1", "aoi": aoi, **datas}}]}

    orders = [order("o1", "failed", area, "2022-05-01"), order("o2", "delivered", rounded, "2022-04-01"),
              order("o3", "processing", other, "2022-06-01"),
              order("o4", "ordered", area, "2022-06-02", radiometricProcessing="DISPLAY")]
    found = find_order(orders, product)
    assert found is not None and found[0]["id"] == "o2"  # delivered wins; another area or option is not it
    assert find_order(orders[:1], product)[0]["id"] == "o1"  # a given-up order is found too (never ordered again)
    assert find_order(orders[2:], product) is None


def test_short_lived_tokens_are_renewed_by_the_coordinator_for_the_workers(cli, payload, monkeypatch):
    """Tokens of 2 s over a run of several seconds: the workers (which hold no key) get fresh tokens from
    the coordinator; every grant is the coordinator's, all of them accepted."""
    with FakeOneAtlas(expires_in=2) as fake:
        for key, value in {**fake.env(), "INGESTER_RETRY_BACKOFF": "0", "INGESTER_ONEATLAS_ORDER_RECHECK": "0.7",
                           "INGESTER_WORKERS": "2"}.items():
            monkeypatch.setenv(key, value)
        add_scenes(fake, 2)
        started = time.monotonic()
        r = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "60")
        assert r.exit_code == 0, r.stderr
        assert time.monotonic() - started > 2.5
        assert len(fake.grants) >= 2 and all(granted for _, granted in fake.grants)
        calls = [q for q in fake.requests if not q["path"].startswith("/auth/")]
        assert len({q["authorization"] for q in calls}) >= 2  # later calls carried renewed tokens
        assert not any(q["authorization"] is None for q in calls)


def test_the_orders_listing_is_read_to_its_end_even_when_the_server_pages_by_fewer(fake, monkeypatch):
    """130 orders of other products, then ours, on a server that serves at most 50 per page: the listing
    is read to `totalResults` and our order is found (missing it would order twice)."""
    from ingester.config import load_settings
    from ingester.oneatlas import find_order, iter_orders, order_product

    items = add_scenes(fake, 2)
    area = {"type": "Polygon", "coordinates": [[[1.44, 43.597], [1.45, 43.597], [1.45, 43.605], [1.44, 43.605],
                                                 [1.44, 43.597]]]}
    for _ in range(130):
        fake.create_order({"kind": "order.data.product", "products": [order_product({"uuid": items[0],
                                                                                     "geometry": area}, "x")]})
    ours = order_product({"uuid": items[1], "geometry": area}, "y")
    fake.create_order({"kind": "order.data.product", "products": [ours]})
    original = fake.list_orders
    monkeypatch.setattr(fake, "list_orders", lambda q: original({**q, "itemsPerPage": [str(min(
        int(q["itemsPerPage"][0]), 50))]}))
    found = find_order(iter_orders(oneatlas.service(load_settings(), Clients(), "order")), ours)
    assert found is not None and found[1]["datas"]["id"] == items[1]
    pages = [r["path"] for r in fake.requests if r["path"].startswith("/api/v1/orders?")]
    assert [p.split("&", 1)[1] for p in pages] == ["itemsPerPage=100&page=1", "itemsPerPage=50&page=2",
                                                   "itemsPerPage=50&page=3"]  # then in the server's size


def test_a_dropped_delivery_download_is_resumed_with_range(cli, fake, payload):
    add_scenes(fake, 1)
    fake.drop_after = [5_000]
    r = cli("aoi", payload, "--order", "--create-layers", "--max-wait", "60")
    assert r.exit_code == 0, r.stderr
    downloads = [q for q in fake.requests if q["path"].endswith("/download")]
    assert [d["range"] for d in downloads] == [None, "bytes=5000-"]  # the rest, after the drop
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM dataset") == 2


def test_two_jobs_needing_the_same_product_at_once_order_it_once(fake, tmp_path):
    """Two runs (here two threads) need the same product over the same area at the same moment; the
    listing is slow, so both would see no order: the per-product lock lets one look and order first."""
    import threading

    from ingester.config import load_settings
    from ingester.errors import Deferred
    from ingester.providers.oneatlas import OneAtlasProvider
    from ingester.scenes import Scene
    from ingester.times import parse_time

    (item,) = add_scenes(fake, 1)
    area = {"type": "Polygon", "coordinates": [[[1.44, 43.597], [1.45, 43.597], [1.45, 43.605], [1.44, 43.605],
                                                 [1.44, 43.597]]]}
    scene = Scene(PHR.format(0, 0), AOI, parse_time("2022-04-10T10:53:44Z"), "POLYGON ((1 43, 2 43, 2 44, 1 43))",
                  metadata={"catalogue": "oneatlas", "uuid": item, "geometry": area, "order": {"allowed": True}})
    fake.list_delay = 0.3
    settings = load_settings()
    outcomes: list[str] = []

    def job(n: int) -> None:
        work = tmp_path / f"job{n}"
        work.mkdir()
        try:
            OneAtlasProvider(settings).fetch(scene, work)
        except Deferred as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 2 and len(fake.orders) == 1
    assert sum("ordered " in o for o in outcomes) == 1 and sum("is ordered" in o for o in outcomes) == 1
