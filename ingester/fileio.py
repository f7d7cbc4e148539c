"""Atomic file writes: a temporary file in the same folder, then rename over the target, so that
readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is racy in threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _named(exc: OSError, target: Path) -> OSError:
    """The error about the output the user named, not about our temporary sibling of it."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(target))


def _replace(path: str | Path, fill: Callable[[str], object]) -> None:
    """Create a temporary sibling of `path`, let `fill` write it, give it the umask's mode (mkstemp's
    0600 would hide it from the user's group) and rename it over `path`; on any failure remove it. An
    OSError names `path` (a folder that cannot be written says so about the output asked for)."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file path", str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise _named(exc, target) from None
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename in (tmp, None):
            raise _named(exc, target) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    _replace(path, fill)


def atomic_copy(source: str | Path, path: str | Path) -> None:
    def fill(tmp: str) -> None:
        shutil.copyfile(source, tmp)

    _replace(path, fill)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_chunks(path: str | Path, chunks: Iterable[str]) -> None:
    """Write text (UTF-8) piece by piece as `chunks` yields it, atomically: memory holds one piece at a
    time, and a failure while producing or writing the pieces leaves the target as it was."""

    def fill(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())

    _replace(path, fill)


def nearest_existing(path: str | Path) -> Path:
    """The path itself, or its nearest ancestor that exists (absolute)."""
    found = Path(path).absolute()
    while not found.exists() and found != found.parent:
        found = found.parent
    return found


def folder_problem(path: str | Path) -> str | None:
    """Why files cannot be created under the folder `path` (created if missing), or None: checked before
    a command does any work, so that it fails at once and says what is wrong with the path."""
    base = nearest_existing(path)
    if not base.is_dir():
        return f"{base} is a file, not a folder" if base == Path(path).absolute() else \
            f"{base} is a file, so {path} cannot be a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} cannot be written (permission denied)"
    return None


def output_file_problem(path: str | Path) -> str | None:
    """Why the file `path` cannot be written (atomically, beside itself), or None."""
    target = Path(path)
    if target.is_dir():
        return "is a folder, not a file path"
    return folder_problem(target.parent if str(target.parent) else ".")
