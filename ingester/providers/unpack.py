"""Safe zip extraction: no member escapes the target, no absolute paths, no links; all or nothing.

A leaf module (it imports only `ingester.errors`) so that `storage.py` can use it as well as the
providers. The archive is extracted into a temporary folder next to the target, checked, then its
top-level entries are moved into place; on any failure nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ingester.errors import DownloadError


class ArchiveError(DownloadError):
    """A zip archive is broken (truncated, bad CRC) or unsafe; a broken download may be fetched again."""


class UnsafeArchiveError(ArchiveError):
    """A zip archive that is refused whatever the transfer: empty, or a member with an absolute path,
    a path escaping the target, or a symbolic link. Fetching it again gives the same archive."""


def _check_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's relative path, or None for the archive's root entries ('./'); raises if unsafe."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} would escape the target folder")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link (refused)")
    if not parts:
        return None
    return PurePosixPath(*parts)


def list_members(archive: str | Path) -> list[zipfile.ZipInfo]:
    """The archive's members, checked for safety; raises ArchiveError for empty, broken or unsafe zips."""
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{archive.name}: not a valid zip archive ({exc})") from None
    except OSError as exc:
        raise ArchiveError(f"{archive.name}: cannot read the archive ({exc.strerror or exc})") from None
    if not infos:
        raise UnsafeArchiveError(f"{archive.name}: empty zip archive")
    for info in infos:
        _check_member(archive, info)
    return infos


def extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract `archive` into the folder `target`; returns the top-level entries created in it.

    Members are written one by one through our own path checks (zipfile's extractall would silently
    rewrite unsafe names instead of refusing the archive). CRCs are checked while reading.
    """
    archive = Path(archive)
    target = Path(target)
    infos = list_members(archive)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target))
    try:
        root = tmp.resolve()
        with zipfile.ZipFile(archive) as zf:
            for info in infos:
                rel = _check_member(archive, info)
                if rel is None:
                    continue
                dest = (tmp / rel).resolve()
                if root not in dest.parents:
                    raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} would escape the target folder")
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
        entries = sorted(p.name for p in tmp.iterdir())
        if not entries:
            raise UnsafeArchiveError(f"{archive.name}: the archive holds no file")
        clashes = [name for name in entries if (target / name).exists()]
        if clashes:
            raise ArchiveError(f"{archive.name}: {', '.join(clashes)} already exist(s) in {target}")
        moved: list[Path] = []
        try:
            for name in entries:
                os.replace(tmp / name, target / name)
                moved.append(target / name)
        except OSError:
            for path in moved:  # roll back: all or nothing
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            raise
        return moved
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ArchiveError(f"{archive.name}: broken archive ({exc})") from None
    except OSError as exc:
        raise ArchiveError(f"{archive.name}: extraction failed ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
