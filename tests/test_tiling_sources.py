"""Annotation sources: CDSE Nodes (fake on 127.0.0.1), local SAFE folder, local zip, zip over HTTP Range."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingester.config import Settings
from ingester.errors import HTTPError, TilingError
from ingester.tiling.inventory import fetch_annotations
from ingester.tiling.sources import CdseNodesSource, PatternSource, select_annotations
from tests.fakes.cdse_nodes import (
    IW2_2022,
    IW2_2023,
    FakeCdseNodes,
    make_product,
    product_scene,
    write_safe,
    write_zip,
)

SCENE_2023 = "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76"


def quick_settings(**kw) -> Settings:
    return Settings(http_retries=1, http_backoff=0.01, http_timeout=5, **kw)


def test_selection_keeps_product_annotations_one_polarisation_per_swath():
    safe = f"{SCENE_2023}.SAFE"
    paths = [
        f"{safe}/manifest.safe",
        f"{safe}/annotation/s1a-iw1-slc-vh-20230108t135250-x-001.xml",
        f"{safe}/annotation/s1a-iw1-slc-vv-20230108t135250-x-004.xml",
        f"{safe}/annotation/s1a-iw2-slc-vh-20230108t135251-x-002.xml",
        f"{safe}/annotation/calibration/calibration-s1a-iw1-slc-vv-20230108t135250-x-004.xml",
        f"{safe}/annotation/calibration/noise-s1a-iw1-slc-vv-20230108t135250-x-004.xml",
        f"{safe}/annotation/rfi/rfi-s1a-iw1-slc-vv-20230108t135250-x-004.xml",
        f"{safe}/measurement/s1a-iw1-slc-vv-20230108t135250-x-004.tiff",
        "OTHER.SAFE/annotation/s1a-iw3-slc-vv-x-006.xml",
    ]
    assert select_annotations(paths, SCENE_2023) == [
        f"{safe}/annotation/s1a-iw1-slc-vv-20230108t135250-x-004.xml",
        f"{safe}/annotation/s1a-iw2-slc-vh-20230108t135251-x-002.xml",
    ]


# --- CDSE Nodes ----------------------------------------------------------------------------------

def test_cdse_nodes_lists_then_fetches_the_annotation_with_a_bearer_token(testdata):
    product = make_product(testdata, IW2_2023)
    with FakeCdseNodes([product]) as fake:
        settings = quick_settings(cdse_download_url=fake.url, cdse_token_url=fake.token_url,
                                  cdse_username=fake.username, cdse_password=fake.password)
        files = CdseNodesSource(settings).fetch(product_scene(product))
    assert [name for name, _data in files] == list(product.annotations)
    assert files[0][1] == (testdata / "s1" / IW2_2023).read_bytes()
    listing = [h for m, p, h in fake.requests if p.endswith("/Nodes(annotation)/Nodes")]
    assert len(listing) == 1 and "Authorization" not in listing[0]
    values = [(p, h) for m, p, h in fake.requests if p.endswith("/$value")]
    assert [p for p, _h in values] == [
        f"/odata/v1/Products({product.uuid})/Nodes({product.scene_id}.SAFE)/Nodes(annotation)"
        f"/Nodes({IW2_2023})/$value"
    ]
    assert values[0][1]["Authorization"] == "Bearer token-1"


def test_cdse_nodes_unknown_product_is_a_miss(testdata):
    product = make_product(testdata, IW2_2023)
    with FakeCdseNodes([]) as fake:
        source = CdseNodesSource(quick_settings(cdse_download_url=fake.url))
        assert source.fetch(product_scene(product)) is None


def test_cdse_nodes_scene_without_uuid_is_a_miss_without_any_request(testdata):
    product = make_product(testdata, IW2_2023)
    scene = product_scene(product)
    scene.metadata.clear()
    scene.tags.pop("uuid")
    with FakeCdseNodes([product]) as fake:
        assert CdseNodesSource(quick_settings(cdse_download_url=fake.url)).fetch(scene) is None
    assert fake.requests == []


def test_cdse_nodes_without_credentials_fails_with_the_servers_message(testdata):
    product = make_product(testdata, IW2_2023)
    with FakeCdseNodes([product]) as fake:
        source = CdseNodesSource(quick_settings(cdse_download_url=fake.url, cdse_token_url=fake.token_url))
        with pytest.raises(HTTPError, match=r"answered 401.*invalid token"):
            source.fetch(product_scene(product))


def test_cdse_nodes_retries_a_503_then_succeeds(testdata):
    product = make_product(testdata, IW2_2023)
    with FakeCdseNodes([product], require_auth=False) as fake:
        fake.fail_next = [503]
        files = CdseNodesSource(quick_settings(cdse_download_url=fake.url)).fetch(product_scene(product))
    assert len(files) == 1
    assert len([p for m, p, h in fake.requests if p.endswith("/Nodes")]) == 2


# --- local folder and zip ------------------------------------------------------------------------

def test_local_safe_folder_pattern_with_product_keys_and_area(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    write_safe(tmp_path / "LA" / "2023" / "01", product.scene_id, product.annotations)
    source = PatternSource(f"{tmp_path}/{{AREA}}/{{YEAR}}/{{MONTH}}/{{SCENE}}.SAFE", "LA", quick_settings())
    files = source.fetch(product_scene(product))
    assert [(n, d) for n, d in files] == list(product.annotations.items())


def test_local_folder_containing_many_products_selects_the_scenes_own(testdata, tmp_path):
    p23, p22 = make_product(testdata, IW2_2023), make_product(testdata, IW2_2022)
    write_safe(tmp_path, p23.scene_id, p23.annotations)
    write_safe(tmp_path, p22.scene_id, p22.annotations)
    files = PatternSource(str(tmp_path), "LA", quick_settings()).fetch(product_scene(p22))
    assert [n for n, _d in files] == [IW2_2022]


def test_local_zip_pattern(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    write_zip(tmp_path / f"{product.scene_id}.zip", product.scene_id, product.annotations)
    files = PatternSource(f"file://{tmp_path}/{{SCENE}}.zip", "LA", quick_settings()).fetch(product_scene(product))
    assert files == list(product.annotations.items())


def test_missing_local_path_is_a_miss(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    assert PatternSource(f"{tmp_path}/{{SCENE}}.zip", "LA", quick_settings()).fetch(product_scene(product)) is None


def test_zip_without_the_scenes_annotations_is_a_miss(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    write_zip(tmp_path / "x.zip", "S1A_OTHER", product.annotations)
    assert PatternSource(f"{tmp_path}/x.zip", "LA", quick_settings()).fetch(product_scene(product)) is None


def test_corrupt_local_zip_is_an_error_naming_the_file(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    with pytest.raises(TilingError, match=r"bad\.zip: not a zip file"):
        PatternSource(f"{tmp_path}/bad.zip", "LA", quick_settings()).fetch(product_scene(product))


# --- zip over HTTP with Range --------------------------------------------------------------------

class RangeServer:
    """Serves files of a folder over HTTP with `Range` (206), counting the body bytes sent."""

    def __init__(self, folder, honour_range: bool = True, fail_status: int | None = None):
        self.folder = folder
        self.sent = 0
        self.ranges: list[str] = []
        self.authorizations: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if fail_status:
                    self.send_response(fail_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                header = self.headers.get("Range")
                if header and honour_range:
                    server.ranges.append(header)
                    server.authorizations.append(self.headers.get("Authorization"))
                    start, end = header.removeprefix("bytes=").split("-")
                    start, end = int(start), min(int(end), len(data) - 1)
                    body = data[start : end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # counted before the write: the client may hold the bytes (and the test check them)
                # before this thread runs again after write() returns
                server.sent += len(body)
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    server.sent -= len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def range_server(tmp_path):
    servers = []

    def start(**kw):
        servers.append(RangeServer(tmp_path, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_zip_over_http_reads_only_the_directory_and_the_annotation(testdata, tmp_path, range_server):
    product = make_product(testdata, IW2_2023)
    zip_path = write_zip(tmp_path / f"{product.scene_id}.zip", product.scene_id, product.annotations,
                         padding=3_000_000)
    server = range_server()
    source = PatternSource(f"{server.url}/{{SCENE}}.zip", "LA", quick_settings())
    files = source.fetch(product_scene(product))
    assert files == list(product.annotations.items())
    size = zip_path.stat().st_size
    assert server.ranges and source.bytes_read == server.sent
    assert server.sent < size // 4  # the 3 MB stored measurement member was never fetched


def test_zip_over_http_missing_is_a_miss(testdata, range_server):
    product = make_product(testdata, IW2_2023)
    server = range_server()
    assert PatternSource(f"{server.url}/{{SCENE}}.zip", "LA", quick_settings()).fetch(product_scene(product)) is None


def test_server_that_ignores_range_is_refused_without_reading_the_zip(testdata, tmp_path, range_server):
    product = make_product(testdata, IW2_2023)
    write_zip(tmp_path / f"{product.scene_id}.zip", product.scene_id, product.annotations, padding=3_000_000)
    server = range_server(honour_range=False)
    with pytest.raises(TilingError, match=r"does not honour Range requests"):
        PatternSource(f"{server.url}/{{SCENE}}.zip", "LA", quick_settings()).fetch(product_scene(product))


# --- source order --------------------------------------------------------------------------------

def test_a_source_that_errors_then_one_that_misses_then_one_that_hits(testdata, tmp_path, range_server):
    product = make_product(testdata, IW2_2023)
    write_safe(tmp_path / "safes", product.scene_id, product.annotations)
    broken = range_server(fail_status=500)
    settings = quick_settings()
    sources = [
        PatternSource(f"{broken.url}/{{SCENE}}.zip", "LA", settings),
        PatternSource(f"{tmp_path}/nowhere/{{SCENE}}.zip", "LA", settings),
        PatternSource(f"{tmp_path}/safes", "LA", settings),
    ]
    got = fetch_annotations(product_scene(product), sources)
    assert [a.swath for a in got.annotations] == ["IW2"]
    assert len(got.attempts) == 2
    assert "answered 500" in got.attempts[0]
    assert got.attempts[1].endswith("nowhere/{SCENE}.zip: not found")


def test_no_source_has_the_scene(testdata, tmp_path):
    product = make_product(testdata, IW2_2023)
    got = fetch_annotations(product_scene(product), [PatternSource(f"{tmp_path}/{{SCENE}}", "LA", quick_settings())])
    assert got.annotations == [] and got.attempts == [f"{tmp_path}/{{SCENE}}: not found"]


def test_unsupported_scheme_is_an_error():
    with pytest.raises(TilingError, match=r"unsupported scheme ftp://"):
        PatternSource("ftp://host/{SCENE}.zip", "LA", quick_settings()).fetch(
            product_scene(make_product_stub()))


def make_product_stub():
    from datetime import datetime

    from tests.fakes.cdse_nodes import Product

    return Product(SCENE_2023, "u", {}, datetime(2023, 1, 8))


def test_asf_datapool_zip_gets_the_earthdata_token_and_the_redirect_target_does_not(testdata, tmp_path,
                                                                                   range_server):
    product = make_product(testdata, IW2_2023)
    (tmp_path / "SLC" / "SA").mkdir(parents=True)
    write_zip(tmp_path / "SLC" / "SA" / f"{product.scene_id}.zip", product.scene_id, product.annotations)
    storage = range_server()  # the "pre-signed S3" host, reached by another name
    seen: list[tuple[str, str | None]] = []

    class Datapool(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != "Bearer edl-token":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(307)
            self.send_header("Location", f"http://localhost:{storage.httpd.server_address[1]}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    datapool = ThreadingHTTPServer(("127.0.0.1", 0), Datapool)
    threading.Thread(target=datapool.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        asf_url = f"http://127.0.0.1:{datapool.server_address[1]}"
        settings = quick_settings(asf_url=asf_url, asf_token="edl-token")
        files = PatternSource(f"{asf_url}/SLC/SA/{{SCENE}}.zip", "LA", settings).fetch(product_scene(product))
    finally:
        datapool.shutdown()
        datapool.server_close()
    assert files == list(product.annotations.items())
    assert seen and all(auth == "Bearer edl-token" for _path, auth in seen)
    assert storage.ranges  # the zip itself came from the redirect target, read by ranges
    assert storage.authorizations == [None] * len(storage.ranges)  # and never saw the token


# --- one login and one session per run -----------------------------------------------------------

def test_cdse_nodes_reuse_the_token_of_the_cdse_downloads_one_login_per_command(testdata):
    from ingester.http import Clients
    from ingester.providers import cdse

    product = make_product(testdata, IW2_2023)
    with FakeCdseNodes([product]) as fake, Clients() as clients:
        settings = quick_settings(cdse_download_url=fake.url, cdse_token_url=fake.token_url,
                                  cdse_username=fake.username, cdse_password=fake.password)
        assert cdse.token_manager(settings, clients).access_token() == "token-1"  # the downloads logged in
        for _ in range(2):  # two tiling runs with the same clients
            source = CdseNodesSource(settings, clients=clients)
            assert source.fetch(product_scene(product))
            source.close()
    logins = [p for m, p, _h in fake.requests if m == "POST"]
    assert logins == ["/token"]
    assert {h.get("Authorization") for m, p, h in fake.requests if p.endswith("/$value")} == {"Bearer token-1"}


def test_zips_over_http_share_one_session_per_host_closed_at_the_end(testdata, tmp_path, range_server,
                                                                     monkeypatch):
    from ingester.tiling import sources as sources_module

    opened: list[object] = []
    closed: list[object] = []

    class CountingService(sources_module.Service):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)
            real_close = self.session.close
            self.session.close = lambda: (closed.append(self), real_close())  # type: ignore[method-assign]

    monkeypatch.setattr(sources_module, "Service", CountingService)
    products = [make_product(testdata, IW2_2023), make_product(testdata, IW2_2022)]
    for product in products:
        write_zip(tmp_path / f"{product.scene_id}.zip", product.scene_id, product.annotations)
    server = range_server()
    source = PatternSource(f"{server.url}/{{SCENE}}.zip", "LA", quick_settings())
    for product in products:
        assert source.fetch(product_scene(product)) == list(product.annotations.items())
    assert len(opened) == 1
    source.close()
    assert closed == opened
