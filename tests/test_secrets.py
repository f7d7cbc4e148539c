"""Secrets (CDSE password, access and refresh tokens, Earthdata token) never reach job messages,
stored files, logs or captured output — even through failures, retries, refreshes and netrc."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.http import Clients, TokenManager
from ingester.providers import cdse
from ingester.providers.asf import AsfProvider, StaticToken
from ingester.providers.worker import run_scene_job
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, zip_safe
from tests.test_download_cdse import make_job, make_settings


def _all_text(root: Path) -> str:
    parts = []
    for path in root.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_password_and_tokens_never_appear_in_results_files_logs_or_output(tmp_path, testdata, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    product = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE")
    with FakeCdse("127.0.0.1") as zipper, FakeCdse("localhost") as catalogue:
        catalogue.redirect_to = zipper.base
        catalogue.entities_from = zipper
        netrc = Path.home() / ".netrc"  # netrc credentials: requests must not turn them into Basic auth
        netrc.write_text(f"machine 127.0.0.1 login {zipper.username} password {zipper.password}\n"
                         f"machine localhost login {zipper.username} password {zipper.password}\n")
        netrc.chmod(0o600)
        settings = make_settings(tmp_path, zipper, catalogue, cdse_username="", cdse_password="")
        results = []
        pid = zipper.add_product(product)
        zipper.drop_after = [400_000]
        zipper.revoke_on_drop = True
        zipper.unauthorized_next = 1
        zipper.corrupt_next = 1
        clients = Clients()  # one login for the first two jobs
        results.append(run_scene_job(make_job(tmp_path, pid, product), settings, clients=clients))
        zipper.throttle_next = [0] * 50
        cdse.download_service(settings, clients).sleep = lambda s: None
        results.append(run_scene_job(make_job(tmp_path, pid, product, scene_id=S2_ID.replace("TDH", "TDJ")),
                                     settings, clients=clients))
        bad = make_settings(tmp_path, zipper, catalogue, cdse_password="not-the-password-42")
        results.append(run_scene_job(make_job(tmp_path, pid, product, scene_id=S2_ID.replace("TDH", "TDK")), bad))
        secrets = [zipper.password, "not-the-password-42", *zipper.issued_tokens()]
        downloads = [r for r in zipper.requests + catalogue.requests if "$value" in r["path"]]
    assert [r.outcome for r in results] == ["done", "temporary", "error"], [r.message for r in results]
    assert zipper.refreshes >= 1 and len(secrets) >= 4
    assert all(not (r["authorization"] or "").startswith("Basic") for r in downloads)
    out = capsys.readouterr()
    haystack = "\n".join([
        *(r.message for r in results), *(repr(r) for r in results), out.out, out.err, caplog.text,
        _all_text(tmp_path / "storage"), _all_text(tmp_path / "work"),
        repr(cdse.token_manager(settings, clients)), repr(clients), repr(settings.redacted()),
    ])
    leaked = [s for s in secrets if s in haystack]
    assert leaked == []


def test_secret_holders_do_not_show_secrets(tmp_path):
    manager = TokenManager("http://127.0.0.1:9/token", "alice", "pw-123456")
    assert "pw-123456" not in repr(manager)
    assert "edl-secret" not in repr(StaticToken("edl-secret"))
    settings = Settings(cdse_password="pw-123456", asf_token="edl-secret", ftp_password="ftp-secret")
    shown = repr(settings.redacted())
    assert "pw-123456" not in shown and "edl-secret" not in shown and "ftp-secret" not in shown


def test_asf_token_is_not_in_error_messages(tmp_path, httpserver):
    from tests.test_providers import S1_ID, scene

    httpserver.expect_request(f"/SLC/SA/{S1_ID}.zip").respond_with_data("denied", status=403)
    cfg = Settings(asf_url=httpserver.url_for("").rstrip("/"), asf_token="edl-secret-token", http_retries=0,
                   workdir=str(tmp_path / "w"))
    with pytest.raises(Exception) as info:
        AsfProvider(cfg).fetch(scene(S1_ID), tmp_path)
    assert "403" in str(info.value) and "edl-secret-token" not in str(info.value)


def test_oneatlas_api_key_and_tokens_never_appear_in_output_logs_store_files_or_jobs(cli, repo, tmp_path, caplog,
                                                                                      monkeypatch):
    """The key and every token OneAtlas issued stay out of the command's output, the logs, the store,
    every file the run left (scenes file, storage, work folders, job logs) and the job descriptions —
    through a search, an estimate, an order, a refused token (401) and a failed order."""
    import json
    import pickle

    from ingester.config import load_settings
    from ingester.coordinator import Coordinator
    from ingester.store import Store
    from tests.fakes.oneatlas import FakeOneAtlas, footprint_around, product_zip

    caplog.set_level(logging.DEBUG)
    payload = Path(repo / "payloads" / "toulouse-phr.json")
    with FakeOneAtlas(expires_in=3600) as fake:
        for key, value in {**fake.env(), "INGESTER_RETRY_BACKOFF": "0", "INGESTER_ONEATLAS_ORDER_RECHECK": "0.2",
                           "INGESTER_WORKERS": "2"}.items():
            monkeypatch.setenv(key, value)
        zipped = product_zip("PHR")
        ok = fake.add_item("DS_PHR1A_202204101053440_FR1_PX_E001N43_0615_01230", "2022-04-10T10:53:44.012Z",
                           footprint_around(1.445, 43.601), product=zipped)
        bad = fake.add_item("DS_PHR1A_202204111053440_FR1_PX_E001N43_0615_01231", "2022-04-11T10:53:44.012Z",
                            footprint_around(1.445, 43.601), product=zipped)
        fake.failures[bad] = ("rejected", "Rejected", "E1")
        outputs = [cli("scenes", payload, "--estimate", "--json")]
        fake.unauthorized_next = 1  # a refused token on the way: renewed, the request sent again
        outputs.append(cli("aoi", payload, "--order", "--create-layers", "--max-wait", "30", "--json"))
        assert outputs[-1].exit_code == 4, outputs[-1].stderr  # one delivered, one rejected
        with Store("outputs/ingester.db") as st:
            jobs = [pickle.dumps(Coordinator(st, "ToulousePHR", load_settings()).scene_job(i, 9)) for i in (1, 2)]
            assert {json.loads(x)["uuid"] for (x,) in st.execute("SELECT tags FROM scene")} == {ok, bad}
        secrets = [fake.api_key, *fake.issued_tokens()]
    assert len(secrets) >= 3
    haystack = "\n".join([*(o.stdout + o.stderr for o in outputs), caplog.text, _all_text(tmp_path)])
    assert [s for s in secrets if s in haystack] == []
    assert not any(fake.api_key in job.decode("latin-1") for job in jobs)  # a job carries a token, never the key
