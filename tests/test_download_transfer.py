"""`http.download` on its own: leftover partial files (complete, garbage, too long), 416 answers,
and verification by the server's announced size when the catalogue published nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.errors import DownloadError, HTTPError
from ingester.http import Clients, Expected, download
from ingester.providers import cdse
from tests.fakes.cdse_download import FakeCdse

DATA = bytes(range(256)) * 4000  # ~1 MB


@pytest.fixture
def fake():
    with FakeCdse("127.0.0.1") as server:
        yield server


def _service(fake: FakeCdse, tmp_path: Path):
    settings = Settings(cdse_download_url=fake.odata, cdse_catalogue_url=fake.odata, cdse_token_url=fake.token_url,
                        cdse_username=fake.username, cdse_password=fake.password, workdir=str(tmp_path / "w"),
                        http_retries=1, http_backoff=0.001)
    return cdse.download_service(settings, Clients())


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


# --- issue 15 items 18 and 19: backoff between resumes, write-through ---------------------------------------

def test_a_transfer_that_closes_at_byte_0_backs_off_between_resumes(tmp_path, fake):
    """A server that accepts the request and closes before the first byte, again and again: each new
    request of the same transfer waits longer (the HTTP layer's backoff, doubling), instead of about
    thirty requests in a few milliseconds."""
    pid = fake.add_product(DATA)
    fake.drop_after = [0] * 50
    service = _service(fake, tmp_path)
    slept: list[float] = []
    service.sleep = slept.append  # the clock is the test's; the requests are real
    with pytest.raises(HTTPError, match=f"transfer stops at 0 of {len(DATA)} bytes"):
        download(service, f"Products({pid})/$value", str(tmp_path / "p.zip"), auth=True, max_resumes=4)
    assert len(_gets(fake)) == 5
    assert slept == [service.backoff * 2**n for n in range(4)]


def test_progress_resets_the_backoff_of_a_transfer_that_keeps_closing_early(tmp_path, fake):
    pid = fake.add_product(DATA)
    fake.drop_after = [100_000, 0, 0, 200_000]
    service = _service(fake, tmp_path)
    slept: list[float] = []
    service.sleep = slept.append
    dest = tmp_path / "p.zip"
    verified = download(service, f"Products({pid})/$value", str(dest), auth=True,
                        expected=Expected(size=len(DATA), md5=hashlib.md5(DATA).hexdigest()))
    assert verified.checked == "md5" and dest.read_bytes() == DATA
    b = service.backoff
    assert slept == [b, 2 * b, 4 * b, b]  # doubling while nothing arrives, back to the first step after progress
    assert [r["range"] for r in _gets(fake)] == [None, "bytes=100000-", "bytes=100000-", "bytes=100000-",
                                                 "bytes=300000-"]


KILL_SCRIPT = """
import sys
from ingester.config import Settings
from ingester.http import Clients, download
from ingester.providers import cdse

base, token_url, user, password, pid, dest = sys.argv[1:]
settings = Settings(cdse_download_url=base, cdse_catalogue_url=base, cdse_token_url=token_url,
                    cdse_username=user, cdse_password=password, http_retries=0)
download(cdse.download_service(settings, Clients()), f"Products({pid})/$value", dest, auth=True)
"""


def test_a_download_killed_with_sigkill_keeps_what_had_arrived_and_resumes_from_there(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import PYTHON, subprocess_env

    data = os.urandom(6 * 1024 * 1024)
    with FakeCdse("127.0.0.1", chunk=16 * 1024, delay=0.01) as slow:  # about 1.5 MB/s
        pid = slow.add_product(data)
        dest = tmp_path / "p.zip"
        child = subprocess.Popen([PYTHON, "-c", KILL_SCRIPT, slow.odata, slow.token_url, slow.username, slow.password,
                                  pid, str(dest)], env=subprocess_env(), stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while slow.bytes_sent < 1_700_000 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.02)
            arrived = slow.bytes_sent
            assert 1_700_000 <= arrived < len(data), (arrived, child.poll())
            time.sleep(0.5)  # the client has had time to read what the server sent
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        part = Path(f"{dest}.part")
        kept = part.stat().st_size
        assert kept >= arrived - 256 * 1024, (kept, arrived)  # at most what was still in flight is lost
        assert part.read_bytes() == data[:kept]

        slow.delay = 0
        verified = download(_service(slow, tmp_path), f"Products({pid})/$value", str(dest), auth=True,
                            expected=Expected(size=len(data), md5=hashlib.md5(data).hexdigest()))
        assert verified.checked == "md5" and dest.read_bytes() == data
        assert [r["range"] for r in _gets(slow)][-1] == f"bytes={kept}-"  # resumed where the kill left it


# --- issue 13: a download as a whole process (a worker's start-up is part of its time) ----------------------

LIGHT_PROBE = """
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from ingester.config import Settings
from ingester.providers.chain import fetch_product
from ingester.scenes import Scene

url, workdir, md5 = sys.argv[1:]
scene = Scene(source_id="S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858", aoi="a",
              date=datetime(2022, 1, 4, tzinfo=timezone.utc), wkt="POLYGON ((9 55, 10 55, 10 56, 9 56, 9 55))",
              graph_name="CopyProductToStorage", metadata={"download_link": url, "checksums": {"MD5": md5}})
fetched = fetch_product(scene, Path(workdir), Settings(workdir=workdir, http_retries=0))
print(json.dumps({"checked": fetched.verified.checked,
                  "loaded": [m for m in ("numpy", "shapely", "pyproj", "rasterio") if m in sys.modules]}))
"""


def test_a_download_through_the_provider_chain_loads_no_geometry_or_raster_library(tmp_path, httpserver):
    """The chain asks every configured provider whether it may have the scene (landsat-aws parses the
    product id): that must not load shapely or numpy, which cost a worker's download a tenth of a second."""
    import json
    import subprocess

    from tests.conftest import PYTHON, subprocess_env

    data = b"product bytes " * 1000
    httpserver.expect_request("/p.zip").respond_with_data(data)
    out = subprocess.run([PYTHON, "-c", LIGHT_PROBE, httpserver.url_for("/p.zip"), str(tmp_path),
                          hashlib.md5(data).hexdigest()], capture_output=True, text=True, env=subprocess_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"checked": "md5", "loaded": []}
