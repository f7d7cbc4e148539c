"""One CDSE login per run (issue 12 item 4) and a refused account stops all CDSE work of the run at once
(issue 15 item 5): the coordinator logs in, workers get short-lived access tokens with their jobs and
ask the coordinator for fresh ones; no password travels with a job."""

from __future__ import annotations

import json
import pickle
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingester.errors import CredentialsRefused
from ingester.http import TokenManager
from ingester.scenes import Scene, write_scenes
from ingester.store import Store
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, checksums, zip_safe

AOI = "DenmarkDemoS2"
WKT = "POLYGON ((8.99968 55.89489, 10.76096 55.87337, 10.71249 54.88733, 8.99971 54.90786, 8.99968 55.89489))"
DB = "outputs/ingester.db"


def scenes_for(fake: FakeCdse, testdata: Path, path: Path, count: int) -> list[str]:
    scenes = []
    start = datetime(2022, 1, 1, 10, 34, 31, tzinfo=UTC)
    for i in range(count):
        date = start + timedelta(hours=i)
        sid = f"S2A_MSIL1C_{date:%Y%m%dT%H%M%S}_N0510_R108_T32UNG_{date:%Y%m%dT%H%M%S}"
        data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=f"{sid}.SAFE")
        pid = fake.add_product(data)
        scenes.append(Scene(source_id=sid, aoi=AOI, date=date, wkt=WKT, graph_name="CopyProductToStorage",
                            is_retriable=True, tags={"area": "Denmark", "provider": "geocube-ingester",
                                                     "source": "tutorial", "constellation": "SENTINEL2",
                                                     "sourceID": sid},
                            metadata={"uuid": pid, "checksums": {c["Algorithm"]: c["Value"] for c in checksums(data)},
                                      "size": len(data), "online": True}))
    write_scenes(path, scenes, next_=False)
    return [s.source_id for s in scenes]


def use(fake: FakeCdse, monkeypatch) -> None:
    for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                       "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                       "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse",
                       "INGESTER_RETRY_BACKOFF": "0", "INGESTER_TILE_WORKER": "tests.fakes.workers:noop"}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


def test_one_login_per_run_with_four_workers_and_a_short_token_lifetime(cli, payload, testdata, tmp_path,
                                                                         monkeypatch):
    """12 downloads of at least 2 s each on 4 workers (3 rounds) outlast a 4 s access token."""
    with FakeCdse("127.0.0.1", expires_in=4) as fake:
        scenes_for(fake, testdata, tmp_path / "scenes.json", 12)
        size = len(next(iter(fake.products.values())))
        fake.chunk, fake.delay = size // 20 + 1, 0.1
        use(fake, monkeypatch)
        r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--json", "--workers", "4")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["summary"]["scenes"]["done"] == 12
        assert [g for g in fake.grants if g[0] == "password"] == [("password", True)]  # the coordinator's login
        assert fake.refreshes >= 1  # later jobs got refreshed tokens from the coordinator
        downloads = [r for r in fake.requests if "$value" in r["path"]]
        assert len(downloads) == 12 and all(r["authorization"].startswith("Bearer acc-") for r in downloads)


def test_jobs_carry_a_token_and_never_the_password(payload, testdata, tmp_path, monkeypatch):
    from ingester.config import load_settings
    from ingester.coordinator import Coordinator, release_lock
    from ingester.http.tokens import worker_settings
    from ingester.ingest import commit, prepare
    from ingester.payload import load_payload

    with FakeCdse("127.0.0.1") as fake:
        scenes_for(fake, testdata, tmp_path / "scenes.json", 1)
        use(fake, monkeypatch)
        settings = load_settings()
        with Store(tmp_path / "x.db") as store:
            loaded = load_payload(payload)
            commit(store, prepare(store, loaded, settings, str(tmp_path / "scenes.json"), None, True), "t", True)
            release_lock(store, AOI, "t")
            job = Coordinator(store, AOI, settings).scene_job(1, 1)
        data = pickle.dumps(job)
        assert fake.password.encode() not in data
        assert job.tokens["cdse"].value.encode() in data and job.tokens["cdse"].value not in repr(job)
        assert fake.password not in repr(pickle.dumps(worker_settings(settings)))
        assert fake.logins == 1


def test_a_refused_account_stops_the_run_at_once_and_charges_no_job(cli, payload, testdata, tmp_path, monkeypatch):
    """The password is changed on the server during the run: the next token request is refused once,
    no login is tried again, the run stops with exit 1 and its jobs are back in the queue."""
    with FakeCdse("127.0.0.1", expires_in=600) as fake:
        scenes_for(fake, testdata, tmp_path / "scenes.json", 6)
        use(fake, monkeypatch)
        fake.change_password_after = 1
        r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "2")
        assert r.exit_code == 1, r.stderr
        assert "refused the account" in r.stderr and "the run stopped" in r.stderr
        assert fake.password not in r.stderr
        assert [g for g in fake.grants if g[0] == "password"] == [("password", True), ("password", False)]
    with Store(DB) as st:
        statuses = dict(st.execute("SELECT status, count(*) FROM scene GROUP BY status").fetchall())
        assert statuses.get("RETRY", 0) == 0 and statuses.get("FAILED", 0) == 0
        assert statuses["PENDING"] >= 1
        assert st.one("SELECT count(*) FROM job_attempt WHERE outcome IN ('error', 'temporary')") == 0
        assert st.one("SELECT lock_run FROM aoi") is None


def test_a_refused_password_is_never_sent_twice_by_a_process(testdata):
    with FakeCdse("127.0.0.1") as fake:
        manager = TokenManager(fake.token_url, fake.username, "wrong-password-1")
        for _ in range(5):
            with pytest.raises(CredentialsRefused, match="refused the account"):
                manager.access_token()
        assert fake.grants == [("password", False)]


def test_a_netrc_readable_by_others_is_refused_with_a_clear_message(cli, payload, tmp_path, monkeypatch):
    netrc = Path.home() / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password secret-netrc-pw\n")
    netrc.chmod(0o644)
    monkeypatch.setenv("INGESTER_CDSE_TOKEN_URL", "http://127.0.0.1:9/token")
    monkeypatch.setenv("INGESTER_PROVIDERS", "cdse")
    from tests.fakes.aoi_data import write_s2_scenes

    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers")
    assert r.exit_code == 2, r.stderr
    assert ".netrc" in r.stderr and "chmod 600" in r.stderr and "644" in r.stderr
    assert "secret-netrc-pw" not in r.stderr
    assert not Path(DB).exists()


def test_without_credentials_a_scene_only_cdse_has_is_refused_by_the_preflight_naming_the_settings(
        cli, payload, testdata, tmp_path, monkeypatch):
    """The default provider list names cdse even without an account, but a scene only CDSE has is found
    before the run: exit 2 naming the settings to set, nothing written, no login tried."""
    with FakeCdse("127.0.0.1") as fake:
        scenes_for(fake, testdata, tmp_path / "scenes.json", 1)
        use(fake, monkeypatch)
        monkeypatch.delenv("INGESTER_CDSE_USERNAME")
        monkeypatch.delenv("INGESTER_CDSE_PASSWORD")
        monkeypatch.delenv("INGESTER_PROVIDERS")
        r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "1")
        assert r.exit_code == 2, r.stderr
        assert "set INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD" in r.stderr
        assert fake.grants == []
    assert not Path(DB).exists()
