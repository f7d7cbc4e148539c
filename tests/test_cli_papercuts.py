"""Small things a new user meets on the command line: numbers given to options named in plain words,
a closed pipe (`| head`) ending the command quietly with 141, aligned pre-flight rows, plurals, outputs
checked before any work and named in messages, a status map that says where it went, `dot --json`, and
unknown `{KEY}` placeholders refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO
from tests.fakes.aoi_data import s1_chain, write_s1_tiles, write_s2_scenes

W = "tests.fakes.workers"


@pytest.mark.parametrize("args, message", [
    (("scenes", "p.json", "--limit", "abc"), "Invalid value for '--limit': 'abc' is not a whole number"),
    (("scenes", "p.json", "--page", "-1"), "Invalid value for '--page': -1 is below 0"),
    (("aoi", "p.json", "--workers", "1.5"), "'1.5' is not a whole number"),
    (("aoi", "p.json", "--max-wait", "nan"), "Invalid value for '--max-wait': 'nan' is not a finite number"),
    (("history", "--scene", "abc"), "Invalid value for '--scene': 'abc' is not a whole number"),
    (("show", "s.json", "--max-cloud", "2O"), "Invalid value for '--max-cloud': '2O' is not a number"),
])  # fmt: skip
def test_a_bad_number_for_an_option_is_named_in_plain_words(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Input should be" not in result.stderr


def run_with_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """`ingester ARGS | head -0`: the reader of stdout is gone before the command writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([PYTHON, "-m", "ingester", *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("config",), ("config", "--json"), ("--help",)])
def test_a_closed_pipe_ends_the_command_quietly_with_141(args):
    done = run_with_closed_stdout(*args)
    assert (done.returncode, done.stderr) == (141, "")


def test_check_rows_stay_aligned_and_a_failed_one_is_in_capitals(cli, repo, tmp_path):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    result = cli("check", payload, "--scenes", write_s2_scenes(tmp_path / "s.json", 1), "--create-layers")
    assert result.exit_code == 2
    rows = {line.split()[1]: line for line in result.stderr.splitlines() if line.split()[:1] != ["error:"]}
    assert rows["credentials"].startswith("FAILED      credentials  1 product can only come from CDSE")
    assert rows["settings"].startswith("ok          settings     providers")
    assert "error: failed" not in result.stderr
    quiet = cli("check", payload, "--scenes", tmp_path / "s.json", "--create-layers", "--quiet")
    assert "FAILED      credentials" in quiet.stderr and "ok          settings" not in quiet.stderr


def test_show_when_every_scene_matches_and_plurals(cli, tmp_path):
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    result = cli("show", scenes, "--max-cloud", "20")
    assert result.exit_code == 0, result.stderr
    assert "1 of 1 scene matches (cloud ≤ 20 %): line 2; nothing to delete" in result.stderr
    assert "lines none" not in result.stderr and "the other 0" not in result.stderr


@pytest.fixture
def s1_aoi(cli, tmp_path, repo, monkeypatch) -> str:
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))
    chain = s1_chain("DenmarkDemoS1", 1, 1)
    r = cli("aoi", payload, "--tiles", write_s1_tiles(tmp_path / "t.json", chain), "--create-layers", "--workers", "1",
            "--scene-worker", f"{W}:succeed", "--tile-worker", f"{W}:succeed")
    assert r.exit_code == 0, r.stderr
    assert "Ingestion of 1 scene and 1 tile from" in r.stderr and "2 jobs, 2 attempts in this run" in r.stderr
    return "DenmarkDemoS1"


def test_status_map_says_where_it_wrote_and_dot_has_json(cli, s1_aoi, tmp_path):
    result = cli("status", s1_aoi, "--map", tmp_path / "status.png")
    assert result.exit_code == 0, result.stderr
    assert f"status map of {s1_aoi}: 1 footprint, coloured by status → {tmp_path / 'status.png'}" in result.stderr
    assert (tmp_path / "status.png").stat().st_size > 0

    text = cli("dot", s1_aoi)
    as_json = cli("dot", s1_aoi, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {"aoi": s1_aoi, "dot": text.stdout}
    written = cli("dot", s1_aoi, "-o", tmp_path / "g.dot", "--json")
    assert json.loads(written.stdout)["output"] == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == text.stdout


def test_outputs_are_checked_before_any_work_and_named_in_messages(cli, repo, tmp_path):
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    (tmp_path / "folder").mkdir()
    result = cli("scenes", payload, "-o", tmp_path / "folder")  # the catalogue is a closed port: no search ran
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --output {tmp_path / 'folder'}: is a folder, not a file path"
    (tmp_path / "a-file").write_text("x")
    scenes = write_s2_scenes(tmp_path / "s.json", 1)
    result = cli("filter", scenes, "--max-cloud", "50", "-o", tmp_path / "a-file" / "kept.json")
    assert result.exit_code == 2
    assert f"--output {tmp_path / 'a-file' / 'kept.json'}: {tmp_path / 'a-file'} is a file" in result.stderr
    assert ".part" not in result.stderr


def test_an_atomic_write_that_fails_names_the_output_not_its_temporary_file(tmp_path):
    from ingester.fileio import atomic_write_text

    with pytest.raises(OSError) as failed:
        atomic_write_text("/proc/kept.json", "{}")  # a folder nobody may create files in, root included
    assert failed.value.filename == "/proc/kept.json"
    with pytest.raises(IsADirectoryError) as failed:
        atomic_write_text(tmp_path, "{}")
    assert failed.value.filename == str(tmp_path)


def test_the_show_and_filter_help_says_payload_takes_files_only(cli):
    for command in ("show", "filter"):
        text = " ".join(cli(command, "--help").stdout.split())
        assert "an AOI in the store uses its own" not in text
        assert "a scenes or tiles file holds no AOI of its own" in text


def test_an_unknown_placeholder_in_annotations_urls_or_bucket_patterns_is_exit_2_with_the_known_keys(
        cli, repo, tmp_path, monkeypatch):
    doc = json.loads((repo / "payloads" / "denmark-s1.json").read_text())
    doc["annotations_urls"] = ["/data/{YEAR}/{SCEN}.zip"]
    Path("p.json").write_text(json.dumps(doc))
    result = cli("tiles", "p.json")
    assert result.exit_code == 2
    assert "field 'annotations_urls[0]': unknown key(s) {SCEN} in '/data/{YEAR}/{SCEN}.zip'" in result.stderr
    assert "known: AREA, DATE" in result.stderr and "SCENE" in result.stderr
    monkeypatch.setenv("INGESTER_BUCKET_PATTERNS", "sentinel2=s3://bucket/{TILE}/{SCENE_ID}.zip")
    result = cli("config")
    assert result.exit_code == 2 and "unknown key(s) {SCENE_ID}" in result.stderr and "TILE" in result.stderr

