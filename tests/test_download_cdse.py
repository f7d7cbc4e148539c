"""CDSE downloads against a fake token + download service on 127.0.0.1: redirects, tokens, Range
resume, verification, 429/Retry-After, 401, quotas across processes, offline products."""

from __future__ import annotations

import multiprocessing
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.http import Clients, TokenManager
from ingester.jobs import SceneJob
from ingester.providers import cdse
from ingester.providers.worker import run_scene_job
from ingester.scenes import Scene
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, checksums, zip_safe


@pytest.fixture(scope="module")
def product(tmp_path_factory) -> bytes:
    from tests.conftest import TESTDATA

    return zip_safe(TESTDATA / "s2" / f"{S2_ID}.SAFE")


@pytest.fixture
def zipper():
    with FakeCdse("127.0.0.1") as fake:
        yield fake


@pytest.fixture
def catalogue(zipper):
    """The catalogue host (another name, another port) that redirects `$value` to the zipper."""
    with FakeCdse("localhost") as fake:
        fake.redirect_to = zipper.base
        fake.entities_from = zipper  # it answers Products(<id>) about the zipper's products
        yield fake


def make_settings(tmp_path: Path, zipper: FakeCdse, catalogue: FakeCdse | None = None, **kw) -> Settings:
    values = dict(
        cdse_download_url=(catalogue or zipper).odata,
        cdse_catalogue_url=(catalogue or zipper).odata,
        cdse_token_url=zipper.token_url,
        cdse_username=zipper.username,
        cdse_password=zipper.password,
        workdir=str(tmp_path / "work"),
        storage_uri=str(tmp_path / "storage"),
        providers="cdse",
        http_retries=3,
        http_backoff=0.001,
    )
    values.update(kw)
    return Settings(**values)


def make_job(tmp_path: Path, product_id: str, data: bytes | None, *, scene_id: str = S2_ID, attempt: int = 1,
             metadata: dict | None = None, graph: str = "CopyProductToStorage") -> SceneJob:
    meta = {"uuid": product_id}
    if data is not None:
        meta.update({"checksum": checksums(data), "content_length": len(data), "online": True})
    meta.update(metadata or {})
    scene = Scene(source_id=scene_id, aoi="denmark", date=datetime(2018, 1, 1, tzinfo=UTC),
                  wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name=graph, metadata=meta)
    return SceneJob(job_id=1, attempt=attempt, aoi="denmark", scene=scene, storage_uri=str(tmp_path / "storage"),
                    workdir=str(tmp_path / "work" / f"job-{scene_id}-{attempt}"))


def stored(tmp_path: Path, scene_id: str = S2_ID) -> Path:
    return tmp_path / "storage" / "denmark" / scene_id / "tiles" / scene_id / f"{scene_id}.zip"


def value_gets(fake: FakeCdse) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "GET" and "$value" in r["path"]]


def test_product_is_fetched_through_the_catalogue_redirect_verified_and_stored_once(
        tmp_path, product, zipper, catalogue):
    pid = zipper.add_product(product)
    settings = make_settings(tmp_path, zipper, catalogue)
    result = run_scene_job(make_job(tmp_path, pid, product), settings)
    assert result.outcome == "done", result.message
    assert "downloaded from cdse" in result.message and "blake3" in result.message
    assert stored(tmp_path).read_bytes() == product
    with zipfile.ZipFile(stored(tmp_path)) as zf:
        assert f"{S2_ID}.SAFE/MTD_MSIL1C.xml" in zf.namelist()
    sidecar = Path(f"{stored(tmp_path)}.verified.json")
    assert sidecar.exists() and '"checked": "blake3"' in sidecar.read_text()
    # the bearer token went to the catalogue host and, after the redirect, to the zipper host
    assert [r["authorization"] is not None for r in value_gets(catalogue)] == [True]
    assert [r["authorization"] is not None for r in value_gets(zipper)] == [True]
    assert zipper.logins == 1
    assert not (tmp_path / "work" / f"job-{S2_ID}-1").exists()  # work directory always cleaned

    again = run_scene_job(make_job(tmp_path, pid, product, attempt=2), settings)
    assert again.outcome == "done" and "nothing downloaded" in again.message
    assert len(value_gets(zipper)) == 1 and len(value_gets(catalogue)) == 1


