"""Monitoring and repair commands: status, aois, list, retry, fail, dot."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ingester.store import Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles

W = "tests.fakes.workers"
AOI = "DenmarkDemoS1"


@pytest.fixture
def ingested(cli, tmp_path, repo, monkeypatch):
    """3 dates × 2 bursts; the tile of burst 8979 of the middle date ends RETRY; everything else DONE."""
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))
    chain = s1_chain(AOI, 3, 2)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({f"{chain[1].source_id}/A44_IW1_8979": ["error"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    r = cli("aoi", payload, "--tiles", write_s1_tiles(tmp_path / "t.json", chain), "--create-layers", "--workers", "1",
            "--scene-worker", f"{W}:scripted", "--tile-worker", f"{W}:scripted")
    assert r.exit_code == 4, r.stderr
    return script


def tile_id(st: Store, date_index: int, burst: str) -> int:
    return st.one("SELECT t.id FROM tile t JOIN scene s ON s.id = t.scene_id WHERE t.source_id = ? "
                  "ORDER BY s.date LIMIT 1 OFFSET ?", (burst, date_index))


def test_status_prints_the_reference_summary(cli, ingested):
    r = cli("status", AOI)
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1:] == [
        "Scenes:", "  new:     0", "  pending: 0", "  done:    3", "  retry:   0", "  failed:  0", "  Total:   3",
        "Tiles:", "  new:     1", "  pending: 0", "  done:    4", "  retry:   1", "  failed:  0", "  Total:   6",
        "", "Root tiles : 2", "  From: 2022-01-11", "  To:   2022-02-04",
    ]
    assert r.stdout.startswith(f"AOI {AOI} (RETRY)")
    data = json.loads(cli("status", AOI, "--json").stdout)
    assert data["tiles"] == {"new": 1, "pending": 0, "done": 4, "retry": 1, "failed": 0, "total": 6}
    assert json.loads(cli("status", "--json").stdout) == [data]


@pytest.mark.parametrize("command", [["status"], ["status", "X"], ["aois"], ["list", "scenes", "X"],
                                     ["list", "tiles", "X"], ["retry", "X"], ["retry", "--force", "--scene", "1"],
                                     ["fail", "--scene", "1"], ["history", "--tile", "1"], ["dot", "X"],
                                     ["run", "X"], ["layers", "list"], ["datasets", "X"], ["stac", "X"]])
def test_read_commands_in_an_empty_directory_say_there_is_no_store_and_create_nothing(cli, tmp_path, command):
    r = cli(*command, "--db", "typo.db")
    assert r.exit_code == 2, r.stderr
    assert "typo.db: no store here" in r.stderr and "--db or INGESTER_DB" in r.stderr
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "outputs").exists()
    assert not list(tmp_path.rglob("*.db*"))


def test_status_of_an_empty_store_and_of_an_unknown_aoi(cli):
    assert cli("layers", "add", "B04", "raw").exit_code == 0  # creates the store, with no AOI
    assert cli("status").stdout == "no AOI in the store\n"
    r = cli("status", "Nowhere")
    assert r.exit_code == 2 and "no AOI named 'Nowhere'" in r.stderr


def test_aois_and_listings(cli, ingested):
    (row,) = json.loads(cli("aois", "--json").stdout)
    assert row == {"aoi": AOI, "status": "RETRY", "failed_jobs": 0, "scenes": 3, "tiles": 6, "locked_by": ""}
    scenes = json.loads(cli("list", "scenes", AOI, "--json").stdout)
    assert [s["date"] for s in scenes] == sorted(s["date"] for s in scenes) and len(scenes) == 3
    assert all(s["aoi"] == AOI for s in scenes)
    retry = json.loads(cli("list", "tiles", AOI, "--status", "retry", "--json").stdout)
    assert [(t["source_id"], t["status"]) for t in retry] == [("A44_IW1_8979", "RETRY")]
    assert retry[0]["message"].startswith("error for tile")
    assert len(cli("list", "tiles", AOI).stdout.splitlines()) == 7  # a header row and 6 tiles
    r = cli("list", "tiles", AOI, "--status", "BROKEN")
    assert r.exit_code == 2 and "unknown status" in r.stderr


def test_tiles_as_geojson(cli, ingested):
    doc = json.loads(cli("list", "tiles", AOI, "--geojson").stdout)
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 6
    first = doc["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    assert first["properties"]["status"] == "DONE" and first["properties"]["aoi"] == AOI


def test_retry_a_tile_runs_it_and_releases_its_children(cli, ingested):
    ingested.write_text("{}")
    with Store("outputs/ingester.db") as st:
        tid = tile_id(st, 1, "A44_IW1_8979")
    r = cli("retry", "--tile", str(tid), "--workers", "1", "--scene-worker", f"{W}:scripted", "--tile-worker",
            f"{W}:scripted")
    assert r.exit_code == 0, r.stderr
    with Store("outputs/ingester.db") as st:
        assert {s for (s,) in st.execute("SELECT status FROM tile")} == {"DONE"}
    r = cli("retry", "--tile", str(tid))  # invalid input, not a runtime failure
    assert r.exit_code == 2 and f"cannot update tile {tid} status DONE->PENDING" in r.stderr
    r = cli("retry", AOI, "--tile", str(tid))
    assert r.exit_code == 2 and "exactly one of" in r.stderr


def test_fail_a_tile_relinks_its_child_and_a_done_tile_needs_force(cli, ingested):
    with Store("outputs/ingester.db") as st:
        middle = tile_id(st, 1, "A44_IW1_8979")
        first, last = tile_id(st, 0, "A44_IW1_8979"), tile_id(st, 2, "A44_IW1_8979")
    r = cli("fail", "--tile", str(middle), "-m", "bad burst")
    assert r.exit_code == 0, r.stderr
    with Store("outputs/ingester.db") as st:
        assert st.execute("SELECT status, message FROM tile WHERE id = ?", (middle,)).fetchone() == (
            "FAILED", "bad burst")
        assert st.execute("SELECT prev, ref, status FROM tile WHERE id = ?", (last,)).fetchone() == (
            first, first, "PENDING")  # released: its new previous is DONE
        assert st.one("SELECT lock_run FROM aoi") is None
    r = cli("fail", "--tile", str(first))
    assert r.exit_code == 2 and "cannot update tile" in r.stderr
    r = cli("fail", "--scene", "999")
    assert r.exit_code == 2 and "no scene with this id" in r.stderr


def test_fail_a_scene_with_force(cli, ingested):
    with Store("outputs/ingester.db") as st:
        scene = st.one("SELECT id FROM scene ORDER BY date DESC LIMIT 1")
    assert cli("fail", "--scene", str(scene)).exit_code == 2  # its tiles ran
    r = cli("fail", "--scene", str(scene), "--force", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["status"] == "FAILED" and json.loads(r.stdout)["kind"] == "scene"
    with Store("outputs/ingester.db") as st:
        assert {s for (s,) in st.execute("SELECT status FROM tile WHERE scene_id = ?", (scene,))} == {"FAILED"}


NODE = re.compile(r'^"([st]\d+)" \[label="[^"\\]*\\n\(id=\d+\)"( shape=box)? color=(gray|blue|green|orange|red)\];$')
EDGE = re.compile(r'^"([st]\d+)" -> "(t\d+)"( \[(color=gray)?( ?style=dotted)?\])?;$')


def parse_dot(text: str) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """A tiny parser for the subset of the DOT language the export writes; raises on anything else."""
    lines = text.splitlines()
    head = re.fullmatch(r'digraph "([^"]+)" \{', lines[0])
    assert head and lines[-1] == "}", text
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if m := NODE.match(line):
            nodes[m.group(1)] = m.group(3)
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        else:
            raise AssertionError(f"not valid for this grammar: {line!r}")
    assert all(a in nodes and b in nodes for a, b in edges)
    return head.group(1), nodes, edges


def test_dot_is_valid_graphviz_with_every_scene_and_status_colours(cli, ingested, tmp_path):
    r = cli("dot", AOI, "-o", tmp_path / "g.dot")
    assert r.exit_code == 0
    name, nodes, edges = parse_dot((tmp_path / "g.dot").read_text())
    assert name == AOI
    assert sum(n.startswith("s") for n in nodes) == 3 and sum(n.startswith("t") for n in nodes) == 6
    assert sorted(nodes.values()).count("orange") == 1 and sorted(nodes.values()).count("gray") == 1
    assert sum(a.startswith("s") for a, _ in edges) == 6 and sum(a.startswith("t") for a, _ in edges) == 4
    assert cli("dot", AOI).stdout == (tmp_path / "g.dot").read_text()


def test_history_shows_every_attempt_of_a_job(cli, ingested):
    with Store("outputs/ingester.db") as st:
        tid = tile_id(st, 1, "A44_IW1_8979")
    data = json.loads(cli("history", "--tile", str(tid), "--json").stdout)
    assert data["aoi"] == AOI and data["kind"] == "tile"
    assert [(a["attempt"], a["outcome"], a["status"]) for a in data["attempts"]] == [
        (1, "error", "PENDING"), (2, "error", "RETRY")]  # retry_count 1: one automatic re-run
    assert all(a["pid"] and a["host"] and a["run_id"] for a in data["attempts"])
    text = cli("history", "--tile", str(tid)).stdout.splitlines()
    assert len(text) == 2 and "error for tile" in text[1]


def test_exit_4_hints_name_the_listings_of_what_actually_failed(cli, tmp_path, repo, monkeypatch):
    import shutil

    from tests.fakes.aoi_data import write_s2_scenes

    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    payload = shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json")
    scenes = write_s2_scenes(tmp_path / "scenes.json", 1)
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1",
            "--scene-worker", "tests.fakes.workers:fail", "--tile-worker", "tests.fakes.workers:succeed")
    assert r.exit_code == 4
    assert "ingester list scenes DenmarkDemoS2 --status RETRY" in r.stderr
    assert "list tiles" not in r.stderr
    r = cli("history", "DenmarkDemoS2")
    assert r.exit_code == 2
    r = cli("history")
    assert r.exit_code == 2 and "give exactly one of --scene ID or --tile ID" in r.stderr


# --- --json errors ---------------------------------------------------------------------------------

JSON_COMMANDS = [["status", "X"], ["aois"], ["list", "scenes", "X"], ["list", "tiles", "X"], ["retry", "X"],
                 ["fail", "--scene", "1"], ["history", "--tile", "1"], ["run", "X"], ["layers", "list"],
                 ["datasets", "X"]]


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_with_json_an_input_error_is_a_json_object_on_stdout_too(cli, command):
    r = cli(*command, "--db", "typo.db", "--json")
    assert r.exit_code == 2
    assert "typo.db: no store here" in r.stderr  # the human message stays on stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 2 and "typo.db: no store here" in doc["error"]
    assert set(doc) == {"error", "exit_code"}


@pytest.mark.parametrize("command", [["aoi", "nowhere.json"], ["scenes", "nowhere.json"], ["show", "nowhere.json"]])
def test_payload_commands_print_json_errors(cli, command):
    r = cli(*command, "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout) == {"error": "nowhere.json: file not found", "exit_code": 2}


def test_a_usage_error_with_json_is_a_json_object_on_stdout(cli):
    r = cli("list", "tiles", "X", "--workers", "3", "--json")  # no such option
    assert r.exit_code == 2 and "No such option: --workers" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 2 and "No such option: --workers" in doc["error"]
    r = cli("run", "X", "--workers", "-1", "--json")  # out of range
    assert r.exit_code == 2 and json.loads(r.stdout)["exit_code"] == 2
    assert cli("run", "X", "--workers", "-1").stdout == ""  # without --json: nothing on stdout


def test_a_locked_aoi_with_json_is_exit_3_with_a_json_error(cli, ingested):
    from ingester.coordinator import acquire_lock

    with Store("outputs/ingester.db") as st:
        acquire_lock(st, AOI, "someone-else", 300)  # held by this (live) process
    r = cli("run", AOI, "--json")
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 3 and f"AOI {AOI!r} is locked by another run" in doc["error"]


def test_text_tables_start_with_a_header_row(cli, ingested):
    scenes = cli("list", "scenes", AOI).stdout.splitlines()
    assert scenes[0].split("\t") == ["id", "status", "date", "source_id", "message"] and len(scenes) == 4
    tiles = cli("list", "tiles", AOI).stdout.splitlines()
    assert tiles[0].split("\t") == ["id", "status", "date", "scene", "tile", "previous", "reference", "message"]
    assert len(tiles) == 7 and tiles[1].split("\t")[5:7] == ["-", "-"]  # a root tile: no previous, no reference
    layers = cli("layers", "list").stdout.splitlines()
    assert layers[0].split("\t") == ["variable", "instance", "instance_id", "dformat", "unit", "bands"]
    assert cli("datasets", AOI).stdout == f"AOI {AOI}: no dataset indexed yet\n"  # its header: test_index_store


def test_history_shows_a_manual_fail_and_a_forced_retry_as_events_of_the_job(cli, ingested):
    with Store("outputs/ingester.db") as st:
        tid = tile_id(st, 1, "A44_IW1_8979")
    assert cli("fail", "--tile", str(tid), "-m", "bad burst").exit_code == 0
    ingested.write_text("{}")  # the next attempt succeeds
    r = cli("retry", "--tile", str(tid), "--force", "--workers", "1", "--scene-worker", f"{W}:scripted",
            "--tile-worker", f"{W}:scripted")
    assert r.exit_code == 0, r.stderr
    data = json.loads(cli("history", "--tile", str(tid), "--json").stdout)
    assert [(a["outcome"], a["status"]) for a in data["attempts"]] == [
        ("error", "PENDING"), ("error", "RETRY"), ("manual", "FAILED"), ("manual", "PENDING"), ("done", "DONE")]
    fail, forced = data["attempts"][2], data["attempts"][3]
    assert "bad burst" in fail["message"] and "ingester fail" in fail["message"]
    assert "ingester retry --force" in forced["message"]
    assert fail["finished_at"] and fail["pid"] and fail["host"] and fail["run_id"]
    text = cli("history", "--tile", str(tid)).stdout.splitlines()
    assert len(text) == 5 and "manual → FAILED" in text[2] and "bad burst" in text[2]


def test_status_says_when_a_run_holds_the_aoi_and_not_when_its_lock_is_stale(cli, ingested):
    import os

    from ingester.store import host_name, monotonic_now

    free = cli("status", AOI)
    assert free.exit_code == 0 and "Running:" not in free.stdout
    assert json.loads(cli("status", AOI, "--json").stdout)["running"] is None
    with Store("outputs/ingester.db") as st, st.transaction():
        st.execute("UPDATE aoi SET lock_run = 'r-42', lock_pid = ?, lock_host = ?, lock_started = "
                   "'2026-12-07T01:00:00Z', lock_heartbeat = ?", (os.getpid(), host_name(), monotonic_now()))
    text = cli("status", AOI).stdout
    assert f"Running: run r-42, pid {os.getpid()} on host {host_name()} since 2026-12-07T01:00:00Z" in text
    running = json.loads(cli("status", AOI, "--json").stdout)["running"]
    assert running == {"run": "r-42", "pid": os.getpid(), "host": host_name(), "since": "2026-12-07T01:00:00Z"}
    assert json.loads(cli("status", "--json").stdout)[0]["running"]["run"] == "r-42"
    with Store("outputs/ingester.db") as st, st.transaction():  # its heartbeat stopped long ago: stale
        st.execute("UPDATE aoi SET lock_heartbeat = ?", (monotonic_now() - 10_000,))
    assert "Running:" not in cli("status", AOI).stdout
    assert json.loads(cli("status", AOI, "--json").stdout)["running"] is None


def test_a_message_with_newlines_and_tabs_stays_on_one_row_of_the_text_tables(cli, ingested):
    with Store("outputs/ingester.db") as st:
        tid = tile_id(st, 1, "A44_IW1_8979")
        scene = st.one("SELECT scene_id FROM tile WHERE id = ?", (tid,))
    message = "gpt failed:\nline two\tcolumn\r\nline three\n"
    assert cli("fail", "--tile", str(tid), "-m", message).exit_code == 0
    tiles = cli("list", "tiles", AOI).stdout.splitlines()
    assert len(tiles) == 7 and all(len(row.split("\t")) <= 8 for row in tiles)
    row = next(r for r in tiles if r.startswith(f"{tid}\t"))
    assert row.split("\t")[7] == "gpt failed: / line two column / line three"
    doc = json.loads(cli("list", "tiles", AOI, "--json").stdout)  # --json keeps the message as it is
    assert next(t for t in doc if t["id"] == tid)["message"] == message
    with Store("outputs/ingester.db") as st:
        with st.transaction():
            st.execute("UPDATE scene SET message = ? WHERE id = ?", (message, scene))
    scenes = cli("list", "scenes", AOI).stdout.splitlines()
    assert len(scenes) == 4 and "\tgpt failed: / line two column / line three" in scenes[
        next(i for i, r in enumerate(scenes) if r.startswith(f"{scene}\t"))]
    history = cli("history", "--tile", str(tid)).stdout.splitlines()
    assert any(r.endswith("gpt failed: / line two column / line three") or
               "\tgpt failed: / line two column / line three\t" in r for r in history)
    assert not any(r.startswith(("line two", "line three")) for r in history)


def test_a_done_aoi_with_failed_jobs_names_them_in_status_aois_and_the_run_summary(cli, ingested):
    """DONE means nothing is left to run; a DONE AOI whose jobs include FAILED ones says how many
    (status, aois, the run's last line) and --json carries the count beside the status."""
    with Store("outputs/ingester.db") as st:
        middle = tile_id(st, 1, "A44_IW1_8979")
    assert cli("fail", "--tile", str(middle), "-m", "bad burst").exit_code == 0
    r = cli("run", AOI, "--scene-worker", f"{W}:noop", "--tile-worker", f"{W}:noop")
    assert "AOI status DONE, 1 job FAILED" in r.stderr, r.stderr
    assert cli("status", AOI).stdout.startswith(f"AOI {AOI} (DONE, 1 job FAILED)")
    assert cli("aois").stdout.split("\t")[:2] == [AOI, "DONE, 1 job FAILED"]
    data = json.loads(cli("status", AOI, "--json").stdout)
    assert (data["status"], data["failed_jobs"]) == ("DONE", 1)
    assert [(a["status"], a["failed_jobs"]) for a in json.loads(cli("aois", "--json").stdout)] == [("DONE", 1)]


def test_workers_0_means_the_cpu_count_as_option_and_as_setting(cli, tmp_path, monkeypatch):
    """`--workers 0` and INGESTER_WORKERS=0 say the same thing (the CPU count), as README and config do."""
    shown = cli("config", "--workers", "0", "--json")
    assert shown.exit_code == 0, shown.stderr
    monkeypatch.setenv("INGESTER_WORKERS", "0")
    assert cli("config", "--json").exit_code == 0
    r = cli("run", "X", "--workers", "-1")
    assert r.exit_code == 2 and "-1 is below 0" in r.stderr
