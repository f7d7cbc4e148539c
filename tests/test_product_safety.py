"""Products that would harm the machine are refused, naming the culprit (issue 15 items 1 and 2):
zip bombs (unpacked size over the limits, or over the free space) and folder products holding
symbolic links (which would copy files from outside the product, e.g. /etc/shadow or /root)."""

from __future__ import annotations

import os
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingester import storage
from ingester.config import Settings, load_settings
from ingester.errors import ConfigError, StorageError
from ingester.jobs import SceneJob
from ingester.providers import unpack
from ingester.providers.worker import run_scene_job
from ingester.scenes import Scene
from tests.fakes.products import S2_ID, zip_bomb

BOMB_MEMBER = f"{S2_ID}.SAFE/GRANULE/IMG_DATA/B01.jp2"


def scene(graph: str, **meta) -> Scene:
    return Scene(source_id=S2_ID, aoi="denmark", date=datetime(2018, 1, 1, tzinfo=UTC),
                 wkt="POLYGON((0 0,1 0,1 1,0 1,0 0))", graph_name=graph, metadata=meta)


def job(tmp_path: Path, graph: str, attempt: int = 1) -> SceneJob:
    return SceneJob(job_id=3, attempt=attempt, aoi="denmark", scene=scene(graph),
                    storage_uri=str(tmp_path / "storage"), workdir=str(tmp_path / "work" / f"scene-3-{attempt}"))


def local_settings(tmp_path: Path, **kw) -> Settings:
    return Settings(local_path=str(tmp_path / "archive"), providers="local", workdir=str(tmp_path / "work"), **kw)


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "storage"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --- item 1: zip bombs ------------------------------------------------------------------------------

@pytest.fixture
def bomb(tmp_path) -> Path:
    """A 200 KB product zip whose B01.jp2 unpacks to 200 MiB of zeros (ratio ≈ 1000)."""
    (tmp_path / "archive").mkdir()
    return zip_bomb(tmp_path / "archive" / f"{S2_ID}.zip",
                    {f"{S2_ID}.SAFE/MTD_MSIL1C.xml": b"<n1:Level-1C_User_Product/>", BOMB_MEMBER: 200 << 20})


@pytest.mark.parametrize("graph", ["Pass", "CopyProductToStorage"])
def test_a_zip_bomb_from_the_local_archive_is_an_error_naming_the_member(tmp_path, bomb, graph):
    result = run_scene_job(job(tmp_path, graph), local_settings(tmp_path))
    assert result.outcome == "error", result.message
    assert BOMB_MEMBER in result.message and "INGESTER_UNPACK_MAX_RATIO" in result.message
    assert stored_files(tmp_path) == []  # never stored, never unpacked for a graph


def test_a_multi_gib_member_is_refused_before_a_byte_is_written(tmp_path):
    archive = zip_bomb(tmp_path / "bomb.zip", {"p.SAFE/ok.xml": b"<ok/>", "p.SAFE/huge.tif": 3584 << 20}, crc=False)
    assert archive.stat().st_size < 8 << 20
    with pytest.raises(unpack.UnsafeArchiveError, match=r"'p\.SAFE/huge\.tif' unpacks to 3758096384 bytes"):
        unpack.extract(archive, tmp_path / "out")
    assert nothing_in(tmp_path / "out")


def test_the_absolute_limit_is_a_setting(tmp_path, monkeypatch):
    archive = zip_bomb(tmp_path / "p.zip", {"p.SAFE/a.xml": os.urandom(3000), "p.SAFE/b.tif": os.urandom(9000)})
    monkeypatch.setenv("INGESTER_UNPACK_MAX_BYTES", "10000")
    limits = unpack.Limits.of(load_settings())
    with pytest.raises(unpack.UnsafeArchiveError, match=r"'p\.SAFE/b\.tif'.*over INGESTER_UNPACK_MAX_BYTES=10000"):
        unpack.extract(archive, tmp_path / "out", limits)
    assert nothing_in(tmp_path / "out")
    assert unpack.extract(archive, tmp_path / "out2", unpack.Limits(max_bytes=12000)) == [tmp_path / "out2" / "p.SAFE"]


def test_the_ratio_limit_is_a_setting_and_small_archives_are_not_judged_by_ratio(tmp_path):
    small = zip_bomb(tmp_path / "small.zip", {"p/zeros.bin": 1 << 20})  # ratio ≈ 1000, but 1 MiB only
    assert unpack.extract(small, tmp_path / "a") == [tmp_path / "a" / "p"]
    big = zip_bomb(tmp_path / "big.zip", {"p/zeros.bin": 80 << 20})
    with pytest.raises(unpack.UnsafeArchiveError, match="over INGESTER_UNPACK_MAX_RATIO=100"):
        unpack.extract(big, tmp_path / "b")
    assert unpack.extract(big, tmp_path / "c", unpack.Limits(max_ratio=2000)) == [tmp_path / "c" / "p"]
    assert (tmp_path / "c" / "p" / "zeros.bin").stat().st_size == 80 << 20


def test_free_space_is_checked_before_unpacking(tmp_path):
    archive = zip_bomb(tmp_path / "p.zip", {"p/huge.bin": 1 << 20}, crc=False, declared={"p/huge.bin": 1 << 50})
    with pytest.raises(unpack.InsufficientSpaceError, match=r"needs 1125899906842624 bytes.*free"):
        unpack.extract(archive, tmp_path / "out", unpack.Limits(max_bytes=1 << 60, max_ratio=1e12))
    assert nothing_in(tmp_path / "out")


