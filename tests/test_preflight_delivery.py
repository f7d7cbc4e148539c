"""Pre-flight: every product to download needs a configured provider that may deliver it. CDSE scenes
without a CDSE account and without another source (local archive, bucket, FTP) are exit 2 in `check`,
`aoi --dry-run` and `aoi`, naming the scenes and the settings to set, before anything is written (before,
`check` passed with "credentials skipped" and the run ended every scene RETRY). With another source
the account is not needed. The download chain's messages leave out providers that cannot apply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingester.config import load_settings
from ingester.providers.chain import deliverers, fetch_product
from ingester.scenes import read_scenes
from tests.fakes.aoi_data import S2_IDS, write_s2_scenes

DB = Path("outputs/ingester.db")


@pytest.fixture
def payload(repo, tmp_path) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))


@pytest.mark.parametrize("command", [("check",), ("aoi", "--dry-run"), ("aoi",)])
def test_cdse_scenes_without_an_account_or_another_source_are_exit_2_naming_the_settings(cli, payload, tmp_path,
                                                                                       command):
    scenes = write_s2_scenes(tmp_path / "s.json", 2)
    result = cli(*command, payload, "--scenes", scenes, "--create-layers")
    assert result.exit_code == 2, result.stderr
    assert "2 products can only come from CDSE, which has no account here" in result.stderr
    assert S2_IDS[0] in result.stderr and S2_IDS[1] in result.stderr
    assert "INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD" in result.stderr
    assert "INGESTER_LOCAL_PATH" in result.stderr
    assert not DB.exists()


def test_check_names_the_failed_check_in_json_too(cli, payload, tmp_path):
    result = cli("check", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers", "--json")
    assert result.exit_code == 2
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["credentials"]["status"] == "failed"
    assert "1 product can only come from CDSE" in checks["credentials"]["detail"]


def test_with_another_source_the_account_is_not_needed(cli, payload, tmp_path, monkeypatch):
    (tmp_path / "archive").mkdir()
    monkeypatch.setenv("INGESTER_LOCAL_PATH", str(tmp_path / "archive"))
    result = cli("check", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers", "--json")
    assert result.exit_code == 0, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["credentials"] == {"name": "credentials", "status": "skipped",
                                     "detail": "no CDSE account: not needed, every product has another source"}


def test_a_listed_provider_without_its_setting_delivers_nothing(cli, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTER_PROVIDERS", "local")  # INGESTER_LOCAL_PATH unset
    result = cli("check", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers")
    assert result.exit_code == 2 and "can only come from CDSE" in result.stderr


def test_the_chain_tries_and_reports_only_the_providers_that_may_have_the_scene(tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTER_PROVIDERS", "local,url,cdse")
    settings = load_settings()
    scene = read_scenes(write_s2_scenes(tmp_path / "s.json", 1)).scenes[0]
    assert deliverers(scene, settings) == ["cdse"]  # not local (no path), url (no link), stac-assets, landsat-aws
    with pytest.raises(Exception) as failed:
        fetch_product(scene, tmp_path / "work", settings, attempts=1, sleep=lambda s: None)
    message = str(failed.value)
    assert "cdse:" in message
    for other in ("landsat-aws", "stac-assets", "local:", "url:"):
        assert other not in message
