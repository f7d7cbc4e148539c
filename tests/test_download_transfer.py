"""`http.download` on its own: leftover partial files (complete, garbage, too long), 416 answers,
and verification by the server's announced size when the catalogue published nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.errors import DownloadError, HTTPError
from ingester.http import Expected, download
from ingester.providers import cdse
from tests.fakes.cdse_download import FakeCdse

DATA = bytes(range(256)) * 4000  # ~1 MB


@pytest.fixture
def fake():
    cdse.reset()
    with FakeCdse("127.0.0.1") as server:
        yield server
    cdse.reset()


def _service(fake: FakeCdse, tmp_path: Path):
    settings = Settings(cdse_download_url=fake.odata, cdse_catalogue_url=fake.odata, cdse_token_url=fake.token_url,
                        cdse_username=fake.username, cdse_password=fake.password, workdir=str(tmp_path / "w"),
                        http_retries=1, http_backoff=0.001)
    return cdse.download_service(settings)


def _gets(fake: FakeCdse) -> list:
    return [r for r in fake.requests if "$value" in r["path"]]


def test_a_complete_leftover_part_is_verified_without_a_request(tmp_path, fake):
    pid = fake.add_product(DATA)
    dest = tmp_path / "p.zip"
    Path(f"{dest}.part").write_bytes(DATA)
    verified = download(_service(fake, tmp_path), f"Products({pid})/$value", str(dest), auth=True,
                        expected=Expected(size=len(DATA), md5=hashlib.md5(DATA).hexdigest()))
    assert verified.checked == "md5" and dest.read_bytes() == DATA
    assert _gets(fake) == [] and not Path(f"{dest}.part").exists()


def test_a_garbage_leftover_part_is_discarded_and_fetched_again(tmp_path, fake):
    pid = fake.add_product(DATA)
    dest = tmp_path / "p.zip"
    Path(f"{dest}.part").write_bytes(b"\0" * len(DATA))
    verified = download(_service(fake, tmp_path), f"Products({pid})/$value", str(dest), auth=True,
                        expected=Expected(size=len(DATA), md5=hashlib.md5(DATA).hexdigest()))
    assert verified.checked == "md5" and dest.read_bytes() == DATA
    assert [r["range"] for r in _gets(fake)] == [None]


def test_a_too_long_leftover_part_gets_416_and_restarts_from_zero(tmp_path, fake):
    pid = fake.add_product(DATA)
    dest = tmp_path / "p.zip"
    Path(f"{dest}.part").write_bytes(DATA + b"tail")
    verified = download(_service(fake, tmp_path), f"Products({pid})/$value", str(dest), auth=True)
    assert dest.read_bytes() == DATA and verified.checked == "size"  # the server's announced size
    assert [r["range"] for r in _gets(fake)] == [f"bytes={len(DATA) + 4}-", None]


def test_a_link_that_keeps_dropping_is_a_no_response_error_and_keeps_the_part(tmp_path, fake):
    pid = fake.add_product(DATA)
    fake.drop_after = [1000] * 50
    dest = tmp_path / "p.zip"
    with pytest.raises(HTTPError, match="transfer stops at 1000 of 1024000 bytes") as info:
        download(_service(fake, tmp_path), f"Products({pid})/$value", str(dest), auth=True, max_resumes=0)
    assert info.value.status is None  # mapped to Unavailable (temporary) by the providers
    assert not dest.exists() and Path(f"{dest}.part").stat().st_size == 1000


def test_a_mismatching_download_is_retried_a_bounded_number_of_times(tmp_path, fake):
    pid = fake.add_product(DATA)
    fake.corrupt_next = 10
    dest = tmp_path / "p.zip"
    with pytest.raises(DownloadError, match="MD5 checksum mismatch.*after 2 downloads"):
        download(_service(fake, tmp_path), f"Products({pid})/$value", str(dest), auth=True, max_refetch=1,
                 expected=Expected(md5=hashlib.md5(DATA).hexdigest()))
    assert not dest.exists() and not Path(f"{dest}.part").exists()
    assert len(_gets(fake)) == 2
