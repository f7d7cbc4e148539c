"""`ingester config`: the effective settings, where each one comes from, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def by_name(out: str) -> dict[str, dict]:
    return {item["name"]: item for item in json.loads(out)}


def test_config_says_where_each_setting_comes_from_and_masks_secrets(cli, tmp_path, monkeypatch):
    Path("ingester.toml").write_text('http_timeout = 12.5\nstorage_uri = "s3://bucket/prefix"\nhttp_retries = 2\n')
    monkeypatch.setenv("INGESTER_HTTP_RETRIES", "7")  # the environment beats ingester.toml
    monkeypatch.setenv("INGESTER_CDSE_USERNAME", "alice")
    monkeypatch.setenv("INGESTER_CDSE_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("INGESTER_CDSE_CATALOGUE_URL", "http://bob:hunter2@127.0.0.1:9/odata/v1")
    r = cli("config", "--workers", "3", "--db", "x.db", "--json")
    assert r.exit_code == 0, r.stderr
    items = by_name(r.stdout)
    assert items["workers"] == {"name": "workers", "value": 3, "source": "option", "origin": "--workers",
                                "variable": "INGESTER_WORKERS"}
    assert (items["db"]["value"], items["db"]["source"], items["db"]["origin"]) == ("x.db", "option", "--db")
    assert (items["http_retries"]["value"], items["http_retries"]["source"]) == (7, "environment")
    assert items["http_retries"]["origin"] == "INGESTER_HTTP_RETRIES"
    assert (items["http_timeout"]["value"], items["http_timeout"]["source"]) == (12.5, "ingester.toml")
    assert items["http_timeout"]["origin"] == str(tmp_path / "ingester.toml")
    assert (items["lease_seconds"]["value"], items["lease_seconds"]["source"]) == (300, "default")
    assert items["cdse_password"]["value"] == "***" and items["cdse_password"]["source"] == "environment"
    assert items["cdse_catalogue_url"]["value"] == "http://bob:***@127.0.0.1:9/odata/v1"
    assert items["asf_token"]["value"] == ""  # not set: nothing to mask
    for secret in ("s3cret-pass", "hunter2"):
        assert secret not in r.stdout and secret not in r.stderr
    text = cli("config", "--workers", "3").stdout.splitlines()
    assert text[0].split("\t") == ["setting", "value", "source"]
    assert "workers\t3\toption --workers" in text
    assert "http_retries\t7\tenvironment INGESTER_HTTP_RETRIES" in text
    assert f"http_timeout\t12.5\tingester.toml {tmp_path / 'ingester.toml'}" in text
    assert "cdse_password\t***\tenvironment INGESTER_CDSE_PASSWORD" in text
    assert "lease_seconds\t300\tdefault" in text


def test_config_names_the_file_of_ingester_config_and_netrc_credentials(cli, tmp_path, monkeypatch):
    conf = tmp_path / "elsewhere.toml"
    conf.write_text("retry_backoff = 5\n")
    monkeypatch.setenv("INGESTER_CONFIG", str(conf))
    netrc = Path.home() / ".netrc"
    netrc.write_text("machine identity.dataspace.copernicus.eu login carol password n3trc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("INGESTER_CDSE_TOKEN_URL",
                       "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token")
    r = cli("config", "--json")
    assert r.exit_code == 0, r.stderr
    items = by_name(r.stdout)
    assert (items["retry_backoff"]["value"], items["retry_backoff"]["origin"]) == (5.0, str(conf))
    assert items["cdse_username"] == {"name": "cdse_username", "value": "carol", "source": "netrc",
                                      "origin": f"{netrc} (identity.dataspace.copernicus.eu)",
                                      "variable": "INGESTER_CDSE_USERNAME"}
    assert items["cdse_password"]["value"] == "***" and items["cdse_password"]["source"] == "netrc"
    assert "n3trc-pass" not in r.stdout + r.stderr


def test_config_with_an_invalid_setting_is_exit_2_naming_it(cli, monkeypatch):
    monkeypatch.setenv("INGESTER_HTTP_TIMEOUT", "soon")
    r = cli("config", "--json")
    assert r.exit_code == 2
    error = json.loads(r.stdout)["error"]
    assert error == "INGESTER_HTTP_TIMEOUT: 'soon' is not a number"
    assert "INGESTER_HTTP_TIMEOUT" in r.stderr


@pytest.mark.parametrize("where, text, message", [
    ("env", "abc", "INGESTER_WORKERS: 'abc' is not a whole number"),
    ("env", "2.5", "INGESTER_WORKERS: '2.5' is not a whole number"),
    ("toml", '"three"', "ingester.toml: workers: 'three' is not a whole number"),
    ("toml", "3.5", "ingester.toml: workers: 3.5 is not a whole number"),
])  # fmt: skip
def test_a_setting_of_the_wrong_type_is_named_in_plain_words(cli, monkeypatch, where, text, message):
    if where == "env":
        monkeypatch.setenv("INGESTER_WORKERS", text)
    else:
        Path("ingester.toml").write_text(f"workers = {text}\n")
    for args in (("config",), ("layers", "list")):
        r = cli(*args)
        assert r.exit_code == 2
        assert r.stderr.strip() == f"error: {message}"
        assert "invalid literal" not in r.stderr


def test_config_shows_effective_values_and_runs_the_settings_checks_of_aoi(cli, monkeypatch):
    import os

    r = cli("config", "--json")
    items = by_name(r.stdout)
    cpus = min(os.cpu_count() or 1, 32)
    assert (items["workers"]["value"], items["workers"]["source"]) == (cpus, "default")
    assert items["providers"]["value"] == "local,url,cdse,stac-assets,landsat-aws"  # the chain that runs
    monkeypatch.setenv("INGESTER_PROVIDERS", "")  # set but empty: the default list
    assert by_name(cli("config", "--json").stdout)["providers"]["value"] == "local,url,cdse,stac-assets,landsat-aws"
    assert f"workers\t{cpus}\tdefault (0: the CPU count)" in cli("config").stdout.splitlines()

    monkeypatch.setenv("INGESTER_PROVIDERS", "cdse,foo")
    r = cli("config")
    assert r.exit_code == 2 and "INGESTER_PROVIDERS: unknown provider(s) foo" in r.stderr
    monkeypatch.setenv("INGESTER_PROVIDERS", "local")
    monkeypatch.setenv("INGESTER_BUCKET_PATTERNS", "sentinel2=/not/a/bucket/{SCENE}.zip")
    r = cli("config")
    assert r.exit_code == 2 and "INGESTER_BUCKET_PATTERNS" in r.stderr


def test_config_help_documents_its_options(cli):
    text = cli("config", "--help").stdout
    for option in ("--db", "--workers", "--scene-worker", "--tile-worker", "--json"):
        assert option in text
