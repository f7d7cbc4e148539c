"""The store's file under faults (issue 15 item 12): a full disk mid-run, a read-only or immutable
store, a read-only file system, a damaged page. Each is a clear message with a documented exit code,
never a traceback; read-only commands still work where the store cannot be written; a run stopped by
a full disk finishes once space is freed.

Making a file immutable, mounting a read-only view of a folder or a small file system needs root:
those cases use the real thing when the tests run as root, file modes otherwise (or are skipped)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingester.store import Store
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import write_s2_scenes

W = "tests.fakes.workers"
AOI = "DenmarkDemoS2"
ROOT = os.geteuid() == 0


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


@pytest.fixture(autouse=True)
def _markers(tmp_path, monkeypatch):
    (tmp_path / "markers").mkdir()
    monkeypatch.setenv("FAKE_WORKER_MARKERS", str(tmp_path / "markers"))


def workers(*args: str) -> list[str]:
    return [*args, "--workers", "1", "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed"]


def ingest(cli, payload: Path, tmp_path: Path, db: Path, scenes: int = 3) -> None:
    r = cli(*workers("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "scenes.json", scenes),
                     "--create-layers", "--db", db))
    assert r.exit_code == 0, r.stderr


def no_traceback(r) -> None:
    assert "Traceback" not in (r.stderr or ""), r.stderr


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only_view(folder: Path) -> Iterator[Path]:
    """The folder as a read-only file system (a read-only bind mount) when root, else with its write
    permission removed (the same refusal for a process that is not root)."""
    view = folder.parent / f"{folder.name}-ro"
    view.mkdir()
    if ROOT:
        if not (_run("mount", "--bind", str(folder), str(view))
                and _run("mount", "-o", "remount,ro,bind", str(view))):
            _run("umount", str(view))
            pytest.skip("cannot mount a read-only view here")
        try:
            yield view
        finally:
            _run("umount", str(view))
        return
    view.rmdir()
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield folder
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """The store file cannot be written: `chattr +i` when root (as an administrator or a backup tool
    leaves it), mode 0444 otherwise."""
    if ROOT:
        if not _run("chattr", "+i", str(path)):
            pytest.skip("chattr +i is not supported here")
        try:
            yield
        finally:
            _run("chattr", "-i", str(path))
        return
    mode = path.stat().st_mode
    path.chmod(0o444)
    try:
        yield
    finally:
        path.chmod(mode)


# --- read-only -----------------------------------------------------------------------------------------

def test_read_only_commands_work_on_a_store_on_a_read_only_file_system(cli, payload, tmp_path):
    folder = tmp_path / "store"
    ingest(cli, payload, tmp_path, folder / "ingester.db")
    with read_only_view(folder) as view:
        db = view / "ingester.db"
        r = cli("status", AOI, "--db", db, "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["scenes"]["done"] == 3
        for command in (["aois"], ["list", "scenes", AOI], ["list", "tiles", AOI], ["history", "--scene", "1"],
                        ["dot", AOI], ["datasets", AOI], ["layers", "list"]):
            r = cli(*command, "--db", db)
            assert r.exit_code == 0, (command, r.stderr)
        r = cli(*workers("run", AOI, "--db", db))
        assert r.exit_code == 1, r.stderr
        no_traceback(r)
        assert "read-only" in r.stderr and "read-only commands (status, list, …) still work" in r.stderr


def test_commands_that_write_refuse_an_immutable_store_clearly_and_reads_still_work(cli, payload, tmp_path):
    db = tmp_path / "ingester.db"
    ingest(cli, payload, tmp_path, db)
    more = write_s2_scenes(tmp_path / "more.json", 5)
    with immutable(db):
        for command in (workers("run", AOI, "--db", db), workers("aoi", payload, "--scenes", more, "--db", db),
                        ["fail", "--scene", "1", "--db", db], ["layers", "add", "NDVI", "v1", "--db", db]):
            r = cli(*command)
            assert r.exit_code == 1, (command, r.stderr)
            no_traceback(r)
            assert f"{db}: the store is read-only" in r.stderr, r.stderr
        r = cli("status", AOI, "--db", db, "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["scenes"]["total"] == 3
    assert cli(*workers("aoi", payload, "--scenes", more, "--db", db)).exit_code == 0  # writable again


# --- a damaged page ------------------------------------------------------------------------------------

def _damage_index_page(db: Path, index: str) -> None:
    with sqlite3.connect(db) as conn:
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(bytes([0xA5]) * size)


def test_a_damaged_page_is_found_when_the_store_is_opened_for_writing(cli, payload, tmp_path):
    db = tmp_path / "ingester.db"
    ingest(cli, payload, tmp_path, db)
    _damage_index_page(db, "record_time")  # records: not read by `status`
    r = cli("status", AOI, "--db", db, "--json")
    assert r.exit_code == 0  # what status reads is intact
    before = db.read_bytes()
    r = cli(*workers("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "more.json", 5), "--db", db))
    assert r.exit_code == 1, r.stderr
    no_traceback(r)
    assert f"{db}: the store is damaged (PRAGMA quick_check:" in r.stderr
    assert "restore it from a backup" in r.stderr
    assert db.read_bytes() == before  # nothing written into a damaged file


# --- a full disk ---------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system that fills up."""
    if not ROOT:
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        _run("umount", "-l", str(disk))


def test_a_full_disk_mid_run_stops_with_a_message_and_the_run_finishes_once_space_is_freed(cli, payload, tmp_path,
                                                                                           small_disk):
    db = small_disk / "ingester.db"
    ingest(cli, payload, tmp_path, db, scenes=5)
    with Store(db) as st:  # the same work again: every job PENDING, as after a crash
        st.execute("UPDATE scene SET status = 'PENDING'")
        st.execute("UPDATE tile SET status = 'NEW'")
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(filler, "wb") as fh:  # leave room for a few pages of the write-ahead log, not for the run
        fh.write(b"\0" * max(free - 24 * 4096, 0))
    # runs are processes of their own here: the lock of a run that ended on a full disk is released by
    # its process ending (the next run takes over the lock of a dead process), as from cron
    r = subprocess.run([PYTHON, "-m", "ingester", *workers("run", AOI, "--db", str(db))], capture_output=True,
                       text=True, env=subprocess_env())
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{db}: the disk holding the store is full" in r.stderr
    assert "Free some space and run the command again" in r.stderr
    ran = len(list((tmp_path / "markers").iterdir())) - 10  # the first ingestion ran 10 jobs
    assert 0 < ran < 10  # the disk filled up during the run, not before it
    filler.unlink()
    r = subprocess.run([PYTHON, "-m", "ingester", *workers("run", AOI, "--db", str(db), "--json")],
                       capture_output=True, text=True, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["summary"]
    assert summary["scenes"]["done"] == 5 and summary["tiles"]["done"] == 5
    with Store(db) as st:
        assert st.one("PRAGMA quick_check") == "ok"
