"""The cron wrapper of README.md ("Running from cron"), extracted from the README and run as is with
`sh` against the fake catalogue and test workers: silent on exit codes 0, 3 and 5, one line per AOI
that needs a person (4) or that failed otherwise, each AOI's messages in its log (issue 12, done means)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.cdse_odata import FakeCdseCatalogue, s2_product


def readme_script(repo: Path) -> str:
    text = (repo / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```sh\n(#!/bin/sh\n# ingester-cron\.sh.*?)```", text, re.S)
    assert found, "README.md has no ```sh block starting with '#!/bin/sh' and '# ingester-cron.sh'"
    return found.group(1)


def payload(repo: Path, folder: Path, name: str, start: str, end: str) -> str:
    doc = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    doc.update({"name": name, "start_time": start, "end_time": end, "layers": {}})  # layers: none to create
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return name


@pytest.fixture
def site(tmp_path, repo, monkeypatch):
    """A cron site: the script, `ingester` on PATH, payloads/cron/, a fake catalogue with one product per day."""
    (tmp_path / "ingester-cron.sh").write_text(readme_script(repo))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "ingester"
    exe.write_text(f'#!/bin/sh\nexec "{PYTHON}" -m ingester "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "payloads" / "cron").mkdir(parents=True)
    with FakeCdseCatalogue() as catalogue:
        over = box(9.0, 54.1, 10.6, 55.9)
        products = {day: s2_product(sensing=datetime(2022, 1, day, 10, 34, 31, tzinfo=UTC), geometry=over)
                     for day in (2, 5, 8)}
        catalogue.add(products.values())
        script = tmp_path / "worker-script.json"
        script.write_text("{}")
        env = subprocess_env({
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "INGESTER_CDSE_CATALOGUE_URL": catalogue.url,
            "INGESTER_SCENE_WORKER": "tests.fakes.workers:scripted",
            "INGESTER_TILE_WORKER": "tests.fakes.workers:succeed",
            "INGESTER_WORKERS": "1", "INGESTER_RETRY_BACKOFF": "0",
            "FAKE_WORKER_SCRIPT": str(script),
        })
        yield tmp_path, env, script, {day: p["Name"][:-5] for day, p in products.items()}


def cron(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "ingester-cron.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def scene(tmp_path: Path, aoi: str) -> tuple[str, int]:
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        return st.execute("SELECT s.status, s.attempts FROM scene s JOIN aoi a ON a.id = s.aoi_id WHERE a.name = ?",
                          (aoi,)).fetchone()


def test_the_readme_cron_script_is_silent_on_0_3_5_and_reports_4_and_other_failures(site, repo):
    tmp_path, env, script, ids = site
    cron_dir = tmp_path / "payloads" / "cron"
    payload(repo, cron_dir, "early", "2022-01-01T00:00:00Z", "2022-01-03T00:00:00Z")   # the product of the 2nd
    payload(repo, cron_dir, "middle", "2022-01-04T00:00:00Z", "2022-01-06T00:00:00Z")  # the product of the 5th
    script.write_text(json.dumps({ids[2]: ["deferred"]}))

    # 0 and 5: nothing to say
    done = cron(tmp_path, env)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert scene(tmp_path, "middle")[0] == "DONE"
    assert scene(tmp_path, "early")[0] == "PENDING"  # deferred
    assert "deferred until" in (tmp_path / "outputs" / "logs" / "early.log").read_text()

    # 3: another run holds the AOI
    attempts = scene(tmp_path, "early")[1]
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        st.execute("UPDATE aoi SET lock_run = 'cron-before', lock_pid = ?, lock_host = ?, lock_started = 'now', "
                   "lock_heartbeat = ? WHERE name = 'early'", (os.getpid(), os.uname().nodename, time.time()))
    done = cron(tmp_path, env)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert "locked by another run" in (tmp_path / "outputs" / "logs" / "early.log").read_text()
    assert scene(tmp_path, "early")[1] == attempts
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        st.execute("UPDATE aoi SET lock_run = NULL, lock_pid = NULL WHERE name = 'early'")

    # 4: jobs that need a person are reported, one line for that AOI only
    payload(repo, cron_dir, "late", "2022-01-07T00:00:00Z", "2022-01-09T00:00:00Z")  # the product of the 8th
    script.write_text(json.dumps({ids[2]: ["deferred"], ids[8]: ["fatal"]}))
    done = cron(tmp_path, env)
    assert done.returncode == 4, done.stderr
    assert done.stdout == "late: some jobs ended FAILED or RETRY (ingester status; outputs/logs/late.log)\n"
    assert scene(tmp_path, "late")[0] == "FAILED"

    # anything else (here a broken payload: exit 2) is reported too, and the others still run
    (cron_dir / "zz-broken.json").write_text("{ not json")
    done = cron(tmp_path, env)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "late: some jobs ended FAILED or RETRY (ingester status; outputs/logs/late.log)",
        "zz-broken: ingester exited 2 (outputs/logs/zz-broken.log)"]
    assert "invalid JSON" in (tmp_path / "outputs" / "logs" / "zz-broken.log").read_text()

    # once the deferred job is due and its product can be had, the run finishes it, silently
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        st.execute("UPDATE scene SET not_before = 0 WHERE status = 'PENDING'")
    script.write_text(json.dumps({ids[8]: ["fatal"]}))
    (cron_dir / "zz-broken.json").unlink()
    done = cron(tmp_path, env)
    assert done.returncode == 4 and done.stdout.startswith("late:")
    assert scene(tmp_path, "early")[0] == "DONE"


def test_the_readme_cron_script_finds_the_venv_ingester_under_crons_own_path(tmp_path, repo):
    """cron runs jobs with PATH=/usr/bin:/bin: a venv's `ingester` is not on it (exit 127). The script
    puts the folder's .venv/bin first."""
    (tmp_path / "ingester-cron.sh").write_text(readme_script(repo))
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "ingester"
    exe.write_text(f'#!/bin/sh\nexec "{PYTHON}" -m ingester "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    cron_dir = tmp_path / "payloads" / "cron"
    cron_dir.mkdir(parents=True)
    (cron_dir / "broken.json").write_text("{ not json")  # any run of ingester at all: exit 2, reported
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("INGESTER_")}
    env["PATH"] = "/usr/bin:/bin"
    done = cron(tmp_path, env)
    assert done.stdout == "broken: ingester exited 2 (outputs/logs/broken.log)\n", done.stderr
    log = (tmp_path / "outputs" / "logs" / "broken.log").read_text()
    assert "invalid JSON" in log and "not found" not in log
