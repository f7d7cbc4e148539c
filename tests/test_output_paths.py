"""`-o` never overwrites an input of the same command (the payload, the scenes file, the store)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fakes.aoi_data import write_s2_scenes
from tests.fakes.cdse_odata import FakeCdseCatalogue


@pytest.fixture
def fake():
    with FakeCdseCatalogue() as server:
        yield server


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))


def test_scenes_refuses_to_write_over_its_payload(cli, payload, fake):
    before = payload.read_bytes()
    result = cli("scenes", payload, "-o", payload, env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2, result.stderr
    assert "--output" in result.stderr and "p.json" in result.stderr and "payload" in result.stderr
    assert payload.read_bytes() == before and fake.requests == []  # refused before any search


def test_scenes_refuses_an_output_that_is_a_symlink_to_its_payload(cli, payload, fake, tmp_path):
    link = tmp_path / "link.json"
    os.symlink(payload, link)
    before = payload.read_bytes()
    result = cli("scenes", payload, "-o", link, env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2 and "payload" in result.stderr
    assert payload.read_bytes() == before


def test_scenes_refuses_the_payload_named_through_another_path(cli, payload, fake, tmp_path):
    (tmp_path / "sub").mkdir()
    result = cli("scenes", payload, "-o", tmp_path / "sub" / ".." / "p.json",
                 env={"INGESTER_CDSE_CATALOGUE_URL": fake.url})
    assert result.exit_code == 2 and "payload" in result.stderr


def test_tiles_refuses_to_write_over_its_scenes_file_or_payload(cli, payload, tmp_path):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 2)
    before = Path(scenes).read_bytes()
    result = cli("tiles", payload, "--scenes", scenes, "-o", scenes)
    assert result.exit_code == 2 and "scenes file" in result.stderr
    assert Path(scenes).read_bytes() == before
    result = cli("tiles", payload, "--scenes", scenes, "-o", payload)
    assert result.exit_code == 2 and "payload" in result.stderr


def test_tiles_refuses_to_write_over_the_store(cli, payload, tmp_path):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    db = tmp_path / "store.db"
    db.write_bytes(b"")
    result = cli("tiles", payload, "--scenes", scenes, "--db", db, "-o", db)
    assert result.exit_code == 2 and "store" in result.stderr
    assert db.read_bytes() == b""


def test_dot_and_stac_refuse_to_write_over_the_store(cli, payload, tmp_path):
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    db = tmp_path / "store.db"
    worker = "tests.fakes.workers:succeed"
    env = {"INGESTER_SCENE_WORKER": worker, "INGESTER_TILE_WORKER": worker}
    assert cli("aoi", payload, "--scenes", scenes, "--db", db, "--create-layers", "--workers", "1", "-q",
               env=env).exit_code == 0
    size = db.stat().st_size
    result = cli("dot", "DenmarkDemoS2", "--db", db, "-o", db)
    assert result.exit_code == 2 and "store" in result.stderr
    result = cli("stac", "DenmarkDemoS2", "--db", db, "-o", db)
    assert result.exit_code == 2 and "store" in result.stderr
    assert db.stat().st_size == size
    assert cli("dot", "DenmarkDemoS2", "--db", db, "-o", tmp_path / "g.dot").exit_code == 0
