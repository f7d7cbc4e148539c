"""Pre-flight checks before any write (issue 12 item 3): credentials (one token request), engines,
storage, disk space; `ingester check` alone; `ingester aoi --dry-run` writes and downloads nothing."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester.scenes import Scene, read_scenes, write_scenes
from ingester.store import Store
from tests.fakes.aoi_data import S2_IDS, s1_chain, s2_scene, write_s1_tiles
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, checksums, zip_safe

AOI = "DenmarkDemoS2"
DB = Path("outputs/ingester.db")
WKT = "POLYGON ((8.99968 55.89489, 10.76096 55.87337, 10.71249 54.88733, 8.99971 54.90786, 8.99968 55.89489))"


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))


@pytest.fixture
def zipper(testdata, tmp_path, monkeypatch):
    """Three S2 products on a fake CDSE, their scenes in scenes.json, the CDSE settings in the environment."""
    with FakeCdse("127.0.0.1") as fake:
        scenes = []
        for i in range(3):
            date = datetime(2022, 1, 4 + i, 10, 34, 31, tzinfo=UTC)
            sid = f"S2A_MSIL1C_{date:%Y%m%dT%H%M%S}_N0510_R108_T32UNG_{date:%Y%m%dT%H%M%S}"
            data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=f"{sid}.SAFE")
            scenes.append(Scene(source_id=sid, aoi=AOI, date=date, wkt=WKT, graph_name="CopyProductToStorage",
                                is_retriable=True, tags={"area": "Denmark", "provider": "geocube-ingester",
                                                         "source": "tutorial", "constellation": "SENTINEL2",
                                                         "sourceID": sid},
                                metadata={"uuid": fake.add_product(data), "size": len(data), "online": True,
                                          "checksums": {c["Algorithm"]: c["Value"] for c in checksums(data)}}))
        write_scenes(tmp_path / "scenes.json", scenes, next_=False)
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                           "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                           "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse",
                           "INGESTER_TILE_WORKER": "tests.fakes.workers:noop"}.items():
            monkeypatch.setenv(key, value)
        yield fake


def downloads(fake: FakeCdse) -> int:
    return sum(1 for r in fake.requests if r["method"] == "GET" and "$value" in r["path"])


def test_a_wrong_password_is_exit_2_before_any_write_with_exactly_one_token_request(cli, payload, tmp_path, zipper,
                                                                                     monkeypatch):
    monkeypatch.setenv("INGESTER_CDSE_PASSWORD", "not-the-password")
    r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "4")
    assert r.exit_code == 2, r.stderr
    assert "pre-flight check failed, nothing was written: credentials:" in r.stderr
    assert "refused the account" in r.stderr and "not-the-password" not in r.stderr
    assert zipper.grants == [("password", False)]
    assert downloads(zipper) == 0 and not DB.exists()


def test_the_right_password_logs_in_once_for_the_check_and_the_run(cli, payload, tmp_path, zipper):
    r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "2")
    assert r.exit_code == 0, r.stderr
    assert [g for g in zipper.grants if g[0] == "password"] == [("password", True)]
    assert downloads(zipper) == 3


def _graph_scenes(tmp_path: Path, step: dict) -> Path:
    """The scenes file with a scene graph of one step (the file's graph name is the scene graph)."""
    (tmp_path / "g.json").write_text(json.dumps({"processing_steps": [step], "in_files": [[], [], []],
                                                 "out_files": [[]]}))
    doc = json.loads((tmp_path / "scenes.json").read_text())
    for feature in doc["features"]:
        feature["properties"]["data"]["graph_name"] = "g.json"
    path = tmp_path / "g-scenes.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("case", ["snap", "docker", "cmd"])
def test_a_missing_engine_is_exit_2_before_any_download(cli, repo, tmp_path, zipper, monkeypatch, case):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("SNAPPATH", raising=False)
    if case == "snap":
        payload = Path(shutil.copy(repo / "payloads" / "denmark-s1.json", tmp_path / "s1.json"))
        args = ["--tiles", write_s1_tiles(tmp_path / "t.json", s1_chain("DenmarkDemoS1", 2, 1))]
        want = "SNAP's gpt not found"
    elif case == "docker":
        monkeypatch.setenv("INGESTER_DOCKER", str(tmp_path / "no" / "docker"))
        payload = Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))
        args = ["--scenes", _graph_scenes(tmp_path, {"engine": "docker", "command": "alpine:3", "args": {}})]
        want = "the docker client"
    else:
        payload = Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "p.json"))
        args = ["--scenes", _graph_scenes(tmp_path, {"engine": "cmd", "command": "no-such-tool", "args": {}})]
        want = "command 'no-such-tool' not found"
    r = cli("aoi", payload, *args, "--create-layers", "--workers", "1")
    assert r.exit_code == 2, r.stderr
    assert "engines:" in r.stderr and want in r.stderr
    assert downloads(zipper) == 0 and not DB.exists()


