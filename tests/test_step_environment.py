"""Graph steps never inherit credentials: cloud keys and tokens (AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
AZURE_*, PC_SDK_SUBSCRIPTION_KEY), Earthdata tokens, the netrc path, the ingester's own passwords and the
user:password of proxy URLs stay out of every `cmd`, `python`, `docker` and `snap` step's environment,
while what steps legitimately need (PATH, HOME, locale, TMPDIR, GDAL_*/PROJ_* settings, proxies) is kept.
Checked with steps that dump their environment: end to end through `ingester aoi`, and for each engine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ingester.graph.engines import Invocation, run_step
from tests.fakes.aoi_data import S2_IDS, write_s2_scenes

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0002",
    "AWS_SESSION_TOKEN": "aws-session-token-0003",
    "AWS_PROFILE": "prod-profile-0004",
    "PC_SDK_SUBSCRIPTION_KEY": "pc-subscription-key-0005",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/gcp-key-0006.json",
    "AZURE_STORAGE_ACCOUNT_KEY": "azure-account-key-0007",
    "AZURE_STORAGE_SAS_TOKEN": "azure-sas-0008",
    "EARTHDATA_TOKEN": "earthdata-token-0009",
    "EDL_TOKEN": "edl-token-0010",
    "NETRC": "/secrets/netrc-0011",
    "INGESTER_CDSE_PASSWORD": "s3cr3t-PASS",
    "INGESTER_S3_SECRET_ACCESS_KEY": "ingester-s3-secret-0012",
    "GDAL_HTTP_USERPWD": "bob:gdal-password-0013",
    "MY_SERVICE_API_KEY": "some-api-key-0014",
}
KEPT = {
    "GDAL_CACHEMAX": "64",
    "PROJ_NETWORK": "ON",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "MY_TEAM_SETTING": "kept-as-is",
    "no_proxy": "localhost,127.0.0.1",
}
PROXY = ("https_proxy", "http://bob:proxy-password-0015@proxy.example:3128", "http://proxy.example:3128")

DUMP_SH = '''#!/bin/sh
for a in "$@"; do case $a in --out=*) out=${a#--out=};; esac; done
env > "$out"
'''
DUMP_PY = r'''#!{python}
import json, os, sys
out = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(("--out=", "-Pout=")))  # cmd/python/docker; snap
with open(out, "w") as fh:
    json.dump(dict(os.environ), fh)
'''


def set_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {**SECRETS, **KEPT}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(PROXY[0], PROXY[1])
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def check(env: dict[str, str], text: str) -> None:
    leaked = [k for k, v in SECRETS.items() if k in env or v in text]
    assert leaked == [], f"credentials inherited by the step: {leaked}"
    assert "proxy-password-0015" not in text
    assert env[PROXY[0]] == PROXY[2]  # the proxy is kept, without its credentials
    assert {k: env.get(k) for k in KEPT} == KEPT
    assert env.get("PATH") and env.get("HOME") and env.get("TMPDIR")


def parse_env_dump(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_cmd_step_run_by_ingester_aoi_sees_no_credential_but_what_it_needs(cli, repo, tmp_path, monkeypatch):
    dump = tmp_path / "dump-env.sh"
    dump.write_text(DUMP_SH)
    dump.chmod(0o755)
    graph = {"processing_steps": [{"engine": "cmd", "command": str(dump),
                                   "args": {"out": {"type": "out", "layer": "ENV", "extension": "txt"}}}],
             "out_files": [[{"layer": "ENV", "extension": "txt", "action": "to_create"}]]}
    (tmp_path / "DumpEnv.json").write_text(json.dumps(graph))
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload.update(tile_graph_name="DumpEnv.json", layers={})
    (tmp_path / "p.json").write_text(json.dumps(payload))
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.make_archive(str(archive / S2_IDS[0]), "zip", root_dir=tmp_path, base_dir="DumpEnv.json")
    monkeypatch.setenv("INGESTER_PROVIDERS", "local")
    monkeypatch.setenv("INGESTER_LOCAL_PATH", str(archive))
    monkeypatch.setenv("INGESTER_STORAGE_URI", str(tmp_path / "storage"))
    set_environment(monkeypatch, tmp_path)
    monkeypatch.delenv("INGESTER_CDSE_PASSWORD")  # (the ingester itself refuses a password without a user)
    monkeypatch.delenv("INGESTER_S3_SECRET_ACCESS_KEY")
    result = cli("aoi", tmp_path / "p.json", "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--workers", "1")
    assert result.exit_code == 0, result.stderr
    dumped = list((tmp_path / "storage").rglob("*_ENV.txt"))
    assert len(dumped) == 1
    text = dumped[0].read_text()
    env = parse_env_dump(text)
    assert env.get("INGESTER_STEP_ID")  # the step is the one the ingester started
    check(env, text)


@pytest.mark.parametrize("engine", ["cmd", "python", "docker", "snap"])
def test_no_engine_hands_a_credential_to_its_step(engine, tmp_path, monkeypatch):
    exe = tmp_path / "dump"
    exe.write_text(DUMP_PY.format(python=sys.executable))
    exe.chmod(0o755)
    set_environment(monkeypatch, tmp_path)
    out = tmp_path / "env.json"
    work = tmp_path / "work"
    work.mkdir()
    command = {"cmd": str(exe), "python": str(exe), "docker": "image:tag", "snap": "graph.xml"}[engine]
    inv = Invocation(engine=engine, command=command, args={"out": str(out)}, workdir=work, timeout=60)
    run_step(inv, tmp_path / "step.log", gpt=str(exe), docker=str(exe))  # docker and gpt: the dumping stand-in
    text = out.read_text()
    check(json.loads(text), text)
