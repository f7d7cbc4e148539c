"""Checksums: what a file must match (`Expected`: size, MD5, BLAKE3), what was verified (`Verified`),
hashing a file or a stream on a second thread (`BackgroundHasher`), and the STAC `file:checksum`
multihashes (SHA-1, SHA-2, SHA-3, MD5, BLAKE3).

BLAKE3 is computed when it is published or when nothing is (it is the faster of the two); MD5 only when
it is the one published checksum."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Any

from ingester.errors import DownloadError

BLOCK = 4 * 1024 * 1024  # bytes per read when hashing a file, and per hand-off to the hashing thread


class Expected:
    """What a downloaded file must match: size and/or checksums (hex digests, lower case)."""

    __slots__ = ("size", "md5", "blake3")

    def __init__(self, size: int | None = None, md5: str | None = None, blake3: str | None = None):
        self.size = size
        self.md5 = md5.lower() if md5 else None
        self.blake3 = blake3.lower() if blake3 else None

    def __repr__(self) -> str:
        return f"Expected(size={self.size}, md5={self.md5}, blake3={self.blake3})"

    @property
    def algorithm(self) -> str:
        """The checksum to compute while streaming: the published one (BLAKE3 is faster), else BLAKE3."""
        if self.blake3 or not self.md5:
            return "blake3"
        return "md5"

    @property
    def digest(self) -> str | None:
        return self.blake3 if self.algorithm == "blake3" else self.md5


class Verified:
    """A verified file: where it is, its size, and the digest computed while streaming."""

    __slots__ = ("path", "size", "algorithm", "digest", "checked")

    def __init__(self, path: str, size: int, algorithm: str, digest: str, checked: str):
        self.path = path
        self.size = size
        self.algorithm = algorithm
        self.digest = digest
        self.checked = checked  # "blake3", "md5", "size" or "none": what was compared to the catalogue

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "algorithm": self.algorithm, "digest": self.digest, "checked": self.checked}


def new_hasher(algorithm: str) -> Any:
    """A hasher for `algorithm`: BLAKE3 (one thread: the transfer hashes beside its own I/O) or any
    hashlib name (md5, sha256, …)."""
    if algorithm == "blake3":
        from blake3 import blake3

        return blake3(max_threads=1)
    return hashlib.new(algorithm)


def hash_file(path: str, algorithm: str, hasher: Any = None, limit: int | None = None) -> Any:
    """Feed a file (or its first `limit` bytes) to a hasher; returns the hasher."""
    hasher = hasher or new_hasher(algorithm)
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(BLOCK if remaining is None else min(BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    return hasher


def check(size: int, algorithm: str, digest: str, expected: Expected, announced: int | None,
          name: str) -> str:
    """Compare what was received with what the catalogue (or the server) announced; returns what was
    checked, raises DownloadError on a mismatch."""
    want_size = expected.size if expected.size is not None else announced
    if want_size is not None and size != want_size:
        raise DownloadError(f"{name}: size mismatch: received {size} bytes, expected {want_size}")
    published = expected.digest
    if published is not None:
        if digest != published:
            raise DownloadError(f"{name}: {algorithm.upper()} checksum mismatch: got {digest}, expected {published}")
        return algorithm
    return "size" if want_size is not None else "none"


def verify_file(path: Path, expected: Expected, announced: int | None = None) -> Verified:
    """Hash the file and compare it with the published size/checksum; raises DownloadError on a
    mismatch (the caller deletes the file)."""
    size = os.path.getsize(path)
    digest = hash_file(str(path), expected.algorithm).hexdigest()
    checked = check(size, expected.algorithm, digest, expected, announced, path.name)
    return Verified(str(path), size, expected.algorithm, digest, checked)


class BackgroundHasher:
    """Hashes chunks on a second thread (hashlib and blake3 release the GIL on large buffers), so
    checksumming overlaps the network and disk I/O; a bounded queue keeps memory bounded."""

    def __init__(self, hasher: Any, depth: int = 4):
        self.depth = depth
        self._hasher = hasher
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="download-hasher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            block = self._queue.get()
            try:
                if block is None:
                    return
                if self._error is None:  # after a failure, drain the queue so that put() never blocks
                    self._hasher.update(block)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the streaming thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"checksum thread failed: {type(self._error).__name__}: {self._error}") \
                from self._error

    def update(self, block: bytes | memoryview) -> None:
        self._raise()
        self._queue.put(block)

    def reset(self, hasher: Any) -> None:
        self._queue.join()
        self._raise()
        self._hasher = hasher

    def hexdigest(self) -> str:
        self._queue.join()
        self._raise()
        return self._hasher.hexdigest()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


# --- STAC `file:checksum`: multihash in hex (`<code><length><digest>`), e.g. `1220…` (SHA2-256), `1340…`
# (SHA2-512, the USGS Landsat items), `d50110…` (MD5), `1e20…` (BLAKE3) ---------------------------------

ALGORITHMS = {0x11: "sha1", 0x12: "sha256", 0x13: "sha512", 0x16: "sha3_256", 0x14: "sha3_512", 0xD5: "md5",
              0x1E: "blake3"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def parse_multihash(text: str) -> tuple[str, str]:
    """(hashlib algorithm name, hex digest) of a multihash; raises ValueError when it is not one we know."""
    data = bytes.fromhex(text.strip())
    code, pos = _varint(data, 0)
    length, pos = _varint(data, pos)
    digest = data[pos:]
    if code not in ALGORITHMS:
        raise ValueError(f"unsupported multihash code 0x{code:x}")
    if len(digest) != length:
        raise ValueError(f"multihash digest has {len(digest)} bytes, its header says {length}")
    return ALGORITHMS[code], digest.hex()


def digest_file(path: str | Path, algorithm: str) -> str:
    """The hex digest of a file with any hashlib algorithm or BLAKE3."""
    return hash_file(str(path), algorithm).hexdigest()


def verify_multihash(path: Path, checksum: str, what: str) -> str:
    """Compare a file with its `file:checksum`; returns the algorithm; DownloadError on a mismatch.
    A checksum we cannot read is not a reason to refuse the file: returns '' (size still checked)."""
    try:
        algorithm, expected = parse_multihash(checksum)
    except ValueError:
        return ""
    got = digest_file(path, algorithm)
    if got != expected:
        raise DownloadError(f"{what}: {algorithm.upper()} checksum mismatch (file:checksum {expected[:16]}…, "
                            f"got {got[:16]}…)")
    return algorithm
