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


def _replace(path: str | Path, fill: Callable[[str], object]) -> None:
    """Create a temporary sibling of `path`, let `fill` write it, give it the umask's mode (mkstemp's
    0600 would hide it from the user's group) and rename it over `path`; on any failure remove it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    _replace(path, fill)


def atomic_copy(source: str | Path, path: str | Path) -> None:
    _replace(path, lambda tmp: shutil.copyfile(source, tmp))


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
