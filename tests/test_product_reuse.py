"""A verified product is downloaded once per scene (issue 12 item 2): when the scene graph fails, every
later attempt, automatic or manual, reuses the verified product kept in the work folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ingester.scenes import Scene, write_scenes
from ingester.store import Store
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, checksums, zip_safe

AOI = "DenmarkDemoS2"
SID = "S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858"
WKT = "POLYGON ((8.99968 55.89489, 10.76096 55.87337, 10.71249 54.88733, 8.99971 54.90786, 8.99968 55.89489))"


def test_a_product_whose_scene_graph_fails_is_downloaded_once_for_every_attempt(cli, repo, testdata, tmp_path,
                                                                                 monkeypatch):
    doc = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    doc["scene_graph_name"] = "failing.json"  # e.g. a SNAP graph on a machine without gpt
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(doc))
    (tmp_path / "step.py").write_text("import sys, pathlib\n"
                                      "if not pathlib.Path(sys.argv[0]).with_name('fixed').exists():\n"
                                      "    print('ERROR: the engine is missing'); sys.exit(1)\n")
    (tmp_path / "failing.json").write_text(json.dumps({
        "processing_steps": [{"engine": "python", "command": "step.py", "args": {}}],
        "in_files": [[], [], []], "out_files": [[]]}))
    with FakeCdse("127.0.0.1") as fake:
        data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=f"{SID}.SAFE")
        pid = fake.add_product(data)
        scene = Scene(source_id=SID, aoi=AOI, date=datetime(2022, 1, 4, 10, 34, 31, tzinfo=UTC), wkt=WKT,
                      graph_name="failing.json", is_retriable=True,
                      tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                            "constellation": "SENTINEL2", "sourceID": SID},
                      metadata={"uuid": pid, "checksums": {c["Algorithm"]: c["Value"] for c in checksums(data)},
                                "size": len(data), "online": True})
        write_scenes(tmp_path / "scenes.json", [scene], next_=False)
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                           "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                           "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse",
                           "INGESTER_RETRY_BACKOFF": "0", "INGESTER_TILE_WORKER": "tests.fakes.workers:noop"}.items():
            monkeypatch.setenv(key, value)

        def downloads() -> int:
            return sum(1 for r in fake.requests if r["method"] == "GET" and "$value" in r["path"])

        r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "1")
        assert r.exit_code == 4, r.stderr  # attempt 1 and its automatic re-run failed: RETRY
        assert downloads() == 1
        r = cli("retry", AOI, "--workers", "1")  # a manual retry: two more attempts
        assert r.exit_code == 4, r.stderr
        assert downloads() == 1
        with Store("outputs/ingester.db") as st:
            rows = st.attempts("scene", 1)
            assert len([a for a in rows if a["outcome"] != "manual"]) == 4
            assert [a["status"] for a in rows if a["outcome"] == "manual"] == ["PENDING"]  # the retry, in history
            assert "the engine is missing" in st.one("SELECT message FROM scene")
        kept = list((tmp_path / "outputs" / "work" / "products").rglob("*.zip"))
        assert [p.name for p in kept] == [f"{SID}.zip"]

        (tmp_path / "fixed").touch()
        r = cli("retry", AOI, "--workers", "1")
        assert r.exit_code == 0, r.stderr
        assert downloads() == 1
        # the scene is DONE: its product is not kept any more
        assert list((tmp_path / "outputs" / "work" / "products").rglob("*.zip")) == []


def test_a_storage_that_cannot_be_written_names_its_path_and_the_next_attempt_reuses_the_product(
        cli, repo, testdata, tmp_path, monkeypatch):
    """CopyProductToStorage downloads and verifies the product, then the storage refuses the write (here
    a file stands where the AOI's folder must be): the job's message names the storage path and the OS
    error, the verified product is kept in the work folder, and the next attempt, once the storage is
    writable again, stores that product without downloading it again."""
    payload = tmp_path / "p.json"
    payload.write_text((repo / "payloads" / "denmark-s2.json").read_text())
    storage_root = tmp_path / "storage"
    storage_root.mkdir()
    with FakeCdse("127.0.0.1") as fake:
        data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=f"{SID}.SAFE")
        pid = fake.add_product(data)
        scene = Scene(source_id=SID, aoi=AOI, date=datetime(2022, 1, 4, 10, 34, 31, tzinfo=UTC), wkt=WKT,
                      graph_name="CopyProductToStorage", is_retriable=True,
                      tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                            "constellation": "SENTINEL2", "sourceID": SID},
                      metadata={"uuid": pid, "checksums": {c["Algorithm"]: c["Value"] for c in checksums(data)},
                                "size": len(data), "online": True})
        write_scenes(tmp_path / "scenes.json", [scene], next_=False)
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                           "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                           "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse",
                           "INGESTER_STORAGE_URI": str(storage_root), "INGESTER_RETRY_BACKOFF": "0",
                           "INGESTER_TILE_WORKER": "tests.fakes.workers:noop"}.items():
            monkeypatch.setenv(key, value)

        def downloads() -> int:
            return sum(1 for r in fake.requests if r["method"] == "GET" and "$value" in r["path"])

        (storage_root / AOI).write_text("not a folder")  # the AOI's storage folder cannot be created
        r = cli("aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--workers", "1")
        assert r.exit_code == 4, r.stderr
        assert downloads() == 1  # every attempt of this run used the product downloaded once
        with Store("outputs/ingester.db") as st:
            message = st.one("SELECT message FROM scene")
        target = storage_root / AOI / SID / "tiles" / SID / f"{SID}.zip"
        assert message == f"{SID}: cannot write the product to storage {target}: NotADirectoryError: Not a directory"
        kept = list((tmp_path / "outputs" / "work" / "products").rglob("*.zip"))
        assert [p.name for p in kept] == [f"{SID}.zip"]

        (storage_root / AOI).unlink()  # the storage is writable again
        r = cli("retry", AOI, "--workers", "1")
        assert r.exit_code == 0, r.stderr
        assert downloads() == 1
        stored = list(storage_root.rglob(f"{SID}.zip"))
        assert len(stored) == 1 and stored[0].read_bytes() == data
        assert list((tmp_path / "outputs" / "work" / "products").rglob("*.zip")) == []
