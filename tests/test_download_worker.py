"""The scene worker: tiles, the graph engine hook, re-runs, unsafe names, error outcomes."""

from __future__ import annotations

import sys
import types
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.jobs import JobResult, SceneJob
from ingester.providers.worker import run_scene_job
from ingester.scenes import Scene, Tile
from tests.fakes.products import S2_ID, checksums, zip_safe

S1_ID = "S1A_IW_SLC__1SDV_20220204T054108_20220204T054135_041757_04F7F7_8E3B"


@pytest.fixture(scope="module")
def product() -> bytes:
    from tests.conftest import TESTDATA

    return zip_safe(TESTDATA / "s2" / f"{S2_ID}.SAFE")


def _job(tmp_path: Path, scene: Scene, attempt: int = 1) -> SceneJob:
    return SceneJob(job_id=7, attempt=attempt, aoi="denmark", scene=scene, storage_uri=str(tmp_path / "storage"),
                    workdir=str(tmp_path / "work" / f"scene-7-{attempt}"))


def _archive(tmp_path: Path, scene_id: str, data: bytes) -> Settings:
    (tmp_path / "archive").mkdir(exist_ok=True)
    (tmp_path / "archive" / f"{scene_id}.zip").write_bytes(data)
    return Settings(local_path=str(tmp_path / "archive"), providers="local", workdir=str(tmp_path / "work"))


def _scene(scene_id: str, graph: str = "CopyProductToStorage", tiles: list[Tile] | None = None, **meta) -> Scene:
    return Scene(source_id=scene_id, aoi="denmark", date=datetime(2022, 2, 4, tzinfo=UTC),
                 wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name=graph, metadata=meta, tiles=tiles or [])


def test_copy_product_stores_the_zip_under_every_burst_tile(tmp_path, product):
    tiles = [Tile(source_id=t, scene_id=S1_ID, date=datetime(2022, 2, 4, tzinfo=UTC), wkt="")
             for t in ("A44_IW1_8951", "A44_IW2_8951")]
    settings = _archive(tmp_path, S1_ID, product)
    result = run_scene_job(_job(tmp_path, _scene(S1_ID, tiles=tiles, checksum=checksums(product))), settings)
    assert result.outcome == "done", result.message
    for tile in ("A44_IW1_8951", "A44_IW2_8951"):
        stored = tmp_path / "storage" / "denmark" / S1_ID / "tiles" / tile / f"{S1_ID}.zip"
        assert stored.read_bytes() == product
    again = run_scene_job(_job(tmp_path, _scene(S1_ID, tiles=tiles, checksum=checksums(product)), 2), settings)
    assert "nothing downloaded" in again.message


def test_a_stored_product_without_sidecar_or_with_a_different_size_is_fetched_again(tmp_path, product):
    settings = _archive(tmp_path, S2_ID, product)
    assert run_scene_job(_job(tmp_path, _scene(S2_ID)), settings).outcome == "done"
    stored = tmp_path / "storage" / "denmark" / S2_ID / "tiles" / S2_ID / f"{S2_ID}.zip"
    stored.write_bytes(product[:1000])  # truncated by someone
    result = run_scene_job(_job(tmp_path, _scene(S2_ID), 2), settings)
    assert "downloaded from local" in result.message and stored.read_bytes() == product
    Path(f"{stored}.verified.json").unlink()  # an interrupted store: zip there, sidecar missing
    result = run_scene_job(_job(tmp_path, _scene(S2_ID), 3), settings)
    assert "downloaded from local" in result.message


