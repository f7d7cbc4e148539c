"""Progress of a run: download bars (bytes, throughput, time remaining) drawn by the coordinator from
what its worker processes report, on a terminal only; attempt durations in `history`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from rich.console import Console

from ingester.app import AoiSession
from ingester.cli.aoi_cmd import run_with_progress
from ingester.cli.common import UI
from ingester.config import load_settings
from ingester.coordinator import release_lock
from ingester.ingest import commit, prepare
from ingester.payload import load_payload
from ingester.store import Store
from tests.fakes.aoi_data import S2_IDS, write_s2_scenes

W = "tests.fakes.workers"
AOI = "DenmarkDemoS2"


def ingested(tmp_path: Path, repo: Path, count: int = 2) -> Store:
    payload = load_payload(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))
    store = Store(tmp_path / "outputs" / "ingester.db")
    settings = load_settings({"db": str(tmp_path / "outputs" / "ingester.db")})
    plan = prepare(store, payload, settings, scenes_file=str(write_s2_scenes(tmp_path / "s.json", count)),
                   create_layers=True)
    commit(store, plan, "ingest", create_layers=True)
    release_lock(store, AOI, "ingest")
    return store


def test_a_run_on_a_terminal_draws_every_download_of_the_worker_processes(tmp_path, repo):
    store = ingested(tmp_path, repo)
    settings = load_settings({"db": str(tmp_path / "outputs" / "ingester.db"), "workers": 2,
                              "scene_worker": f"{W}:report_progress", "tile_worker": f"{W}:succeed"})
    ui = UI()
    screen = io.StringIO()
    ui.err = Console(file=screen, force_terminal=True, width=160)
    ui.interactive = True
    store.close()
    with AoiSession(settings, AOI, runs=True) as session:
        report = run_with_progress(ui, session)
    assert report.summary["status"] == "DONE" and report.jobs == 4
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        messages = {m for (m,) in st.execute("SELECT message FROM job_attempt WHERE kind = 'scene'")}
    assert messages == {"progress sent by QueueProgress"}  # each worker process reported to the display
    text = screen.getvalue()
    for sid in S2_IDS[:2]:
        assert f"{sid}.zip"[:40] in text  # one bar per download, named by its file
    assert "3.0/3.0 kB" in text  # bytes done / total
    assert "/s" in text  # throughput
    assert "0:00:0" in text  # time remaining
    assert "DenmarkDemoS2: 4 jobs, 4 attempts finished" in text  # the run's line


def test_without_a_terminal_there_is_no_display_and_workers_report_nothing(cli, repo, tmp_path):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 2), "--create-layers",
            "--workers", "1", "--scene-worker", f"{W}:report_progress", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    assert ".zip" not in r.stderr and "kB" not in r.stderr and "\x1b[" not in r.stderr
    with Store("outputs/ingester.db") as st:
        messages = {m for (m,) in st.execute("SELECT message FROM job_attempt WHERE kind = 'scene'")}
    assert messages == {"no progress display"}


def test_history_shows_how_long_each_attempt_took(cli, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER_SLEEP", "0.5")
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    r = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers",
            "--workers", "1", "--scene-worker", f"{W}:sleep", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    (attempt,) = json.loads(cli("history", "--scene", "1", "--json").stdout)["attempts"]
    assert attempt["duration_s"] >= 0.5  # the worker slept that long; the time waiting in the queue is not in it
    line = cli("history", "--scene", "1").stdout.splitlines()[0]
    assert line.split("\t")[2] == f"{attempt['duration_s']:.1f} s"
