"""Safe zip extraction: unsafe, empty and broken archives are refused and leave nothing behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from ingester.providers.unpack import ArchiveError, UnsafeArchiveError, extract


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_product_zip_is_extracted_with_its_top_level_entries_moved_into_the_target(tmp_path):
    archive = _zip(tmp_path / "p.zip", {"P.SAFE/manifest.safe": b"m", "P.SAFE/GRANULE/x.jp2": b"j"})
    target = tmp_path / "work"
    assert extract(archive, target) == [target / "P.SAFE"]
    assert (target / "P.SAFE" / "GRANULE" / "x.jp2").read_bytes() == b"j"
    assert sorted(p.name for p in target.iterdir()) == ["P.SAFE"]


@pytest.mark.parametrize("member, message", [
    ("../escape.txt", "would escape"),
    ("P.SAFE/../../escape.txt", "would escape"),
    ("/etc/escape.txt", "absolute path"),
    ("C:/escape.txt", "absolute path"),
])
def test_members_escaping_the_target_are_refused_and_nothing_is_written(tmp_path, member, message):
    archive = _zip(tmp_path / "bad.zip", {"P.SAFE/ok.txt": b"ok", member: b"evil"})
    target = tmp_path / "a" / "work"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(archive, target)
    assert not list(tmp_path.rglob("escape.txt"))
    assert not target.exists() or list(target.iterdir()) == []


def test_symbolic_link_members_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("P.SAFE/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "work")
    assert not (tmp_path / "work" / "P.SAFE").exists()


def test_empty_archive_is_a_clear_error(tmp_path):
    archive = _zip(tmp_path / "empty.zip", {})
    with pytest.raises(UnsafeArchiveError, match="empty.zip: empty zip archive"):
        extract(archive, tmp_path / "work")


def test_truncated_or_garbage_archive_is_a_clear_error(tmp_path):
    good = _zip(tmp_path / "good.zip", {"P.SAFE/a.bin": bytes(range(256)) * 400})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match="truncated.zip: not a valid zip archive") as info:
        extract(truncated, tmp_path / "work")
    assert not isinstance(info.value, UnsafeArchiveError)  # a broken transfer: fetched again
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ArchiveError, match="garbage.zip: not a valid zip archive"):
        extract(garbage, tmp_path / "work")


def test_corrupted_member_data_fails_the_crc_check_and_leaves_nothing(tmp_path):
    payload = b"A" * 5000
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("P.SAFE/a.bin", payload)
    data = bytearray(archive.read_bytes())
    data[data.index(payload) + 100] ^= 0xFF
    archive.write_bytes(bytes(data))
    target = tmp_path / "work"
    with pytest.raises(ArchiveError, match="crc.zip: broken archive"):
        extract(archive, target)
    assert list(target.iterdir()) == []


def test_existing_entry_in_the_target_is_not_overwritten(tmp_path):
    archive = _zip(tmp_path / "p.zip", {"P.SAFE/a": b"new"})
    target = tmp_path / "work"
    (target / "P.SAFE").mkdir(parents=True)
    (target / "P.SAFE" / "a").write_bytes(b"old")
    with pytest.raises(ArchiveError, match="already exist"):
        extract(archive, target)
    assert (target / "P.SAFE" / "a").read_bytes() == b"old"