def test_other_graphs_get_the_unpacked_product_from_the_graph_engine(tmp_path, product, monkeypatch):
    seen = {}

    def run_scene_graph(job, product_path, settings):
        seen["path"] = product_path
        seen["has_mtd"] = (Path(product_path) / "MTD_MSIL1C.xml").exists()
        return JobResult.done("graph ok")

    module = types.ModuleType("ingester.graph.worker")
    module.run_scene_graph = run_scene_graph
    monkeypatch.setitem(sys.modules, "ingester.graph.worker", module)
    settings = _archive(tmp_path, S2_ID, product)
    result = run_scene_job(_job(tmp_path, _scene(S2_ID, graph="S2_Preprocessing")), settings)
    assert result.outcome == "done" and result.message == "graph ok"
    assert Path(seen["path"]) == tmp_path / "work" / "scene-7-1" / f"{S2_ID}.SAFE" and seen["has_mtd"]
    assert not (tmp_path / "work" / "scene-7-1").exists()


def test_missing_graph_engine_is_an_error_naming_it(tmp_path, product, monkeypatch):
    monkeypatch.setitem(sys.modules, "ingester.graph.worker", None)
    settings = _archive(tmp_path, S2_ID, product)
    result = run_scene_job(_job(tmp_path, _scene(S2_ID, graph="S2_Preprocessing")), settings)
    assert result.outcome == "error"
    assert "graph engine" in result.message and "S2_Preprocessing" in result.message


@pytest.mark.parametrize("bad", ["../../etc", "S2A/../../x", ".."])
def test_scene_names_with_slash_or_dotdot_are_fatal_and_write_nothing(tmp_path, product, bad):
    settings = _archive(tmp_path, S2_ID, product)
    result = run_scene_job(_job(tmp_path, _scene(bad)), settings)
    assert result.outcome == "fatal" and "not allowed in storage paths" in result.message
    assert not (tmp_path / "storage").exists()
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()


def test_a_zip_with_escaping_members_is_never_stored_or_unpacked(tmp_path, monkeypatch):
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{S2_ID}.SAFE/ok.xml", "ok")
        zf.writestr("../../escaped.txt", "evil")
    settings = _archive(tmp_path, S2_ID, buf.getvalue())
    result = run_scene_job(_job(tmp_path, _scene(S2_ID)), settings)
    assert result.outcome == "error" and "would escape" in result.message  # the same zip every time
    assert not (tmp_path / "storage").exists()
    monkeypatch.setitem(sys.modules, "ingester.graph.worker",
                        types.SimpleNamespace(run_scene_graph=lambda *a: JobResult.done()))
    result = run_scene_job(_job(tmp_path, _scene(S2_ID, graph="Other"), 2), settings)
    assert result.outcome == "error" and "would escape" in result.message
    assert not list(tmp_path.rglob("escaped.txt"))


def test_product_not_found_anywhere_is_an_error_with_each_provider_message(tmp_path):
    settings = Settings(providers="local,url", local_path=str(tmp_path), workdir=str(tmp_path / "work"))
    scene = _scene(S2_ID)
    scene.metadata["download_link"] = str(tmp_path / "gone.zip")
    result = run_scene_job(_job(tmp_path, scene), settings)
    assert result.outcome == "error"
    assert result.message.startswith(f"no provider has {S2_ID}: local: not in")
    assert f"url: {tmp_path / 'gone.zip'} does not exist" in result.message


def test_providers_that_cannot_have_the_scene_stay_out_of_the_message(tmp_path):
    settings = Settings(providers="local,url", local_path=str(tmp_path), workdir=str(tmp_path / "work"))
    result = run_scene_job(_job(tmp_path, _scene(S2_ID)), settings)  # no download link: url does not apply
    assert result.outcome == "error" and result.message.startswith(f"no provider has {S2_ID}: local: not in")
    for other in ("url:", "stac-assets:", "landsat-aws:"):
        assert other not in result.message


