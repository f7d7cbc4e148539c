"""Credentials follow redirects only to the same (scheme, host, port) as the service: never to another
port of the same host (issue 15 item 3). Two real local servers on 127.0.0.1 play service and stranger."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingester.config import Settings
from ingester.errors import AuthError
from ingester.http import Service, StaticToken, TokenManager, download
from ingester.jobs import SceneJob
from ingester.providers.worker import run_scene_job
from ingester.scenes import Scene
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, checksums, zip_safe


class Recorder:
    """A local server that records (method, path, Authorization, body) and answers with `answer(path)`."""

    def __init__(self, answer):
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.seen.append((method, self.path, self.headers.get("Authorization"), body))
                status, headers, data = answer(self.path)
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stranger():
    """Another port of the same host: serves any file, records what it was sent."""
    server = Recorder(lambda path: (200, {"Content-Type": "application/zip"}, b"PK-not-really-a-zip"))
    yield server
    server.close()


def redirecting(to: str, status: int = 302) -> Recorder:
    return Recorder(lambda path: (status, {"Location": to + path}, b""))


def test_trust_is_scheme_host_and_port_never_the_host_alone():
    svc = Service("svc", "http://127.0.0.1:8000/api", token=StaticToken("t"))  # type: ignore[arg-type]
    assert svc.is_trusted("http://127.0.0.1:8000/other")
    assert not svc.is_trusted("http://127.0.0.1:8001/other")
    assert not svc.is_trusted("https://127.0.0.1:8000/other")
    assert not svc.is_trusted("http://127.0.0.1/other")  # port 80
    secure = Service("svc", "https://zipper.dataspace.copernicus.eu/odata/v1",
                     trusted_domains=("dataspace.copernicus.eu",), trusted_hosts=("urs.earthdata.nasa.gov",))
    assert secure.is_trusted("https://zipper.dataspace.copernicus.eu:443/x")
    assert secure.is_trusted("https://download.dataspace.copernicus.eu/x")
    assert not secure.is_trusted("http://download.dataspace.copernicus.eu/x")  # plain http: no token
    assert not secure.is_trusted("https://download.dataspace.copernicus.eu:8443/x")
    assert not secure.is_trusted("https://zipper.dataspace.copernicus.eu:444/x")
    assert secure.is_trusted("https://urs.earthdata.nasa.gov/oauth")
    assert not secure.is_trusted("https://urs.earthdata.nasa.gov:8443/oauth")
    assert not secure.is_trusted("http://urs.earthdata.nasa.gov/oauth")


def test_bearer_token_is_not_sent_to_another_port_of_the_same_host_on_a_redirect(stranger, tmp_path):
    service_side = redirecting(stranger.base)
    try:
        svc = Service("svc", service_side.base, token=StaticToken("secret-token"),  # type: ignore[arg-type]
                      retries=0, timeout=5)
        download(svc, "file.zip", str(tmp_path / "file.zip"), auth=True)
    finally:
        service_side.close()
    assert [auth for _m, _p, auth, _b in service_side.seen] == ["Bearer secret-token"]
    assert [(path, auth) for _m, path, auth, _b in stranger.seen] == [("/file.zip", None)]


def cdse_job(tmp_path, pid: str, product: bytes) -> SceneJob:
    meta = {"uuid": pid, "checksum": checksums(product), "content_length": len(product), "online": True}
    scene = Scene(source_id=S2_ID, aoi="denmark", date=datetime(2018, 1, 1, tzinfo=UTC),
                  wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name="CopyProductToStorage", metadata=meta)
    return SceneJob(job_id=1, attempt=1, aoi="denmark", scene=scene, storage_uri=str(tmp_path / "storage"),
                    workdir=str(tmp_path / "work" / "job"))


def test_cdse_download_token_does_not_follow_a_redirect_to_another_port(tmp_path, testdata):
    product = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE")
    with FakeCdse("127.0.0.1") as zipper, FakeCdse("127.0.0.1") as other_port:
        pid = zipper.add_product(product)
        other_port.add_product(product, pid)
        zipper.redirect_to = other_port.base  # same host, another port
        settings = Settings(cdse_download_url=zipper.odata, cdse_catalogue_url=zipper.odata,
                            cdse_token_url=zipper.token_url, cdse_username=zipper.username,
                            cdse_password=zipper.password, workdir=str(tmp_path / "work"),
                            storage_uri=str(tmp_path / "storage"), providers="cdse", http_retries=1,
                            http_backoff=0.001)
        result = run_scene_job(cdse_job(tmp_path, pid, product), settings)
        got = [r for r in other_port.requests if r["method"] == "GET"]
        assert got, "the redirect was not followed"
        assert all(r["authorization"] is None for r in other_port.requests)
        assert other_port.logins == 0
    assert result.outcome == "error" and "401" in result.message


def test_asf_token_does_not_follow_a_redirect_to_another_port(tmp_path, stranger):
    from ingester.providers.asf import AsfProvider

    datapool = redirecting(stranger.base, 307)
    scene = Scene(source_id="S1A_IW_SLC__1SDV_20230108T170712_20230108T170739_046683_059896_44E5", aoi="a",
                  date=datetime(2023, 1, 8, tzinfo=UTC), wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))")
    (tmp_path / "work").mkdir()
    try:
        provider = AsfProvider(Settings(asf_url=datapool.base, asf_token="edl-token", http_retries=0,
                                        workdir=str(tmp_path / "work")))
        provider.fetch(scene, tmp_path / "work")
    finally:
        datapool.close()
    assert datapool.seen and all(auth == "Bearer edl-token" for _m, _p, auth, _b in datapool.seen)
    assert stranger.seen and all(auth is None for _m, _p, auth, _b in stranger.seen)


@pytest.mark.parametrize("status", [302, 307, 308])
def test_token_endpoint_redirect_never_carries_the_password_elsewhere(stranger, status):
    identity = redirecting(stranger.base, status)
    try:
        manager = TokenManager(f"{identity.base}/token", "alice", "pw-secret-123", timeout=5)
        with pytest.raises(AuthError, match="redirect") as info:
            manager.access_token()
    finally:
        identity.close()
    assert "pw-secret-123" not in str(info.value)
    assert len(identity.seen) == 1 and b"pw-secret-123" in identity.seen[0][3]
    assert stranger.seen == []  # the form (user name, password) was never re-posted anywhere