def test_token_is_not_sent_to_a_foreign_host_after_a_redirect(tmp_path, product, zipper):
    with FakeCdse("127.0.0.2") as foreign:
        foreign.add_product(product, "0b5a3c2e-0000-4000-8000-000000000001")
        zipper.redirect_to = foreign.base
        zipper.entities_from = foreign
        settings = make_settings(tmp_path, zipper)
        result = run_scene_job(make_job(tmp_path, "0b5a3c2e-0000-4000-8000-000000000001", product), settings)
        assert value_gets(foreign), "the redirect was not followed"
        assert all(r["authorization"] is None for r in foreign.requests)
        assert all(r["authorization"] is not None for r in value_gets(zipper))
    assert result.outcome == "error"
    assert "401" in result.message and "Not authenticated" in result.message


def test_dropped_connection_resumes_with_range_and_the_product_is_complete(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.drop_after = [300_000, 700_000]
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "done", result.message
    ranges = [r["range"] for r in value_gets(zipper)]
    assert ranges[0] is None
    assert ranges[1] == "bytes=300000-"
    assert ranges[2] == "bytes=1000000-"
    assert stored(tmp_path).read_bytes() == product


def test_server_ignoring_range_restarts_from_zero_and_still_verifies(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.drop_after = [200_000]
    zipper.ignore_range = True
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "done", result.message
    assert stored(tmp_path).read_bytes() == product


def test_token_expiring_mid_download_is_refreshed_and_the_download_resumes(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.drop_after = [500_000]
    zipper.revoke_on_drop = True
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "done", result.message
    assert zipper.logins == 1 and zipper.refreshes == 1  # refresh grant, not a second login
    statuses = [r["range"] for r in value_gets(zipper)]
    assert statuses[-1] == "bytes=500000-"
    assert stored(tmp_path).read_bytes() == product


def test_access_token_is_refreshed_before_expiry_and_shared_by_jobs(tmp_path, product, zipper):
    clock = [1000.0]
    settings = make_settings(tmp_path, zipper)
    clients = Clients()  # the jobs of one run share its clients (and their login)
    clients.add_token_manager(TokenManager(settings.cdse_token_url, zipper.username, zipper.password,
                                           clock=lambda: clock[0]))
    pids = [zipper.add_product(product) for _ in range(3)]
    scenes = [S2_ID, S2_ID.replace("T31TDH", "T31TDJ"), S2_ID.replace("T31TDH", "T31TDK")]

    def run(i: int) -> str:
        return run_scene_job(make_job(tmp_path, pids[i], product, scene_id=scenes[i]), settings,
                             clients=clients).outcome

    assert run(0) == "done"
    assert run(1) == "done"
    assert (zipper.logins, zipper.refreshes) == (1, 0)  # one token for both jobs
    clock[0] += 560  # 10-minute token, 60 s margin: time to refresh
    assert run(2) == "done"
    assert (zipper.logins, zipper.refreshes) == (1, 1)


def test_corrupted_body_is_deleted_and_fetched_again(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.corrupt_next = 1
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "done", result.message
    assert len(value_gets(zipper)) == 2
    assert stored(tmp_path).read_bytes() == product


def test_a_product_that_never_verifies_fails_with_the_checksum_message_and_nothing_stored(
        tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.corrupt_next = 100
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "error"
    assert "BLAKE3 checksum mismatch" in result.message and "cdse:" in result.message
    assert len(value_gets(zipper)) == 3  # bounded re-fetches
    assert not (tmp_path / "storage").exists()


def test_md5_only_and_size_only_verification(tmp_path, product, zipper):
    import hashlib

    pid = zipper.add_product(product)
    md5 = {"checksum": [{"Algorithm": "MD5", "Value": hashlib.md5(product).hexdigest()}]}
    job = make_job(tmp_path, pid, None, metadata=md5)
    result = run_scene_job(job, make_settings(tmp_path, zipper))
    assert result.outcome == "done" and "md5" in result.message
    zipper.corrupt_next = 100
    bad = make_job(tmp_path, pid, None, scene_id=S2_ID.replace("T31TDH", "T31TDJ"),
                   metadata={"content_length": len(product) + 1})
    result = run_scene_job(bad, make_settings(tmp_path, zipper))
    assert result.outcome == "error" and "size mismatch" in result.message


def test_429_honours_retry_after(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.throttle_next = [7]
    settings = make_settings(tmp_path, zipper)
    waits: list[float] = []
    clients = Clients()
    cdse.download_service(settings, clients).sleep = waits.append
    result = run_scene_job(make_job(tmp_path, pid, product), settings, clients=clients)
    assert result.outcome == "done", result.message
    assert waits == [7.0]


def test_persistent_429_is_a_temporary_outcome(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.throttle_next = [0] * 100
    settings = make_settings(tmp_path, zipper)
    clients = Clients()
    cdse.download_service(settings, clients).sleep = lambda s: None
    result = run_scene_job(make_job(tmp_path, pid, product), settings, clients=clients)
    assert result.outcome == "temporary"
    assert "429" in result.message and "Too Many Requests" in result.message


def test_401_refreshes_the_token_once_and_retries(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.unauthorized_next = 1
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "done", result.message
    assert zipper.logins + zipper.refreshes == 2


def test_wrong_password_is_an_error_naming_the_token_endpoint(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    settings = make_settings(tmp_path, zipper, cdse_password="wrong-password")
    result = run_scene_job(make_job(tmp_path, pid, product), settings)
    assert result.outcome == "error"
    assert "refused the account" in result.message and "Invalid user credentials" in result.message
    assert "wrong-password" not in result.message


def test_missing_credentials_name_the_settings_to_set(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    settings = make_settings(tmp_path, zipper, cdse_username="", cdse_password="")
    result = run_scene_job(make_job(tmp_path, pid, product), settings)
    assert result.outcome == "error"
    assert "INGESTER_CDSE_USERNAME" in result.message and "netrc" in result.message


def test_credentials_from_netrc(tmp_path, product, zipper):
    netrc = Path.home() / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {zipper.username} password {zipper.password}\n")
    netrc.chmod(0o600)
    pid = zipper.add_product(product)
    settings = make_settings(tmp_path, zipper, cdse_username="", cdse_password="")
    result = run_scene_job(make_job(tmp_path, pid, product), settings)
    assert result.outcome == "done", result.message


def entity_gets(fake: FakeCdse) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "GET" and r["path"].split("?")[0].endswith(")")]


def test_a_product_offline_at_search_time_is_asked_again_and_downloaded_once_online(tmp_path, product, zipper,
                                                                                   catalogue):
    """The search-time `online: false` is not trusted: the catalogue is asked again when the job runs."""
    pid = zipper.add_product(product)
    job = make_job(tmp_path, pid, product, metadata={"online": False})
    result = run_scene_job(job, make_settings(tmp_path, zipper, catalogue))
    assert result.outcome == "done", result.message
    assert len(entity_gets(catalogue)) == 1 and len(value_gets(zipper)) == 1


def test_a_product_offline_at_job_time_is_deferred_without_a_download_request(tmp_path, product, zipper, catalogue):
    pid = zipper.add_product(product)
    zipper.offline.add(pid)
    settings = make_settings(tmp_path, zipper, catalogue, offline_recheck=1800)
    before = time.time()
    result = run_scene_job(make_job(tmp_path, pid, product), settings)
    assert result.outcome == "deferred", result.message
    assert before + 1800 <= result.retry_at <= time.time() + 1800
    assert "offline" in result.message and "Data Workspace" in result.message
    assert value_gets(zipper) == []  # a download request does not restore it on CDSE: none is sent
    zipper.offline.discard(pid)  # restored (ordered through the Data Workspace)
    result = run_scene_job(make_job(tmp_path, pid, product, attempt=2), settings)
    assert result.outcome == "done", result.message


def test_a_download_refused_as_offline_is_deferred_too(tmp_path, product, zipper):
    """The catalogue still says online but the download answers that the product is offline."""
    pid = zipper.add_product(product)
    zipper.refuse_offline.add(pid)
    result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper))
    assert result.outcome == "deferred" and "offline" in result.message, result.message


def test_a_product_gone_from_the_catalogue_is_not_found(tmp_path, product, zipper):
    result = run_scene_job(make_job(tmp_path, "6f1d6b5e-0000-4000-8000-00000000dead", product),
                           make_settings(tmp_path, zipper))
    assert result.outcome == "error"
    assert "no longer in the CDSE catalogue" in result.message
    assert value_gets(zipper) == []


def test_an_unreachable_catalogue_falls_back_to_the_search_time_flag(tmp_path, product, zipper):
    pid = zipper.add_product(product)
    closed = "http://127.0.0.1:9/odata/v1"
    settings = make_settings(tmp_path, zipper, cdse_catalogue_url=closed, http_retries=0)
    assert run_scene_job(make_job(tmp_path, pid, product), settings).outcome == "done"
    result = run_scene_job(make_job(tmp_path, pid, product, scene_id=S2_ID.replace("T31TDH", "T31TDJ"),
                                    metadata={"online": False}), settings)
    assert result.outcome == "deferred" and "could not be asked" in result.message


def test_unknown_product_and_missing_uuid_are_reported_by_the_chain(tmp_path, product, zipper):
    settings = make_settings(tmp_path, zipper, providers="local,url,cdse")
    result = run_scene_job(make_job(tmp_path, "6f1d6b5e-0000-4000-8000-00000000dead", product), settings)
    assert result.outcome == "error"
    assert "no provider has" in result.message
    assert "cdse:" in result.message and "no longer in the CDSE catalogue" in result.message
    # providers that cannot have this scene (no local archive set, no download link) stay out of it
    assert "local:" not in result.message and "url:" not in result.message


def _download_in_process(args) -> str:
    tmp, zipper_odata, token_url, username, password, pid, scene_id, limit = args
    settings = Settings(cdse_download_url=zipper_odata, cdse_catalogue_url=zipper_odata, cdse_token_url=token_url,
                        cdse_username=username, cdse_password=password, workdir=f"{tmp}/work",
                        storage_uri=f"{tmp}/storage", providers="cdse", http_retries=0, http_backoff=0.001,
                        cdse_max_downloads=limit)
    job = make_job(Path(tmp), pid, None, scene_id=scene_id)
    return run_scene_job(job, settings).outcome


def test_at_most_four_downloads_at_once_across_worker_processes(tmp_path, product, zipper):
    zipper.delay = 0.02  # ~60 chunks: each download lasts long enough for the others to overlap
    zipper.chunk = len(product) // 60 + 1
    scenes = [S2_ID.replace("T31TDH", f"T31TD{c}") for c in "ABCDEF"]
    args = [(str(tmp_path), zipper.odata, zipper.token_url, zipper.username, zipper.password,
             zipper.add_product(product), scene, 4) for scene in scenes]
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        outcomes = pool.map(_download_in_process, args)
    assert outcomes == ["done"] * 6
    assert zipper.rejected_quota == 0  # the fake never had to answer 429
    assert 2 <= zipper.max_active <= 4


def test_without_the_cap_the_fake_quota_is_hit(tmp_path, product, zipper):
    """Control for the test above: the fake's counter does see more than 4 concurrent downloads (cap of 100)."""
    from concurrent.futures import ThreadPoolExecutor

    zipper.delay = 0.02
    zipper.chunk = len(product) // 30 + 1
    args = [(str(tmp_path), zipper.odata, zipper.token_url, zipper.username, zipper.password,
             zipper.add_product(product), S2_ID.replace("T31TDH", f"T31TD{c}"), 100) for c in "ABCDEF"]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(_download_in_process, args))
    assert zipper.rejected_quota > 0


def test_catalogue_metadata_shape_is_understood(tmp_path, product, zipper):
    """The CDSE catalogue stores `checksums` {"MD5", "BLAKE3"}, `size` and `online` in the scene metadata."""
    from blake3 import blake3

    pid = zipper.add_product(product)
    meta = {"uuid": pid, "checksums": {"BLAKE3": blake3(product).hexdigest()}, "size": len(product),
            "online": True}
    scene = Scene(source_id=S2_ID, aoi="denmark", date=datetime(2018, 1, 1, tzinfo=UTC), wkt="POINT(0 0)",
                  graph_name="CopyProductToStorage", metadata=meta)
    job = SceneJob(1, 1, "denmark", scene, str(tmp_path / "storage"), str(tmp_path / "work" / "j"))
    result = run_scene_job(job, make_settings(tmp_path, zipper))
    assert result.outcome == "done" and "blake3" in result.message
    zipper.offline.add(pid)  # offline now: the catalogue's current answer decides, not the stored flag
    job = SceneJob(2, 1, "denmark", scene, str(tmp_path / "storage2"), str(tmp_path / "work" / "k"))
    assert run_scene_job(job, make_settings(tmp_path, zipper)).outcome == "deferred"


def test_progress_bars_show_each_download_and_the_run_total(tmp_path, product, zipper, monkeypatch):
    import io

    from rich.console import Console

    from ingester.providers import progress

    buffer = io.StringIO()
    bars = progress.Bars(Console(file=buffer, force_terminal=True, width=120))
    pid = zipper.add_product(product)
    try:
        result = run_scene_job(make_job(tmp_path, pid, product), make_settings(tmp_path, zipper),
                               progress=progress.RichProgress(bars))
    finally:
        bars.stop()
    assert result.outcome == "done"
    text = buffer.getvalue()
    assert "run total" in text and S2_ID[:30] in text
    assert f"{len(product) / 1e6:.1f}" in text  # the total size in MB


def test_a_partial_download_survives_the_failed_attempt_and_the_next_attempt_resumes_it(
        tmp_path, product, zipper):
    pid = zipper.add_product(product)
    zipper.drop_after = [800_000]
    zipper.fail_after_drop = [503] * 20  # the link stays down for the rest of the first attempt
    settings = make_settings(tmp_path, zipper, http_retries=1)
    clients = Clients()
    cdse.download_service(settings, clients).sleep = lambda s: None
    first = run_scene_job(make_job(tmp_path, pid, product), settings, clients=clients)
    assert first.outcome == "temporary" and "503" in first.message
    part = tmp_path / "work" / "downloads" / "cdse" / "denmark" / f"{S2_ID}.zip.part"
    assert part.stat().st_size == 800_000
    zipper.fail_next = []
    second = run_scene_job(make_job(tmp_path, pid, product, attempt=2), settings)
    assert second.outcome == "done", second.message
    assert value_gets(zipper)[-1]["range"] == "bytes=800000-"
    assert stored(tmp_path).read_bytes() == product
    assert not part.exists()


def test_a_catalogue_id_that_would_leave_the_url_path_is_quoted_and_the_token_stays_on_the_product(
        tmp_path, product, zipper):
    """A scene that reached the store without the load-time check (an older store, a custom worker)
    must still not turn its id into another URL path: `..` and `/` are quoted into the Products key."""
    zipper.add_product(product)
    hostile = "x)/../../../token?a=("
    result = run_scene_job(make_job(tmp_path, hostile, product), make_settings(tmp_path, zipper))
    assert result.outcome != "done"
    gets = [r for r in zipper.requests if r["method"] == "GET"]
    assert gets, "the product was not even asked for"
    key = "/odata/v1/Products(x%29%2F..%2F..%2F..%2Ftoken%3Fa%3D%28)"  # the availability check, then $value
    assert all(r["path"] in (key, f"{key}/$value") for r in gets), [r["path"] for r in gets]