def _zip_with(tmp_path: Path, members: list[tuple[zipfile.ZipInfo | str, str]]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


@pytest.mark.parametrize("kind", ["symlink", "empty"])
def test_unsafe_or_empty_archives_are_errors_not_retried_as_temporary(tmp_path, kind):
    members = [(f"{S2_ID}.SAFE/ok.xml", "ok"), (_symlink_member(f"{S2_ID}.SAFE/link"), "/etc/passwd")]
    data = _zip_with(tmp_path, members if kind == "symlink" else [])
    result = run_scene_job(_job(tmp_path, _scene(S2_ID)), _archive(tmp_path, S2_ID, data))
    assert result.outcome == "error", result.message
    assert ("symbolic link" if kind == "symlink" else "empty zip archive") in result.message
    assert not (tmp_path / "storage").exists()


def test_a_truncated_archive_stays_temporary(tmp_path, product):
    result = run_scene_job(_job(tmp_path, _scene(S2_ID)), _archive(tmp_path, S2_ID, product[: len(product) // 2]))
    assert result.outcome == "temporary" and "not a valid zip archive" in result.message
    assert not (tmp_path / "storage").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"providers": "local,peps"}, "INGESTER_PROVIDERS: unknown provider(s) peps"),
    ({"providers": "local", "bucket_patterns": "venus=s3://b/{SCENE}.zip"}, "INGESTER_BUCKET_PATTERNS"),
    ({"providers": "cdse"}, "cdse: no credentials"),
])
def test_configuration_mistakes_met_in_a_worker_are_errors_never_fatal(tmp_path, overrides, message):
    settings = Settings(**{"local_path": str(tmp_path), "workdir": str(tmp_path / "work"), **overrides})
    result = run_scene_job(_job(tmp_path, _scene(S2_ID, uuid="abc")), settings)
    assert result.outcome == "error", result.message
    assert message in result.message


# --- "verified in storage" on re-runs --------------------------------------------------------------

def _stored(tmp_path: Path, scene_id: str = S2_ID) -> Path:
    return tmp_path / "storage" / "denmark" / scene_id / "tiles" / scene_id / f"{scene_id}.zip"


def test_a_folder_product_zipped_here_is_verified_in_storage_on_the_next_run(tmp_path, testdata, product):
    import shutil

    shutil.copytree(testdata / "s2" / f"{S2_ID}.SAFE", tmp_path / "archive" / f"{S2_ID}.SAFE")
    settings = Settings(local_path=str(tmp_path / "archive"), providers="local", workdir=str(tmp_path / "work"))
    published = {"checksum": checksums(product), "content_length": len(product)}  # the catalogue's own zip
    first = run_scene_job(_job(tmp_path, _scene(S2_ID, **published)), settings)
    assert first.outcome == "done" and first.details["downloaded"], first.message
    stored = _stored(tmp_path)
    mtime = stored.stat().st_mtime_ns
    again = run_scene_job(_job(tmp_path, _scene(S2_ID, **published), 2), settings)
    assert again.outcome == "done" and "nothing downloaded" in again.message
    assert stored.stat().st_mtime_ns == mtime  # not uploaded again
    assert first.details.get("rezipped") is True
    data = bytearray(stored.read_bytes())  # damaged in storage, same size: zipped and stored again
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    third = run_scene_job(_job(tmp_path, _scene(S2_ID, **published), 3), settings)
    assert third.details["downloaded"], third.message
    with zipfile.ZipFile(stored) as zf:
        assert zf.testzip() is None


def test_a_published_md5_is_checked_against_a_blake3_sidecar(tmp_path, product):
    import hashlib

    settings = _archive(tmp_path, S2_ID, product)
    first = run_scene_job(_job(tmp_path, _scene(S2_ID)), settings)  # no checksum published yet
    assert first.outcome == "done" and first.details["algorithm"] == "blake3", first.message
    right = run_scene_job(_job(tmp_path, _scene(S2_ID, md5=hashlib.md5(product).hexdigest()), 2), settings)
    assert "nothing downloaded" in right.message
    wrong = run_scene_job(_job(tmp_path, _scene(S2_ID, md5="0" * 32), 3), settings)
    assert "nothing downloaded" not in wrong.message  # fetched again, and the local copy fails the MD5
    assert wrong.outcome == "error" and "MD5 checksum mismatch" in wrong.message
