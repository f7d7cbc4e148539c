"""http.Service as the catalogue uses it: retries on 429/5xx honouring Retry-After, 4xx at once with the
server's message."""

from __future__ import annotations

import email.utils
import threading
import time

import pytest
from werkzeug import Response

from ingester.config import Settings
from ingester.errors import AuthError, HTTPError, RateLimited, Unavailable
from ingester.http import (
    Clients,
    Service,
    StaticToken,
    TokenManager,
    download,
    retry_after_seconds,
    transfer,
)


def service(httpserver, waits: list[float], retries: int = 3) -> Service:
    return Service("cat", httpserver.url_for("/odata/v1"), retries=retries, backoff=0.5, sleep=waits.append,
                   timeout=5)


@pytest.mark.parametrize("body, message", [
    ({"detail": [{"type": "less_than_equal", "loc": ["query", "$skip"], "msg": "Input should be less than or equal "
                  "to 10000", "input": "10001"}]}, "$skip: Input should be less than or equal to 10000"),
    ({"detail": {"ErrorMessage": "Unknown collection.", "ErrorCode": 404}}, "Unknown collection."),
    ({"error": "invalid_grant", "error_description": "Invalid user credentials"}, "Invalid user credentials"),
])
def test_client_errors_fail_at_once_with_the_server_message(httpserver, body, message):
    httpserver.expect_request("/odata/v1/Products").respond_with_json(body, status=422)
    waits: list[float] = []
    with pytest.raises(HTTPError) as info:
        service(httpserver, waits).get_json("Products")
    assert info.value.status == 422 and str(info.value).endswith(f"answered 422: {message}")
    assert waits == [] and len(httpserver.log) == 1


def test_429_and_5xx_are_retried_with_retry_after_then_backoff(httpserver):
    answers = iter([Response("slow down", 429, {"Retry-After": "3"}), Response("down", 503),
                    Response('{"value": []}', 200, content_type="application/json")])
    httpserver.expect_request("/odata/v1/Products").respond_with_handler(lambda request: next(answers))
    waits: list[float] = []
    svc = service(httpserver, waits)
    assert svc.get_json("Products", params={"$top": 1}) == {"value": []}
    assert waits == [3.0, 1.0] and svc.requests_sent == 3


def test_retries_end_with_the_last_status_and_message(httpserver):
    httpserver.expect_request("/odata/v1/Products").respond_with_data("Service Unavailable", status=503)
    waits: list[float] = []
    with pytest.raises(HTTPError, match=r"answered 503 after 3 requests: Service Unavailable") as info:
        service(httpserver, waits, retries=2).get_json("Products")
    assert info.value.status == 503 and waits == [0.5, 1.0]


def test_retry_after_as_http_date_is_honoured_and_capped():
    class R:
        def __init__(self, value):
            self.headers = {"Retry-After": value}

    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(R(soon), 1.0) <= 30
    assert retry_after_seconds(R("86400"), 1.0) == 300.0
    assert retry_after_seconds(R("soon"), 2.0) == 2.0
    assert retry_after_seconds(None, 2.0) == 2.0


# --- who gets the bearer token ---------------------------------------------------------------------

def test_token_goes_to_exact_hosts_not_to_other_buckets_of_the_same_parent_domain():
    svc = Service("s3", "https://eodata.s3.amazonaws.com/products", trusted_hosts=("urs.earthdata.nasa.gov",))
    assert svc.is_trusted("https://eodata.s3.amazonaws.com/x.zip")
    assert svc.is_trusted("https://urs.earthdata.nasa.gov/oauth")
    assert not svc.is_trusted("https://attacker-bucket.s3.amazonaws.com/x.zip")
    assert not svc.is_trusted("https://evil.earthdata.nasa.gov/")
    assert not svc.is_trusted("https://127.0.0.2/x")


def test_cdse_service_trusts_the_hosts_of_its_domain_only():
    from ingester.providers import cdse

    settings = Settings(cdse_username="u", cdse_password="p",
                        cdse_download_url="https://zipper.dataspace.copernicus.eu/odata/v1",
                        cdse_catalogue_url="https://catalogue.dataspace.copernicus.eu/odata/v1",
                        cdse_token_url="https://identity.dataspace.copernicus.eu/auth/token")
    svc = cdse.download_service(settings, Clients())
    assert svc.is_trusted("https://download.dataspace.copernicus.eu/odata/v1/Products(1)/$value")
    assert svc.is_trusted("https://zipper.dataspace.copernicus.eu/x")
    assert not svc.is_trusted("https://dataspace.copernicus.eu.evil.example/x")
    assert not svc.is_trusted("https://evildataspace.copernicus.eu/x")
    assert not svc.is_trusted("https://bucket.s3.amazonaws.com/x")


def test_redirect_to_a_sibling_host_gets_no_token(httpserver):
    """A live redirect: the service at 127.0.0.1 sends us to `localhost` (another host name)."""
    base = f"http://127.0.0.1:{httpserver.port}"
    seen: list[str | None] = []
    httpserver.expect_request("/file").respond_with_handler(
        lambda request: seen.append(request.headers.get("Authorization")) or Response("data", 200))
    target = f"http://localhost:{httpserver.port}/file"
    httpserver.expect_request("/start").respond_with_data("", status=302, headers={"Location": target})
    svc = Service("svc", base, token=StaticToken("secret"), retries=0, timeout=5)  # type: ignore[arg-type]
    assert svc.request("GET", "start", auth=True).text == "data"
    assert seen == [None]


