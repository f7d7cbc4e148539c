"""Storage layout (docs/files.md, "Storage layout"): save_output / import_input / delete_output /
resolve_storage_uri on local paths, file:// and a real S3 API (moto server)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from ingester.config import Settings
from ingester.errors import InputError, StorageError
from ingester.storage import (
    delete_output,
    exists,
    import_input,
    resolve_storage_uri,
    save_output,
    tile_prefix,
)
from tests.fakes.moto_s3 import make_bucket, moto_s3, s3_env

S2 = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"


@pytest.fixture
def safe(testdata: Path, tmp_path: Path) -> Path:
    src = testdata / "s2" / f"{S2}.SAFE"
    dst = tmp_path / "work" / f"{S2}.SAFE"
    shutil.copytree(src, dst)
    return dst


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_safe_folder_is_stored_as_zip_under_the_tile_prefix_and_imports_back_identical(safe, tmp_path):
    prefix = tile_prefix(str(tmp_path / "storage"), "denmark", S2, S2)
    uri = save_output(safe, "SAFE", prefix)
    assert uri == f"{prefix}/{S2}.zip"
    with zipfile.ZipFile(uri) as zf:
        names = zf.namelist()
        assert all(n.startswith(f"{S2}.SAFE/") for n in names)
        assert zf.getinfo(f"{S2}.SAFE/MTD_MSIL1C.xml").compress_type == zipfile.ZIP_DEFLATED
    work = tmp_path / "job2"
    got = import_input(uri, "SAFE", work, f"{S2}.SAFE")
    assert got == work / f"{S2}.SAFE"
    assert _tree(got) == _tree(safe)
    assert sorted(p.name for p in work.iterdir()) == [f"{S2}.SAFE"]  # no temporary leftovers


def test_dim_output_zips_the_dim_file_and_its_data_folder(tmp_path):
    work = tmp_path / "w"
    (work / "20220204_A44_preprocessed.data").mkdir(parents=True)
    (work / "20220204_A44_preprocessed.data" / "band.img").write_bytes(b"\x01" * 100)
    (work / "20220204_A44_preprocessed.dim").write_text("<Dimap/>")
    uri = save_output(work / "20220204_A44_preprocessed.dim", "dim", str(tmp_path / "st"))
    assert uri.endswith("/20220204_A44_preprocessed.zip")
    out = tmp_path / "other"
    got = import_input(uri, "dim", out, "20220204_A44_preprocessed.dim")
    assert got.read_text() == "<Dimap/>"
    assert (out / "20220204_A44_preprocessed.data" / "band.img").read_bytes() == b"\x01" * 100


def test_star_extension_zips_every_entry_and_import_renames_the_unpacked_folder(tmp_path):
    folder = tmp_path / "w" / "S1A_scene"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    uri = save_output(folder, "*", f"file://{tmp_path}/st")
    assert uri == f"file://{tmp_path}/st/S1A_scene.zip"
    with zipfile.ZipFile(tmp_path / "st" / "S1A_scene.zip") as zf:
        assert sorted(zf.namelist()) == ["a.txt", "sub/", "sub/b.txt"]
    got = import_input(uri, "*", tmp_path / "job", "S1A_scene")
    assert (got / "a.txt").read_text() == "a" and (got / "sub" / "b.txt").read_text() == "b"


def test_plain_file_is_stored_unchanged_and_zip_layer_is_not_unpacked(tmp_path):
    f = tmp_path / "20220204_T1_sigma0_VV.tif"
    f.write_bytes(b"II*\x00data")
    uri = save_output(f, "tif", str(tmp_path / "st" / "a" / "s" / "tiles" / "t"))
    assert Path(uri).read_bytes() == b"II*\x00data"
    z = tmp_path / "product.zip"
    z.write_bytes(b"PK-not-unpacked")
    zuri = save_output(z, "zip", str(tmp_path / "st"))
    got = import_input(zuri, "zip", tmp_path / "job", "product.zip")
    assert got.read_bytes() == b"PK-not-unpacked"


def test_missing_stored_input_is_a_clear_storage_error_and_leaves_nothing(tmp_path):
    work = tmp_path / "job"
    with pytest.raises(StorageError, match="not found in storage"):
        import_input(str(tmp_path / "nope.zip"), "SAFE", work, f"{S2}.SAFE")
    assert list(work.iterdir()) == []
    with pytest.raises(StorageError, match="not found in storage"):
        import_input(str(tmp_path / "nope.tif"), "tif", work, "nope.tif")
    assert list(work.iterdir()) == []


def test_unsafe_archive_in_storage_is_refused_on_import(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(StorageError, match="escape"):
        import_input(str(bad), "SAFE", tmp_path / "job", "x.SAFE")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", "/abs"])
def test_names_that_would_leave_the_storage_root_are_refused(tmp_path, name):
    with pytest.raises(InputError, match="not allowed in storage paths"):
        tile_prefix(str(tmp_path), "aoi", name, "tile")
    with pytest.raises(InputError, match="not allowed in storage paths"):
        tile_prefix(str(tmp_path), name or "", "scene", "tile")


def test_output_with_an_unsafe_file_name_is_refused_and_nothing_written(tmp_path):
    f = tmp_path / "bad name.tif"
    f.write_text("x")
    with pytest.raises(InputError, match="not allowed"):
        save_output(f, "tif", str(tmp_path / "st"))
    assert not (tmp_path / "st").exists()


def test_delete_output_tolerates_missing_objects(tmp_path):
    f = tmp_path / "x.tif"
    f.write_text("x")
    uri = save_output(f, "tif", f"file://{tmp_path}/st")
    assert delete_output(uri) is True
    assert not (tmp_path / "st" / "x.tif").exists()
    assert delete_output(uri) is False


def test_storage_uri_resolution_prefers_scene_then_payload_then_settings(tmp_path):
    settings = Settings(storage_uri="outputs/storage")
    assert resolve_storage_uri("s3://b/p/", "gs://other", settings) == "s3://b/p"
    assert resolve_storage_uri("", "gs://other/x", settings) == "gs://other/x"
    assert resolve_storage_uri("", "", settings) == str(tmp_path / "outputs" / "storage")
    assert resolve_storage_uri("file://rel/dir", "", settings) == f"file://{tmp_path}/rel/dir"
    with pytest.raises(InputError, match="unsupported scheme 'ftp'"):
        resolve_storage_uri("ftp://host/x", "", settings)
    with pytest.raises(InputError, match="bucket name"):
        resolve_storage_uri("s3://", "", settings)


def test_s3_storage_round_trip_on_a_real_s3_api(safe, tmp_path, monkeypatch):
    with moto_s3() as endpoint:
        s3_env(monkeypatch, endpoint)
        make_bucket(endpoint, "cube")
        prefix = tile_prefix("s3://cube/store", "denmark", S2, S2)
        uri = save_output(safe, "SAFE", prefix)
        assert uri == f"s3://cube/store/denmark/{S2}/tiles/{S2}/{S2}.zip"
        assert exists(uri)
        got = import_input(uri, "SAFE", tmp_path / "job", f"{S2}.SAFE")
        assert _tree(got) == _tree(safe)
        assert delete_output(uri) is True
        assert not exists(uri)
        assert delete_output(uri) is False


def test_a_missing_fsspec_back_end_is_a_clear_storage_error(tmp_path, monkeypatch):
    import fsspec

    def no_backend(uri, **kw):
        raise ImportError("Please install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_backend)
    f = tmp_path / "x.tif"
    f.write_text("x")
    with pytest.raises(StorageError, match=r"gs://bucket/p/x.tif: the gs:// back-end is not installed"):
        save_output(f, "tif", "gs://bucket/p")
