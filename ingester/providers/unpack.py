"""Safe products: zip extraction where no member escapes the target, no absolute paths, no links, no
zip bomb (unpacked size limited absolutely and relative to the archive, free space checked first),
all or nothing; and folder products that hold nothing but regular files and folders.

A leaf module (it imports only `ingester.errors`) so that `storage.py` can use it as well as the
providers. The archive is extracted into a temporary folder next to the target, checked, then its
top-level entries are moved into place; on any failure nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ingester.errors import DownloadError, Outcome

DEFAULT_MAX_BYTES = 64 * 1024**3  # the largest Sentinel-1 SLC products unpack to about 8 GiB
DEFAULT_MAX_RATIO = 100.0  # products (JPEG 2000, SAR samples) barely compress: real ones stay below 5
RATIO_FLOOR = 64 * 1024**2  # below this unpacked size the ratio is not judged (small XML-only zips)


class ArchiveError(DownloadError):
    """A zip archive is broken (truncated, bad CRC) or unsafe; a broken download may be fetched again."""

    outcome: Outcome = "temporary"


class UnsafeArchiveError(ArchiveError):
    """A zip archive that is refused whatever the transfer: empty, or a member with an absolute path,
    a path escaping the target, or a symbolic link. Fetching it again gives the same archive."""

    outcome: Outcome = "error"


class InsufficientSpaceError(DownloadError):
    """Not enough free space to unpack an archive: checked before unpacking; not the archive's fault."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """How far an archive may unpack: at most `max_bytes` in all, and, past `ratio_floor` bytes, at most
    `max_ratio` times the archive's own size (INGESTER_UNPACK_MAX_BYTES, INGESTER_UNPACK_MAX_RATIO)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO
    ratio_floor: int = RATIO_FLOOR

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(int(settings.unpack_max_bytes), float(settings.unpack_max_ratio))


def check_sizes(archive: Path, infos: list[zipfile.ZipInfo], limits: Limits | None = None) -> int:
    """The archive's unpacked size, from its declared member sizes (zipfile never reads a member past its
    declared size: a member that lies fails its CRC); raises UnsafeArchiveError over the limits, naming
    the member that weighs most."""
    limits = limits or Limits()  # the defaults; callers with settings pass `Limits.of(settings)`
    files = [i for i in infos if not i.is_dir()]
    total = sum(i.file_size for i in files)
    if not files:
        return 0
    worst = max(files, key=lambda i: (i.file_size - i.compress_size, i.file_size))
    packed = max(os.path.getsize(archive), 1)
    ratio = total / packed
    member = (f"{archive.name}: member {worst.filename!r} unpacks to {worst.file_size} bytes "
              f"(from {worst.compress_size} compressed)")
    if total > limits.max_bytes:
        raise UnsafeArchiveError(f"{member}; the archive would unpack to {total} bytes, over "
                                 f"INGESTER_UNPACK_MAX_BYTES={limits.max_bytes} (refused, nothing unpacked)")
    if total > limits.ratio_floor and ratio > limits.max_ratio:
        raise UnsafeArchiveError(f"{member}; the archive would unpack to {total} bytes, {ratio:.0f}× its own "
                                 f"{packed} bytes, over INGESTER_UNPACK_MAX_RATIO={limits.max_ratio:g} (a zip "
                                 "bomb? refused, nothing unpacked)")
    return total


def check_free_space(archive: Path, target: Path, total: int, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse to start unpacking `total` bytes into `target` when its file system has less free space."""
    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return  # cannot tell: the write itself will fail cleanly (all or nothing)
    if total > free:
        largest = max((i for i in infos if not i.is_dir()), key=lambda i: i.file_size)
        raise InsufficientSpaceError(f"{archive.name}: not enough free space in {target} to unpack it: needs "
                                     f"{total} bytes, {free} free (largest member {largest.filename!r}: "
                                     f"{largest.file_size} bytes)")


def check_folder(folder: Path) -> None:
    """A folder product holds regular files and folders only: a symbolic link (which could make us copy
    and store /etc/shadow or a whole home folder) or a special file (a FIFO blocks the copy, a device
    never ends) is refused, naming the entry, as are symbolic links among zip members. The product
    folder itself must not be a link either."""
    folder = Path(folder)
    base = folder.parent
    if folder.is_symlink():
        raise UnsafeArchiveError(f"{folder}: the product folder is a symbolic link (refused: a folder product "
                                 "holds its files itself)")
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(base).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"{folder}: entry {rel!r} is a symbolic link (refused: it could point "
                                         "outside the product)")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsafeArchiveError(f"{folder}: entry {rel!r} is not a regular file or folder (refused)")


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


def list_members(archive: str | Path, limits: Limits | None = None) -> list[zipfile.ZipInfo]:
    """The archive's members, checked for safety (paths, links, unpacked size); raises ArchiveError for
    empty, broken or unsafe zips."""
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
    check_sizes(archive, infos, limits)
    return infos


def extract(archive: str | Path, target: str | Path, limits: Limits | None = None) -> list[Path]:
    """Extract `archive` into the folder `target`; returns the top-level entries created in it.

    Members are written one by one through our own path checks (zipfile's extractall would silently
    rewrite unsafe names instead of refusing the archive). CRCs are checked while reading. The
    unpacked size is checked against the limits and the free space before anything is written, and
    counted while writing (a member never grows past its declared size).
    """
    archive = Path(archive)
    target = Path(target)
    infos = list_members(archive, limits)
    total = sum(i.file_size for i in infos if not i.is_dir())
    target.mkdir(parents=True, exist_ok=True)
    check_free_space(archive, target, total, infos)
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
                written = 0
                with zf.open(info) as src, open(dest, "wb") as out:
                    while block := src.read(1024 * 1024):
                        written += len(block)
                        if written > info.file_size:
                            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} unpacks to more "
                                                     f"than the {info.file_size} bytes it declares (refused)")
                        out.write(block)
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
