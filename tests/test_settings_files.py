"""The settings files follow one rule for secrets: `ingester.toml` (or the file of INGESTER_CONFIG)
holding a password, token or key that other users may read is refused with the chmod hint, exactly like
a `~/.netrc` with the same password; the secret itself is never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PASSWORD = "s3cr3t-PASS"


@pytest.mark.parametrize("where", ["ingester.toml", "INGESTER_CONFIG"])
def test_a_toml_file_with_a_secret_others_may_read_is_refused_like_a_netrc(cli, tmp_path, monkeypatch, where):
    path = Path("ingester.toml") if where == "ingester.toml" else tmp_path / "conf" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    if where == "INGESTER_CONFIG":
        monkeypatch.setenv("INGESTER_CONFIG", str(path))
    path.write_text(f'cdse_username = "alice"\ncdse_password = "{PASSWORD}"\n')
    path.chmod(0o644)
    for args in (("config",), ("layers", "list")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert f"{path}: refused (mode 644: readable by other users)" in result.stderr
        assert "secrets (cdse_password)" in result.stderr and f"chmod 600 {path}" in result.stderr
        assert PASSWORD not in result.stderr + result.stdout

    path.chmod(0o600)
    fine = cli("config", "--json")
    assert fine.exit_code == 0, fine.stderr
    assert {i["name"]: i["value"] for i in json.loads(fine.stdout)}["cdse_password"] == "***"


def test_the_netrc_rule_is_the_same_and_a_toml_file_without_secrets_may_be_readable(cli, tmp_path):
    Path("ingester.toml").write_text("http_retries = 3\n")
    Path("ingester.toml").chmod(0o644)
    assert cli("config").exit_code == 0
    netrc = Path.home() / ".netrc"
    netrc.write_text(f"machine identity.dataspace.copernicus.eu login alice password {PASSWORD}\n")
    netrc.chmod(0o644)
    result = cli("check", "--help")  # (help needs no settings)
    assert result.exit_code == 0
    result = cli("config")
    assert result.exit_code == 2
    assert f"{netrc}: refused (mode 644: readable by other users)" in result.stderr
    assert f"chmod 600 {netrc}" in result.stderr and PASSWORD not in result.stderr
