"""An AOI's storage is fixed when the AOI is created (issue 15 item 6): INGESTER_STORAGE_URI, a new
payload storage_uri or a scenes file's `data.storage_uri` that differ are exit 2 before anything is
written, instead of splitting the AOI's files across two storages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingester.store import Store
from tests.fakes.aoi_data import S2_IDS, write_s2_scenes

AOI = "DenmarkDemoS2"


@pytest.fixture
def setup(tmp_path, repo):
    """A payload without storage_uri, a local archive holding every scene's zip, and the run's env."""
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))
    archive = tmp_path / "archive"
    archive.mkdir()
    for sid in S2_IDS:
        shutil.make_archive(str(archive / sid), "zip", root_dir=tmp_path, base_dir="p.json")
    env = {"INGESTER_PROVIDERS": "local", "INGESTER_LOCAL_PATH": str(archive),
           "INGESTER_TILE_WORKER": "tests.fakes.workers:succeed", "INGESTER_STORAGE_URI": str(tmp_path / "A")}
    return payload, env


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.zip")) if folder.exists() else []


def snapshot(db: Path) -> tuple[dict, str]:
    with Store(db) as st:
        return st.counts(), st.one("SELECT settings FROM aoi")


def test_ingester_storage_uri_cannot_move_an_existing_aoi(cli, setup, tmp_path):
    payload, env = setup
    first = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s3.json", 3), "--create-layers",
                "--workers", "1", "-q", env=env)
    assert first.exit_code == 0, first.stderr
    assert len(files(tmp_path / "A")) == 3
    before = snapshot(tmp_path / "outputs" / "ingester.db")
    moved = {**env, "INGESTER_STORAGE_URI": str(tmp_path / "B")}
    result = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s5.json", 5), "--workers", "1", "-q",
                 env=moved)
    assert result.exit_code == 2, result.stderr
    assert str(tmp_path / "A") in result.stderr and str(tmp_path / "B") in result.stderr
    assert "INGESTER_STORAGE_URI" in result.stderr
    assert files(tmp_path / "B") == [] and snapshot(tmp_path / "outputs" / "ingester.db") == before
    # `run` too: the AOI's pending work never goes to another storage
    result = cli("run", AOI, "-q", env=moved)
    assert result.exit_code == 2 and str(tmp_path / "A") in result.stderr
    assert snapshot(tmp_path / "outputs" / "ingester.db") == before
    # the same storage, spelt differently (relative, trailing slash), is the same storage
    same = {**env, "INGESTER_STORAGE_URI": "A/"}
    again = cli("aoi", payload, "--scenes", tmp_path / "s5.json", "--workers", "1", "-q", env=same)
    assert again.exit_code == 0, again.stderr
    assert len(files(tmp_path / "A")) == 5 and files(tmp_path / "B") == []


def test_a_scenes_file_storage_uri_cannot_override_the_aoi_storage(cli, setup, tmp_path):
    payload, env = setup
    assert cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s1.json", 1), "--create-layers", "-q",
               "--workers", "1", env=env).exit_code == 0
    before = snapshot(tmp_path / "outputs" / "ingester.db")
    doc = json.loads(write_s2_scenes(tmp_path / "s3.json", 3).read_text())
    doc["features"][2]["properties"]["data"]["storage_uri"] = str(tmp_path / "B")
    (tmp_path / "s3.json").write_text(json.dumps(doc))
    result = cli("aoi", payload, "--scenes", tmp_path / "s3.json", "-q", "--workers", "1", env=env)
    assert result.exit_code == 2, result.stderr
    assert S2_IDS[2] in result.stderr and "data.storage_uri" in result.stderr and str(tmp_path / "B") in result.stderr
    assert files(tmp_path / "B") == [] and snapshot(tmp_path / "outputs" / "ingester.db") == before


def test_a_new_aoi_takes_one_storage_for_all_its_scenes(cli, setup, tmp_path):
    payload, env = setup
    doc = json.loads(write_s2_scenes(tmp_path / "s2.json", 2).read_text())
    doc["features"][1]["properties"]["data"]["storage_uri"] = str(tmp_path / "B")
    (tmp_path / "s2.json").write_text(json.dumps(doc))
    result = cli("aoi", payload, "--scenes", tmp_path / "s2.json", "--create-layers", "-q", env=env)
    assert result.exit_code == 2 and S2_IDS[1] in result.stderr
    assert not (tmp_path / "outputs" / "ingester.db").exists()


def test_a_new_payload_storage_uri_is_refused_and_the_scene_storage_may_repeat_the_aoi_one(cli, setup, tmp_path):
    payload, env = setup
    doc = json.loads(write_s2_scenes(tmp_path / "s2.json", 2).read_text())
    doc["features"][1]["properties"]["data"]["storage_uri"] = str(tmp_path / "A")  # the same: fine
    (tmp_path / "s2.json").write_text(json.dumps(doc))
    assert cli("aoi", payload, "--scenes", tmp_path / "s2.json", "--create-layers", "-q", "--workers", "1",
               env=env).exit_code == 0
    data = json.loads(payload.read_text())
    data["storage_uri"] = str(tmp_path / "C")
    payload.write_text(json.dumps(data))
    result = cli("aoi", payload, "--scenes", tmp_path / "s2.json", "-q", env=env)
    assert result.exit_code == 2 and str(tmp_path / "C") in result.stderr


def test_run_and_retry_use_the_aoi_stored_storage_when_ingester_storage_uri_is_unset(cli, setup, tmp_path):
    payload, env = setup
    failing = {**env, "INGESTER_TILE_WORKER": "tests.fakes.workers:fail"}
    first = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s3.json", 3), "--create-layers",
                "--workers", "1", "-q", env=failing)
    assert first.exit_code == 4, first.stderr  # the tiles failed: RETRY
    assert len(files(tmp_path / "A")) == 3
    unset = {k: v for k, v in env.items() if k != "INGESTER_STORAGE_URI"}
    ran = cli("run", AOI, "-q", env=unset)
    assert ran.exit_code == 4, ran.stderr  # runs (nothing runnable now), is not refused for its storage
    retried = cli("retry", AOI, "-q", env=unset)
    assert retried.exit_code == 0, retried.stderr
    with Store(tmp_path / "outputs" / "ingester.db") as st:
        statuses = {row[0] for row in st.execute("SELECT status FROM tile")}
    assert statuses == {"DONE"}
    assert len(files(tmp_path / "A")) == 3 and not (tmp_path / "outputs" / "storage").exists()
    # `aoi` with more scenes, the setting still unset: the new scenes go to the AOI's storage too
    more = cli("aoi", payload, "--scenes", write_s2_scenes(tmp_path / "s5.json", 5), "--workers", "1", "-q", env=unset)
    assert more.exit_code == 0, more.stderr
    assert len(files(tmp_path / "A")) == 5 and not (tmp_path / "outputs" / "storage").exists()
