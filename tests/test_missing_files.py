"""Files deleted or damaged in storage between runs are noticed (issue 15 item 7): runs, `datasets` and
`stac` check that the indexed files exist (one listing per tile folder) and say which are missing;
`ingester verify AOI` re-checks sizes and checksums of the stored products and outputs and sets the
jobs concerned back, so that the next run rebuilds them. Local storage and S3 (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingester import storage
from ingester.store import Store
from tests.fakes.aoi_data import S2_IDS, b01_project

AOI = "DenmarkDemoS2"
WRITE = '''
import os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open(args["out"], "wb") as fh:
    fh.write(b"tile output " + args["out"].encode() * 50)
'''


@pytest.fixture(params=["local", "s3"])
def project(request, tmp_path, repo, monkeypatch):
    """Two S2 scenes ingested end to end: products copied from a local archive, and one indexed B01
    output per tile written by a real python graph step; storage local or on S3 (moto)."""
    (tmp_path / "write.py").write_text(WRITE)
    graph = {"processing_steps": [{"engine": "python", "command": str(tmp_path / "write.py"),
                                   "args": {"out": {"type": "out", "layer": "B01", "extension": "tif"}}}],
             "out_files": [[{"layer": "B01", "extension": "tif", "action": "to_index",
                             "dformat_out": {"type": "fixed", "value": "uint16,0,1,65535"},
                             "ext_min_value": 0, "ext_max_value": 1}]]}
    with b01_project(tmp_path, repo, monkeypatch, request.param, "write.py", graph, "Writer.json") as project_files:
        yield project_files


def statuses(kind: str) -> dict[str, str]:
    col = "s.source_id" if kind == "scene" else "s.source_id"
    sql = ("SELECT s.source_id, s.status FROM scene s" if kind == "scene" else
           "SELECT s.source_id, t.status FROM tile t JOIN scene s ON s.id = t.scene_id")
    with Store("outputs/ingester.db") as st:
        return {sid: status for sid, status in st.execute(sql + f" ORDER BY {col}")}


def dataset_uris() -> dict[str, str]:
    with Store("outputs/ingester.db") as st:
        return {st.tile_row(d.tile_id).scene_source_id: d.uri for d in st.datasets(aoi=AOI)}


def product_uri(scene_id: str) -> str:
    root = storage.resolve_storage_uri("", "", __import__("ingester.config").config.load_settings())
    return f"{root}/{AOI}/{scene_id}/tiles/{scene_id}/{scene_id}.zip"


def write(uri: str, data: bytes) -> None:
    fs, path = storage.filesystem(uri)
    with fs.open(path, "wb") as fh:
        fh.write(data)


def exists(uri: str) -> bool:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache()
    return fs.exists(path)


def test_deleted_and_damaged_files_are_reported_then_verify_sets_their_jobs_back_and_a_run_rebuilds(cli, project):
    payload, scenes = project
    first = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q")
    assert first.exit_code == 0, first.stderr
    uris = dataset_uris()
    gone, damaged = S2_IDS[0], S2_IDS[1]
    assert all(exists(u) for u in uris.values()) and exists(product_uri(gone))
    storage.delete(uris[gone])  # someone cleans the storage up between runs
    storage.delete(product_uri(gone))
    fs, path = storage.filesystem(uris[damaged])
    size = fs.size(path)
    write(uris[damaged], b"x" * size)  # same size, other bytes: only the checksum tells

    listed = cli("datasets", AOI, "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = {row["uri"]: row for row in json.loads(listed.stdout)}
    assert rows[uris[gone]]["missing"] is True and rows[uris[damaged]]["missing"] is False
    assert uris[gone] in listed.stderr and "missing" in listed.stderr and "ingester verify" in listed.stderr
    text = cli("datasets", AOI)
    assert "MISSING" in text.stdout.splitlines()[[uris[gone] in x for x in text.stdout.splitlines()].index(True)]

    stac = cli("stac", AOI, "-o", "stac")
    assert stac.exit_code == 0 and uris[gone] in stac.stderr
    hrefs = [a["href"] for item in Path("stac", AOI).rglob("*.json") if item.name != "collection.json"
             for a in json.loads(item.read_text())["assets"].values()]
    assert uris[gone] not in hrefs and uris[damaged] in hrefs  # no asset pointing at nothing

    run = cli("run", AOI, "-q")
    assert run.exit_code == 0 and uris[gone] in run.stderr and "ingester verify" in run.stderr
    assert set(statuses("tile").values()) == {"DONE"}  # a run says so; verify decides what to redo

    verify = cli("verify", AOI, "--json")
    assert verify.exit_code == 4, verify.stderr  # problems found and jobs set back
    report = json.loads(verify.stdout)
    problems = {(p["uri"], p["problem"]) for p in report["problems"]}
    assert problems == {(uris[gone], "missing"), (product_uri(gone), "missing"), (uris[damaged], "checksum")}
    assert report["checked"] == {"products": 2, "datasets": 2}
    assert sorted(report["reset"]["scenes"]) == [gone] and sorted(report["reset"]["tiles"]) == sorted([gone, damaged])
    assert statuses("scene") == {gone: "PENDING", damaged: "DONE"}
    assert statuses("tile") == {gone: "NEW", damaged: "PENDING"}
    with Store("outputs/ingester.db") as st:
        ids = {(kind, sid): jid for kind in ("scene", "tile") for jid, sid in st.execute(
            "SELECT s.id, s.source_id FROM scene s" if kind == "scene" else
            "SELECT t.id, s.source_id FROM tile t JOIN scene s ON s.id = t.scene_id")}
    for (kind, sid), status in ((("scene", gone), "PENDING"), (("tile", gone), "NEW"), (("tile", damaged), "PENDING")):
        events = json.loads(cli("history", f"--{kind}", ids[(kind, sid)], "--json").stdout)["attempts"]
        assert (events[-1]["outcome"], events[-1]["status"]) == ("manual", status), (kind, sid)
        assert events[-1]["message"].startswith("ingester verify: ")

    rebuilt = cli("run", AOI, "-q", "--workers", "1")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "missing from storage" not in rebuilt.stderr  # set back: this run rebuilds them, no false alarm
    assert set(statuses("scene").values()) == set(statuses("tile").values()) == {"DONE"}
    assert exists(uris[gone]) and exists(product_uri(gone))
    clean = cli("verify", AOI, "--json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["problems"] == []
    assert "missing" not in cli("datasets", AOI).stderr


def test_verify_refuses_while_a_run_holds_the_aoi_and_needs_an_existing_aoi(cli, project):
    payload, scenes = project
    assert cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q").exit_code == 0
    import os

    from ingester.store import host_name, monotonic_now
    with Store("outputs/ingester.db") as st, st.transaction():
        st.execute("UPDATE aoi SET lock_run = 'x', lock_pid = ?, lock_host = ?, lock_started = 'now', "
                   "lock_heartbeat = ?", (os.getpid(), host_name(), monotonic_now()))
    result = cli("verify", AOI)
    assert result.exit_code == 3 and "locked" in result.stderr
    assert cli("verify", "Nope").exit_code == 2


def test_datasets_text_shows_times_with_their_z_as_json_does(cli, project):
    payload, scenes = project
    assert cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "-q").exit_code == 0
    times = [row["time"] for row in json.loads(cli("datasets", AOI, "--json").stdout)]
    rows = [line.split("\t") for line in cli("datasets", AOI).stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == [t[:19] + "Z" for t in times] and all(t.endswith("Z") for t in times)
