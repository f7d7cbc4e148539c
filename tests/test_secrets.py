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
