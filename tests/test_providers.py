"""Providers other than CDSE: local archive, download_link (file, http, s3), buckets on a real S3 API
(moto, requester-pays, wildcards, folder prefixes), ASF with its token, FTP (pyftpdlib); the chain."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from ingester.config import Settings
from ingester.errors import AuthError, ConfigError, DownloadError, NotFound, ProviderError, Unavailable
from ingester.providers.bucket import BucketProvider
from ingester.providers.chain import fetch_product, provider_order
from ingester.providers.ftp import FtpProvider
from ingester.providers.local import LocalProvider
from ingester.providers.url import UrlProvider
from ingester.scenes import Scene
from tests.fakes.products import S2_ID, checksums, zip_safe

S1_ID = "S1A_IW_SLC__1SDV_20220204T054108_20220204T054135_041757_04F7F7_8E3B"


@pytest.fixture(scope="module")
def product() -> bytes:
    from tests.conftest import TESTDATA

    return zip_safe(TESTDATA / "s2" / f"{S2_ID}.SAFE")


def scene(scene_id: str = S2_ID, **metadata) -> Scene:
    return Scene(source_id=scene_id, aoi="denmark", date=datetime(2018, 1, 1, tzinfo=UTC),
                 wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name="CopyProductToStorage", metadata=metadata)


def settings(tmp_path: Path, **kw) -> Settings:
    base = dict(workdir=str(tmp_path / "work"), http_retries=1, http_backoff=0.001, providers="local,url,cdse")
    base.update(kw)
    return Settings(**base)


# --- local ----------------------------------------------------------------------------------------

def test_local_archive_by_date_layout_is_copied_and_verified(tmp_path, product):
    root = tmp_path / "archive" / "2018" / "01" / "01"
    root.mkdir(parents=True)
    (root / f"{S2_ID}.zip").write_bytes(product)
    provider = LocalProvider(settings(tmp_path, local_path=str(tmp_path / "archive")))
    work = tmp_path / "job"
    work.mkdir()
    path = provider.fetch(scene(checksum=checksums(product)), work)
    assert path == work / f"{S2_ID}.zip" and path.read_bytes() == product
    assert provider.verified[str(path)].checked == "blake3"
    assert (root / f"{S2_ID}.zip").exists()  # the archive is never moved or deleted


def test_local_safe_folder_layout(tmp_path, testdata):
    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", tmp_path / "archive" / f"{S2_ID}.SAFE")
    work = tmp_path / "job"
    work.mkdir()
    path = LocalProvider(settings(tmp_path, local_path=str(tmp_path / "archive"))).fetch(scene(), work)
    assert path == work / f"{S2_ID}.SAFE" and (path / "MTD_MSIL1C.xml").exists()


def test_local_archive_with_a_corrupt_copy_is_refused(tmp_path, product):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / f"{S2_ID}.zip").write_bytes(product[:-10] + b"0123456789")
    work = tmp_path / "job"
    work.mkdir()
    provider = LocalProvider(settings(tmp_path, local_path=str(tmp_path / "archive")))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        provider.fetch(scene(checksum=checksums(product)), work)
    assert list(work.iterdir()) == []


def test_local_miss_lists_the_layouts_tried(tmp_path):
    (tmp_path / "archive").mkdir()
    with pytest.raises(NotFound) as info:
        LocalProvider(settings(tmp_path, local_path=str(tmp_path / "archive"))).fetch(scene(), tmp_path)
    assert f"2018/01/01/{S2_ID}.zip" in str(info.value) and f"{S2_ID}.SAFE" in str(info.value)


# --- url ------------------------------------------------------------------------------------------

def test_download_link_to_a_local_zip_and_file_url(tmp_path, product):
    src = tmp_path / "elsewhere" / "product.zip"
    src.parent.mkdir()
    src.write_bytes(product)
    for i, link in enumerate([str(src), f"file://{src}"]):
        work = tmp_path / f"job{i}"
        work.mkdir()
        path = UrlProvider(settings(tmp_path)).fetch(scene(download_link=link), work)
        assert path.read_bytes() == product


def test_download_link_over_http_without_zip_name_is_saved_as_scene_zip(tmp_path, product, httpserver):
    httpserver.expect_request("/download/12345").respond_with_data(product, content_type="application/zip")
    work = tmp_path / "job"
    work.mkdir()
    provider = UrlProvider(settings(tmp_path))
    path = provider.fetch(scene(download_link=httpserver.url_for("/download/12345"),
                                content_length=len(product)), work)
    assert path == work / f"{S2_ID}.zip" and path.read_bytes() == product
    assert provider.verified[str(path)].checked == "size"


def test_download_link_http_404_is_not_found_and_500_is_unavailable(tmp_path, httpserver):
    httpserver.expect_request("/gone.zip").respond_with_data("no such file", status=404)
    httpserver.expect_request("/down.zip").respond_with_data("maintenance", status=503)
    provider = UrlProvider(settings(tmp_path))
    with pytest.raises(NotFound, match="404"):
        provider.fetch(scene(download_link=httpserver.url_for("/gone.zip")), tmp_path)
    with pytest.raises(Unavailable, match="503"):
        provider.fetch(scene(download_link=httpserver.url_for("/down.zip")), tmp_path)


# --- buckets on a real S3 API (moto) --------------------------------------------------------------

@pytest.fixture
def s3(monkeypatch):
    from tests.fakes.moto_s3 import moto_s3, s3_env

    with moto_s3() as endpoint:
        s3_env(monkeypatch, endpoint)
        yield endpoint


def _put(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").put_object(Bucket=bucket, Key=key, Body=data, RequestPayer="requester")


def test_bucket_zip_with_wildcard_takes_the_newest_match_on_a_requester_pays_bucket(tmp_path, product, s3):
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "eo-archive", requester_pays=True)
    older = S2_ID.replace("20180101T124911", "20180101T110000")
    _put(s3, "eo-archive", f"s2/31/T/DH/{older}.zip", b"old product")
    _put(s3, "eo-archive", f"s2/31/T/DH/{S2_ID}.zip", product)
    pattern = "sentinel2=s3://eo-archive/s2/{LATITUDE_BAND}/T/DH/S2A_MSIL1C_20180101T105441_*.zip"
    cfg = settings(tmp_path, bucket_patterns=pattern, s3_endpoint_url=s3, s3_access_key_id="testing",
                   s3_secret_access_key="testing", s3_requester_pays=True)
    work = tmp_path / "job"
    work.mkdir()
    provider = BucketProvider(cfg)
    requests.post(f"{s3}/moto-api/recorder/start-recording")
    path = provider.fetch(scene(S2_ID, checksum=checksums(product)), work)
    requests.post(f"{s3}/moto-api/recorder/stop-recording")
    assert path == work / f"{S2_ID}.zip" and path.read_bytes() == product
    assert provider.verified[str(path)].checked == "blake3"
    recorded = [json.loads(line) for line in
                requests.get(f"{s3}/moto-api/recorder/download-recording").text.splitlines() if line.strip()]
    gets = [r for r in recorded if r["method"] == "GET" and "/eo-archive/" in r["url"]]
    assert gets, "moto recorded no GET of the product"
    assert all(r["headers"].get("X-Amz-Request-Payer") == "requester" for r in recorded)


def test_bucket_folder_prefix_is_copied_into_the_work_directory(tmp_path, testdata, s3):
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "gcp-like")
    safe = testdata / "s2" / f"{S2_ID}.SAFE"
    for f in safe.rglob("*"):
        if f.is_file():
            _put(s3, "gcp-like", f"tiles/31/T/DH/{S2_ID}.SAFE/{f.relative_to(safe).as_posix()}", f.read_bytes())
    cfg = settings(tmp_path, bucket_patterns="sentinel2=s3://gcp-like/tiles/{LATITUDE_BAND}/{GRID_SQUARE}/"
                   "{GRANULE_ID}/{SCENE}.SAFE", s3_endpoint_url=s3)
    work = tmp_path / "job"
    work.mkdir()
    path = BucketProvider(cfg).fetch(scene(), work)
    assert path == work / f"{S2_ID}.SAFE"
    got = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    want = sorted(p.relative_to(safe).as_posix() for p in safe.rglob("*") if p.is_file())
    assert got == want


def test_bucket_miss_and_bad_pattern(tmp_path, s3):
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "empty")
    cfg = settings(tmp_path, bucket_patterns="sentinel2=s3://empty/{SCENE}.zip", s3_endpoint_url=s3)
    with pytest.raises(NotFound, match=f"nothing at s3://empty/{S2_ID}.zip"):
        BucketProvider(cfg).fetch(scene(), tmp_path)
    with pytest.raises(NotFound, match="no pattern for constellation sentinel1"):
        BucketProvider(cfg).fetch(scene(S1_ID), tmp_path)
    with pytest.raises(ConfigError, match="INGESTER_BUCKET_PATTERNS: .*unknown constellation 'venus'"):
        BucketProvider(settings(tmp_path, bucket_patterns="venus=s3://x/{SCENE}.zip")).fetch(scene(), tmp_path)


def test_download_link_on_s3(tmp_path, product, s3):
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "links")
    _put(s3, "links", "p/product.zip", product)
    work = tmp_path / "job"
    work.mkdir()
    path = UrlProvider(settings(tmp_path, s3_endpoint_url=s3)).fetch(
        scene(download_link="s3://links/p/product.zip", content_length=len(product)), work)
    assert path == work / f"{S2_ID}.zip" and path.read_bytes() == product


# --- ASF ------------------------------------------------------------------------------------------

def test_asf_sends_the_earthdata_token_to_asf_only_not_to_the_presigned_s3_host(tmp_path, product, httpserver):
    from pytest_httpserver import HTTPServer

    seen: dict[str, list] = {"asf": [], "s3": []}
    with HTTPServer(host="127.0.0.2", port=0) as s3host:
        def presigned(request):
            from werkzeug import Response

            seen["s3"].append(request.headers.get("Authorization"))
            return Response(product, content_type="application/zip")

        def datapool(request):
            from werkzeug import Response

            seen["asf"].append(request.headers.get("Authorization"))
            return Response("", status=307, headers={"Location": s3host.url_for(f"/bucket/{S1_ID}.zip?X-Amz=1")})

        s3host.expect_request(f"/bucket/{S1_ID}.zip").respond_with_handler(presigned)
        httpserver.expect_request(f"/SLC/SA/{S1_ID}.zip").respond_with_handler(datapool)
        from ingester.providers.asf import AsfProvider

        cfg = settings(tmp_path, asf_url=httpserver.url_for("").rstrip("/"), asf_token="edl-token-xyz")
        work = tmp_path / "job"
        work.mkdir()
        path = AsfProvider(cfg).fetch(scene(S1_ID, content_length=len(product)), work)
    assert path.read_bytes() == product
    assert seen["asf"] == ["Bearer edl-token-xyz"]
    assert seen["s3"] == [None]


def test_asf_without_token_is_an_auth_error_and_s2_is_not_there(tmp_path):
    from ingester.providers.asf import AsfProvider

    with pytest.raises(AuthError, match="INGESTER_ASF_TOKEN"):
        AsfProvider(settings(tmp_path)).fetch(scene(S1_ID), tmp_path)
    with pytest.raises(NotFound, match="only Sentinel-1"):
        AsfProvider(settings(tmp_path, asf_token="t")).fetch(scene(S2_ID), tmp_path)


# --- FTP ------------------------------------------------------------------------------------------

def test_ftp_pattern_with_credentials_downloads_and_verifies(tmp_path, product):
    from tests.fakes.ftp_server import ftp_server

    root = tmp_path / "ftproot" / "S2" / "2018"
    root.mkdir(parents=True)
    (root / f"{S2_ID}.zip").write_bytes(product)
    with ftp_server(tmp_path / "ftproot") as ftp:
        cfg = settings(tmp_path, ftp_patterns=f"sentinel2={ftp['url']}/S2/{{YEAR}}/{{SCENE}}.zip",
                       ftp_user=ftp["user"], ftp_password=ftp["password"])
        work = tmp_path / "job"
        work.mkdir()
        provider = FtpProvider(cfg)
        path = provider.fetch(scene(checksum=checksums(product)), work)
        assert path.read_bytes() == product and provider.verified[str(path)].checked == "blake3"
        with pytest.raises(NotFound, match="not found"):
            provider.fetch(scene(S2_ID.replace("T31TDH", "T31TDJ")), work)
        bad = settings(tmp_path, ftp_patterns=f"{ftp['url']}/S2/{{YEAR}}/{{SCENE}}.zip", ftp_user=ftp["user"],
                       ftp_password="wrong")
        with pytest.raises(AuthError, match="login refused") as info:
            FtpProvider(bad).fetch(scene(), work)
        assert "wrong" not in str(info.value)


def test_ftp_resumes_a_partial_file_with_rest(tmp_path, product):
    from tests.fakes.ftp_server import ftp_server

    (tmp_path / "ftproot").mkdir()
    (tmp_path / "ftproot" / f"{S2_ID}.zip").write_bytes(product)
    work = tmp_path / "job"
    work.mkdir()
    (work / f"{S2_ID}.zip.part").write_bytes(product[:100_000])  # what a dropped transfer left
    with ftp_server(tmp_path / "ftproot") as ftp:
        cfg = settings(tmp_path, ftp_patterns=f"{ftp['url']}/{{SCENE}}.zip", ftp_user=ftp["user"],
                       ftp_password=ftp["password"])
        path = FtpProvider(cfg).fetch(scene(content_length=len(product)), work)
        assert ftp["rest"] == ["100000"]
    assert path.read_bytes() == product


# --- chain ----------------------------------------------------------------------------------------

def test_provider_order_lists_configured_ones_after_the_named_ones(tmp_path):
    # stac-assets and landsat-aws always join: they answer NotFound at once for scenes not theirs
    assert provider_order(settings(tmp_path)) == ["local", "url", "cdse", "stac-assets", "landsat-aws"]
    cfg = settings(tmp_path, providers="cdse,local", bucket_patterns="sentinel2=gs://b/{SCENE}.zip",
                   ftp_patterns="ftp://h/{SCENE}.zip", asf_token="x")
    assert provider_order(cfg) == ["cdse", "local", "bucket", "ftp", "asf", "stac-assets", "landsat-aws"]
    with pytest.raises(ConfigError, match="unknown provider.*peps"):
        provider_order(settings(tmp_path, providers="local,peps"))


class _Flaky:
    name = "flaky"

    def __init__(self, errors):
        self.errors = list(errors)
        self.verified: dict = {}
        self.calls = 0

    def fetch(self, scene, workdir):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        path = workdir / f"{scene.source_id}.zip"
        path.write_bytes(b"x")
        return path


def test_chain_retries_temporary_errors_then_moves_on_and_reports_every_provider(tmp_path):
    waits: list[float] = []
    first = _Flaky([NotFound("first: not here")])
    first.name = "first"
    flaky = _Flaky([Unavailable("flaky: 503"), Unavailable("flaky: 503"), Unavailable("flaky: 503")])
    flaky.name = "second"
    last = _Flaky([])
    last.name = "third"
    fetched = fetch_product(scene(), tmp_path / "w", settings(tmp_path), providers=[first, flaky, last],
                            sleep=waits.append)
    assert fetched.provider == "third"
    assert first.calls == 1 and flaky.calls == 3 and len(waits) == 2
    assert fetched.messages == ["first: not here", "second: flaky: 503 (provider tried 3 times in this attempt)"]


def test_chain_failure_is_temporary_when_a_provider_may_recover(tmp_path):
    a = _Flaky([NotFound("a: not here")])
    a.name = "a"
    b = _Flaky([Unavailable("b: 503")] * 3)
    b.name = "b"
    with pytest.raises(Unavailable, match="a: not here; b: 503"):
        fetch_product(scene(), tmp_path / "w", settings(tmp_path), providers=[a, b], sleep=lambda s: None)
    c = _Flaky([NotFound("c: not here")])
    c.name = "c"
    with pytest.raises(NotFound, match="no provider has"):
        fetch_product(scene(), tmp_path / "w", settings(tmp_path), providers=[c])


def test_zip_in_storage_from_a_folder_product(tmp_path, testdata):
    """A SAFE folder delivered by a provider is stored zipped with its top entry."""
    from ingester.jobs import SceneJob
    from ingester.providers.worker import run_scene_job

    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", tmp_path / "archive" / f"{S2_ID}.SAFE")
    cfg = settings(tmp_path, local_path=str(tmp_path / "archive"), providers="local")
    job = SceneJob(1, 1, "denmark", scene(), str(tmp_path / "storage"), str(tmp_path / "work" / "j1"))
    result = run_scene_job(job, cfg)
    assert result.outcome == "done", result.message
    zpath = tmp_path / "storage" / "denmark" / S2_ID / "tiles" / S2_ID / f"{S2_ID}.zip"
    with zipfile.ZipFile(zpath) as zf:
        assert f"{S2_ID}.SAFE/MTD_MSIL1C.xml" in zf.namelist()


def test_ftp_refusal_during_a_resumed_retr_is_a_provider_error(tmp_path, product):
    from tests.fakes.ftp_server import ftp_server

    (tmp_path / "ftproot").mkdir()
    (tmp_path / "ftproot" / f"{S2_ID}.zip").write_bytes(product)
    work = tmp_path / "job"
    work.mkdir()
    (work / f"{S2_ID}.zip.part").write_bytes(product[:100_000])
    with ftp_server(tmp_path / "ftproot", retr_reply="550 File vanished.") as ftp:
        cfg = settings(tmp_path, ftp_patterns=f"{ftp['url']}/{{SCENE}}.zip", ftp_user=ftp["user"],
                       ftp_password=ftp["password"])
        with pytest.raises(ProviderError, match=r"refused the transfer \(550 File vanished") as info:
            FtpProvider(cfg).fetch(scene(content_length=len(product)), work)
        assert not info.value.temporary
        with pytest.raises(ProviderError, match=r"no provider delivered .*ftp: .*refused the transfer"):
            fetch_product(scene(content_length=len(product)), work, cfg, providers=[FtpProvider(cfg)],
                          sleep=lambda s: None)


# --- settings checked before any run ---------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"providers": "local,peps"}, r"INGESTER_PROVIDERS: unknown provider\(s\) peps"),
    ({"bucket_patterns": "venus=s3://b/{SCENE}.zip"}, r"INGESTER_BUCKET_PATTERNS: .*unknown constellation 'venus'"),
    ({"bucket_patterns": "sentinel2=https://b/{SCENE}.zip"}, r"INGESTER_BUCKET_PATTERNS: .*expected \[constell"),
    ({"bucket_patterns": "sentinel2=s3://"}, r"INGESTER_BUCKET_PATTERNS"),
    ({"ftp_patterns": "sentinel1=s3://b/{SCENE}.zip"}, r"INGESTER_FTP_PATTERNS: .*ftp://"),
    ({"ftp_patterns": "pleiades2=ftp://h/{SCENE}.zip"}, r"INGESTER_FTP_PATTERNS: .*unknown constellation"),
    ({"providers": "local,cdse"}, r"INGESTER_PROVIDERS: cdse is listed but has no credentials.*INGESTER_CDSE_USERNAME"),
])
def test_check_settings_refuses_configuration_mistakes_with_the_variable_named(tmp_path, overrides, message):
    from ingester.errors import EXIT_INPUT
    from ingester.providers import check_settings

    with pytest.raises(ConfigError, match=message) as info:
        check_settings(settings(tmp_path, **overrides))
    assert info.value.exit_code == EXIT_INPUT


def test_check_settings_accepts_good_settings_and_netrc_credentials(tmp_path, monkeypatch):
    from ingester.providers import check_settings

    check_settings(Settings())  # the defaults: cdse without credentials is only a miss at run time
    good = settings(tmp_path, providers="local,cdse,ftp",
                    bucket_patterns="sentinel2=gs://b/{SCENE}.SAFE; s3://other/{SCENE}.zip",
                    ftp_patterns="ftp://h/{SCENE}.zip\nsentinel-1=ftp://h2:2121/{YEAR}/{SCENE}.zip",
                    cdse_username="u", cdse_password="p")
    check_settings(good)
    home = tmp_path / "netrc-home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login u password p\n")
    (home / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    check_settings(settings(tmp_path, providers="cdse", cdse_token_url="http://127.0.0.1:9/token"))


def test_patterns_without_constellation_apply_to_every_constellation(tmp_path, s3):
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "any")
    cfg = settings(tmp_path, bucket_patterns="s3://any/{SCENE}.zip", s3_endpoint_url=s3)
    with pytest.raises(NotFound, match=f"nothing at s3://any/{S1_ID}.zip"):
        BucketProvider(cfg).fetch(scene(S1_ID), tmp_path)


def test_bucket_folder_copy_stops_at_the_first_failed_object(tmp_path, s3, monkeypatch):
    from ingester import storage
    from ingester.providers import bucket
    from tests.fakes.moto_s3 import make_bucket

    make_bucket(s3, "many")
    for i in range(40):
        _put(s3, "many", f"p/{S2_ID}.SAFE/f{i:02d}.bin", b"x")
    real = storage.filesystem
    copied: list[str] = []

    class FailingFirst:
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def get_file(self, key, local):
            copied.append(key)
            if len(copied) == 1:
                raise ConnectionResetError("connection reset by peer")
            self.fs.get_file(key, local)

    def filesystem(uri, options=None):
        fs, path = real(uri, options)
        return FailingFirst(fs), path

    monkeypatch.setattr(storage, "filesystem", filesystem)
    cfg = settings(tmp_path, bucket_patterns="sentinel2=s3://many/p/{SCENE}.SAFE", s3_endpoint_url=s3)
    work = tmp_path / "job"
    work.mkdir()
    with pytest.raises(Unavailable, match="connection reset by peer"):
        BucketProvider(cfg).fetch(scene(), work)
    assert len(copied) <= 2 * bucket.FOLDER_WORKERS  # not the 40 objects
    assert list(work.iterdir()) == []