def test_a_member_larger_than_it_declared_is_not_written_past_its_declared_size(tmp_path):
    archive = zip_bomb(tmp_path / "p.zip", {"p/liar.bin": 4 << 20}, declared={"p/liar.bin": 1000})
    with pytest.raises(unpack.ArchiveError):
        unpack.extract(archive, tmp_path / "out")
    assert nothing_in(tmp_path / "out")


def test_a_stored_bomb_imported_by_a_tile_graph_is_refused(tmp_path):
    prefix = tmp_path / "storage" / "a" / "s" / "tiles" / "t"
    prefix.mkdir(parents=True)
    zip_bomb(prefix / "p.zip", {"p.SAFE/x.tif": 200 << 20})
    with pytest.raises(StorageError, match=r"p\.SAFE/x\.tif"):
        storage.import_input(str(prefix / "p.zip"), "SAFE", tmp_path / "work", "p.SAFE")
    assert not (tmp_path / "work" / "p.SAFE").exists()


@pytest.mark.parametrize("name, value", [("INGESTER_UNPACK_MAX_BYTES", "0"), ("INGESTER_UNPACK_MAX_RATIO", "-1"),
                                         ("INGESTER_UNPACK_MAX_RATIO", "nan")])
def test_unpack_limits_must_be_positive(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


# --- item 2: symbolic links in folder products -----------------------------------------------------

@pytest.fixture
def outside(tmp_path) -> Path:
    """What an attacker would like us to store: a secret file and a folder outside the archive."""
    folder = tmp_path / "outside"
    (folder / "home").mkdir(parents=True)
    (folder / "home" / "id_rsa").write_text("PRIVATE KEY")
    (folder / "shadow").write_text("root:$6$secret")
    return folder


def safe_folder(root: Path) -> Path:
    safe = root / f"{S2_ID}.SAFE"
    (safe / "GRANULE").mkdir(parents=True)
    (safe / "MTD_MSIL1C.xml").write_text("<n1:Level-1C_User_Product/>")
    (safe / "GRANULE" / "B01.jp2").write_bytes(b"\0" * 100)
    return safe


@pytest.mark.parametrize("link, target", [("x", "shadow"), ("GRANULE/y", "home")])
def test_a_symlink_in_a_local_folder_product_is_refused_naming_the_entry(tmp_path, outside, link, target):
    safe = safe_folder(tmp_path / "archive")
    os.symlink(outside / target, safe / link)
    result = run_scene_job(job(tmp_path, "CopyProductToStorage"), local_settings(tmp_path))
    assert result.outcome == "error", result.message
    assert f"{S2_ID}.SAFE/{link}" in result.message and "symbolic link" in result.message
    assert stored_files(tmp_path) == []
    assert not any("PRIVATE KEY" in p.read_text(errors="replace") for p in (tmp_path / "work").rglob("*")
                   if p.is_file())


def test_a_folder_product_that_is_itself_a_symlink_is_refused(tmp_path, outside):
    (tmp_path / "archive").mkdir()
    os.symlink(outside, tmp_path / "archive" / f"{S2_ID}.SAFE")
    result = run_scene_job(job(tmp_path, "CopyProductToStorage"), local_settings(tmp_path))
    assert result.outcome == "error" and "symbolic link" in result.message
    assert stored_files(tmp_path) == []


def test_a_fifo_in_a_folder_product_is_refused_instead_of_blocking_the_copy(tmp_path):
    safe = safe_folder(tmp_path / "archive")
    os.mkfifo(safe / "GRANULE" / "pipe")
    result = run_scene_job(job(tmp_path, "CopyProductToStorage"), local_settings(tmp_path))
    assert result.outcome == "error" and "GRANULE/pipe" in result.message and "not a regular file" in result.message


def test_a_symlink_in_a_folder_given_as_download_link_is_refused(tmp_path, outside):
    safe = safe_folder(tmp_path / "links")
    os.symlink(outside / "shadow", safe / "x")
    settings = Settings(providers="url", workdir=str(tmp_path / "work"))
    sc = SceneJob(job_id=3, attempt=1, aoi="denmark", scene=scene("CopyProductToStorage", download_link=str(safe)),
                  storage_uri=str(tmp_path / "storage"), workdir=str(tmp_path / "work" / "scene-3-1"))
    result = run_scene_job(sc, settings)
    assert result.outcome == "error" and f"{S2_ID}.SAFE/x" in result.message
    assert stored_files(tmp_path) == []


def test_a_clean_folder_product_is_still_stored(tmp_path):
    safe_folder(tmp_path / "archive")
    result = run_scene_job(job(tmp_path, "CopyProductToStorage"), local_settings(tmp_path))
    assert result.outcome == "done", result.message
    (zipped,) = [p for p in stored_files(tmp_path) if p.suffix == ".zip"]
    with zipfile.ZipFile(zipped) as zf:
        assert f"{S2_ID}.SAFE/GRANULE/B01.jp2" in zf.namelist()
    shutil.rmtree(tmp_path / "storage")


def test_an_annotation_zip_bomb_is_refused_by_the_tile_inventory(testdata, tmp_path):
    """`ingester tiles` reads annotation members into memory: one posing as a multi-GiB XML is refused."""
    from ingester.errors import TilingError
    from ingester.tiling.sources import PatternSource
    from tests.fakes.cdse_nodes import IW2_2023, make_product, product_scene

    product = make_product(testdata, IW2_2023)
    member = f"{product.scene_id}.SAFE/annotation/{IW2_2023}"
    zip_bomb(tmp_path / f"{product.scene_id}.zip", {member: 3584 << 20}, crc=False)
    with pytest.raises(TilingError, match=rf"member '{member}' unpacks to 3758096384 bytes"):
        PatternSource(f"{tmp_path}/{{SCENE}}.zip", "LA", Settings()).fetch(product_scene(product))