# --- token endpoint failures -----------------------------------------------------------------------

@pytest.mark.parametrize("status, error", [(503, Unavailable), (500, Unavailable), (429, RateLimited),
                                           (400, AuthError), (401, AuthError)])
def test_token_endpoint_failures_are_typed_by_status(httpserver, status, error):
    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"error": "x", "error_description": "the server said no"}, status=status)
    manager = TokenManager(httpserver.url_for("/token"), "user", "pw-123", timeout=5)
    with pytest.raises(error, match="the server said no") as info:
        manager.access_token()
    assert "pw-123" not in str(info.value)
    assert info.value.temporary == (error is not AuthError)


def test_token_endpoint_without_answer_is_unavailable():
    manager = TokenManager("http://127.0.0.1:9/token", "user", "pw", timeout=2)
    with pytest.raises(Unavailable, match="no response"):
        manager.access_token()


@pytest.mark.parametrize("body, content_type", [("<html>maintenance</html>", "text/html"),
                                                ('{"token_type": "bearer"}', "application/json"),
                                                ('["a"]', "application/json")])
def test_token_endpoint_200_without_a_token_is_a_clear_auth_error(httpserver, body, content_type):
    httpserver.expect_request("/token", method="POST").respond_with_data(body, content_type=content_type)
    manager = TokenManager(httpserver.url_for("/token"), "user", "pw", timeout=5)
    with pytest.raises(AuthError, match="without a usable token"):
        manager.access_token()


def test_token_managers_are_shared_per_endpoint_and_user():
    with Clients() as clients:
        a = clients.token_manager("http://127.0.0.1:9/token", "user", "pw")
        assert clients.token_manager("http://127.0.0.1:9/token", "user", "pw") is a
        assert clients.token_manager("http://127.0.0.1:9/token", "other", "pw") is not a
        assert clients.token_manager("http://127.0.0.1:9/token", "user", "changed") is not a
        assert Clients().token_manager("http://127.0.0.1:9/token", "user", "pw") is not a  # one per command


def test_what_a_job_learns_about_a_server_serves_the_later_jobs_of_its_worker_process_only():
    """A job's clients (its own sessions and tokens) keep what is learnt about a server in their parent,
    the worker process's clients: a later job finds it; another process (or command) starts afresh."""
    with Clients() as process:
        first = Clients(parent=process)
        learnt = first.lasting(("oneatlas", "download", "schemes"), dict)
        learnt["origin"] = "basic"
        first.close()
        with Clients(parent=process) as later:
            assert later.lasting(("oneatlas", "download", "schemes"), dict) == {"origin": "basic"}
    with Clients() as another:
        assert another.lasting(("oneatlas", "download", "schemes"), dict) == {}


# --- transfer robustness ---------------------------------------------------------------------------

def test_a_failing_checksum_thread_fails_the_download_instead_of_hanging(httpserver, tmp_path, monkeypatch):
    class Broken:
        def update(self, block):
            raise MemoryError("hasher exploded")

        def hexdigest(self):
            return "0"

    monkeypatch.setattr(transfer, "new_hasher", lambda algorithm: Broken())
    httpserver.expect_request("/big").respond_with_data(b"x" * 64 * 1024)
    svc = Service("svc", httpserver.url_for("/"), retries=0, timeout=5)
    outcome: list[BaseException] = []

    def run():
        try:
            download(svc, "big", str(tmp_path / "big.bin"), chunk_size=1024, max_refetch=0)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # a hang guard, not a timing assertion
    assert not worker.is_alive(), "download blocked on the dead checksum thread"
    assert len(outcome) == 1 and "hasher exploded" in str(outcome[0])
    assert not (tmp_path / "big.bin").exists()


def test_connection_errors_are_short_and_name_the_url_once():
    svc = Service("svc", "http://127.0.0.1:9", retries=0, timeout=2)
    path = "odata/v1/Products?" + "&".join(f"k{i}=v{i}" for i in range(200))
    with pytest.raises(HTTPError) as info:
        svc.request("GET", path)
    message = str(info.value)
    assert info.value.status is None
    assert "ConnectionError" in message and "refused" in message.lower()
    assert message.count("127.0.0.1") == 1 and "HTTPConnectionPool" not in message
    assert len(message) < 400


def test_asf_service_trusts_asf_hosts_and_earthdata_login_not_the_presigned_s3_host():
    from ingester.providers.asf import AsfProvider

    svc = AsfProvider(Settings(asf_url="https://datapool.asf.alaska.edu", asf_token="t"))._service()
    assert svc.is_trusted("https://sentinel1.asf.alaska.edu/SLC/SA/x.zip")  # the datapool's CNAME
    assert svc.is_trusted("https://urs.earthdata.nasa.gov/oauth/authorize")
    assert not svc.is_trusted("https://asf-ngap2w-p-s1-slc-7b420b89.s3.us-west-2.amazonaws.com/x.zip")
    assert not svc.is_trusted("https://asf.alaska.edu.evil.example/x.zip")


def test_no_test_reaches_a_real_host():
    """The suite's guard (conftest): a connection to a public address is refused like a closed port, so a
    service left pointing at a real host fails at once instead of leaving the machine."""
    svc = Service("real", "http://192.0.2.1", retries=0, timeout=2)  # TEST-NET-1: not loopback
    with pytest.raises(HTTPError, match="no response after 1 requests") as info:
        svc.request("GET", "odata/v1/Products")
    assert "refused" in str(info.value).lower() and "tests do not reach real hosts" in str(info.value)