def test_unwritable_storage_and_too_little_disk_space_are_exit_2(cli, payload, tmp_path, zipper, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("INGESTER_STORAGE_URI", str(tmp_path / "a-file" / "storage"))
    r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "1")
    assert r.exit_code == 2, r.stderr
    assert "storage:" in r.stderr and f"{tmp_path / 'a-file'} is a file, so" in r.stderr
    monkeypatch.delenv("INGESTER_STORAGE_URI")
    doc = json.loads((tmp_path / "scenes.json").read_text())
    for feature in doc["features"]:
        feature["properties"]["data"]["metadata"]["size"] = 10 ** 18  # announced: an exabyte
    (tmp_path / "big.json").write_text(json.dumps(doc))
    r = cli("aoi", payload, "--scenes", tmp_path / "big.json", "--create-layers", "--workers", "1")
    assert r.exit_code == 2, r.stderr
    assert "disk space:" in r.stderr and "needed" in r.stderr and "free" in r.stderr
    assert downloads(zipper) == 0 and not DB.exists()


def test_check_runs_the_checks_alone_and_names_the_failed_one(cli, payload, tmp_path, zipper, monkeypatch):
    r = cli("check", payload, "--scenes", tmp_path / "scenes.json", "--create-layers")
    assert r.exit_code == 0, r.stderr
    for name in ("settings", "credentials", "engines", "storage", "disk space"):
        assert name in r.stderr
    assert zipper.grants == [("password", True)]  # exactly one token request (the command keeps the login)
    js = json.loads(cli("check", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--json").stdout)
    assert js["ok"] is True and [c["name"] for c in js["checks"]] == ["settings", "credentials", "engines",
                                                                        "storage", "disk space"]
    assert {c["status"] for c in js["checks"]} == {"ok"}
    assert zipper.grants == [("password", True)] * 2  # and exactly one for the second command
    monkeypatch.setenv("INGESTER_CDSE_PASSWORD", "bad")
    r = cli("check", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--json")
    assert r.exit_code == 2
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["exit_code"] == 2
    assert [c["name"] for c in out["checks"] if c["status"] == "failed"] == ["credentials"]
    r = cli("check", payload, "--scenes", tmp_path / "scenes.json", "--create-layers")
    assert r.exit_code == 2 and "check failed: credentials" in r.stderr
    assert downloads(zipper) == 0 and not DB.exists()
    assert "--scenes" in cli("check", "--help").stdout


def test_dry_run_prints_what_would_happen_and_writes_and_downloads_nothing(cli, payload, tmp_path, zipper):
    sizes = sum(len(d) for d in zipper.products.values())
    r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dry_run"] is True
    assert out["ingest"] == {"scenes": 3, "tiles": 3, "skipped": 0, "source": "scenes file"}
    assert out["download"] == {"products": 3, "bytes": sizes, "without_size": 0}
    assert out["process"] == {"scene_jobs": 3, "tile_jobs": 3, "graphs": ["CopyProductToStorage", "ExtractS2Bands"]}
    assert not DB.exists() and not (tmp_path / "outputs").exists()
    assert downloads(zipper) == 0
    text = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--dry-run")
    assert text.exit_code == 0 and "would download 3 products" in text.stderr and "nothing written" in text.stderr
    # with a store: what is already in the AOI is not counted again, and nothing is added
    assert cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers").exit_code == 0
    with Store(DB) as st:
        before = st.counts()
    more = tmp_path / "more.json"  # two other acquisitions (the 9th and the 11th), and the three again
    write_scenes(more, [*read_scenes(tmp_path / "scenes.json").scenes, *(s2_scene(i) for i in S2_IDS[3:5])],
                 next_=False)
    out = json.loads(cli("aoi", payload, "--scenes", more, "--dry-run", "--json").stdout)
    assert out["ingest"]["scenes"] == 2 and out["ingest"]["skipped"] == 3 and out["download"]["products"] == 2
    with Store(DB) as st:
        assert st.counts() == before
    assert downloads(zipper) == 3


def _jobs_snapshot(db: Path) -> tuple:
    with Store(db, readonly=True) as st:
        return (st.execute("SELECT * FROM scene ORDER BY id").fetchall(),
                st.execute("SELECT * FROM tile ORDER BY id").fetchall(),
                st.execute("SELECT * FROM job_attempt ORDER BY id").fetchall(),
                st.execute("SELECT settings, lock_run FROM aoi").fetchall())


@pytest.mark.parametrize("cause", ["password", "storage"])
def test_a_retry_whose_pre_flight_fails_is_exit_2_and_writes_nothing(cli, payload, tmp_path, zipper, monkeypatch,
                                                                     cause):
    monkeypatch.setenv("INGESTER_SCENE_WORKER", "tests.fakes.workers:fail")
    first = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "1", "-q")
    assert first.exit_code == 4, first.stderr  # every scene failed: RETRY once its budget is spent
    before = _jobs_snapshot(DB)
    with Store(DB, readonly=True) as st:
        assert {row[0] for row in st.execute("SELECT status FROM scene")} == {"RETRY"}
    monkeypatch.delenv("INGESTER_SCENE_WORKER")  # the real download
    if cause == "password":  # refused by the CDSE
        monkeypatch.setenv("INGESTER_CDSE_PASSWORD", "not-the-password")
        said = ("credentials:", "nothing was written")
    else:  # another storage than the AOI's
        monkeypatch.setenv("INGESTER_STORAGE_URI", str(tmp_path / "elsewhere"))
        said = ("keeps its files in", str(tmp_path / "elsewhere"))
    for args in (("retry", AOI), ("retry", AOI, "--force"), ("retry", "--scene", "1")):
        r = cli(*args, "--workers", "1")
        assert r.exit_code == 2, (args, r.stderr)
        assert all(text in r.stderr for text in said), r.stderr
        assert _jobs_snapshot(DB) == before, args
    assert downloads(zipper) == 0
