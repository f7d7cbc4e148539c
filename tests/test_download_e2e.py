"""`ingester aoi` on the S2 example payload against the fake CDSE download service: every product
is downloaded, verified and stored; re-running downloads nothing, even with a fresh store.
(Skipped until the workflow — `ingester aoi` — is in the tree.)"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester.scenes import Scene, write_scenes
from tests.fakes.cdse_download import FakeCdse
from tests.fakes.products import S2_ID, zip_safe

pytestmark = pytest.mark.skipif(not (Path(__file__).resolve().parent.parent / "ingester" / "coordinator.py").exists(),
                                reason="the workflow (ingester aoi) is not merged yet")

AOI = "DenmarkDemoS2"
IDS = ["S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858",
       "S2B_MSIL1C_20220106T102329_N0510_R065_T32UNG_20240501T134512",
       "S2A_MSIL1C_20220107T104421_N0510_R008_T32UNG_20240422T021155"]
WKT = "POLYGON ((8.99968 55.89489, 10.76096 55.87337, 10.71249 54.88733, 8.99971 54.90786, 8.99968 55.89489))"


def test_aoi_downloads_verifies_and_stores_every_product_and_a_rerun_downloads_nothing(
        cli, repo, testdata, tmp_path, monkeypatch):
    from blake3 import blake3

    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2.json", tmp_path / "denmark-s2.json"))
    with FakeCdse("127.0.0.1") as fake:
        scenes = []
        for sid in IDS:
            data = zip_safe(testdata / "s2" / f"{S2_ID}.SAFE", top=f"{sid}.SAFE")
            pid = fake.add_product(data)
            date = datetime.strptime(sid.split("_")[2], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            scenes.append(Scene(
                source_id=sid, aoi=AOI, date=date, wkt=WKT, graph_name="CopyProductToStorage", is_retriable=True,
                tags={"area": "Denmark", "provider": "geocube-ingester", "source": "tutorial",
                      "constellation": "SENTINEL2", "sourceID": sid},
                metadata={"uuid": pid, "checksums": {"MD5": "", "BLAKE3": blake3(data).hexdigest()},
                          "size": len(data), "online": True}))
        write_scenes(tmp_path / "scenes.json", scenes, next_=False)
        fake.drop_after = [100_000]  # one flaky transfer on the way
        for key, value in {"INGESTER_CDSE_DOWNLOAD_URL": fake.odata, "INGESTER_CDSE_CATALOGUE_URL": fake.odata,
                           "INGESTER_CDSE_TOKEN_URL": fake.token_url, "INGESTER_CDSE_USERNAME": fake.username,
                           "INGESTER_CDSE_PASSWORD": fake.password, "INGESTER_PROVIDERS": "cdse"}.items():
            monkeypatch.setenv(key, value)
        args = ["aoi", payload, "--scenes", tmp_path / "scenes.json", "--create-layers", "--json",
                "--workers", "2", "--tile-worker", "tests.fakes.workers:noop"]
        first = cli(*args)
        assert first.exit_code == 0, first.stderr
        assert json.loads(first.stdout)["summary"]["scenes"]["done"] == 3
        storage = tmp_path / "outputs" / "storage" / AOI
        for sid in IDS:
            stored = storage / sid / "tiles" / sid / f"{sid}.zip"
            assert stored.exists(), sorted(str(p) for p in storage.rglob("*"))
            assert json.loads(Path(f"{stored}.verified.json").read_text())["checked"] == "blake3"
        gets = len([r for r in fake.requests if "$value" in r["path"]])
        assert gets == 4  # three products, one resumed

        again = cli(*args)
        assert again.exit_code == 0, again.stderr
        Path("outputs/ingester.db").unlink()  # even a fresh store finds the verified products
        fresh = cli(*args)
        assert fresh.exit_code == 0, fresh.stderr
        assert len([r for r in fake.requests if "$value" in r["path"]]) == gets
        secrets = [fake.password, *fake.issued_tokens()]
    text = first.stdout + first.stderr + fresh.stdout + fresh.stderr
    text += "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "outputs").rglob("*") if p.is_file())
    assert [s for s in secrets if s in text] == []
