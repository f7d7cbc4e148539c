"""`file:checksum` of the STAC file extension: a multihash in hex (`<code><length><digest>`), e.g.
`1220…` (SHA2-256), `1340…` (SHA2-512, the USGS Landsat items), `d50110…` (MD5), `1e20…` (BLAKE3)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ingester.errors import DownloadError

ALGORITHMS = {0x11: "sha1", 0x12: "sha256", 0x13: "sha512", 0x16: "sha3_256", 0x14: "sha3_512", 0xD5: "md5",
              0x1E: "blake3"}
_BLOCK = 4 * 1024 * 1024


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


def parse(text: str) -> tuple[str, str]:
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


def digest_file(path: Path, algorithm: str) -> str:
    hasher: Any
    if algorithm == "blake3":
        from blake3 import blake3

        hasher = blake3(max_threads=1)
    else:
        hasher = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


def verify(path: Path, checksum: str, what: str) -> str:
    """Compare a file with its `file:checksum`; returns the algorithm; DownloadError on a mismatch.
    A checksum we cannot read is not a reason to refuse the file: returns '' (size still checked)."""
    try:
        algorithm, expected = parse(checksum)
    except ValueError:
        return ""
    got = digest_file(path, algorithm)
    if got != expected:
        raise DownloadError(f"{what}: {algorithm.upper()} checksum mismatch (file:checksum {expected[:16]}…, "
                            f"got {got[:16]}…)")
    return algorithm
