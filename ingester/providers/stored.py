"""A product verified in storage: its sidecar `<scene>.zip.verified.json` (size, checksum algorithm and
digest, what was compared with the catalogue, provider, `rezipped` for folder products zipped here),
written after the zip, and the check that a stored (or kept) product is still the one verified."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ingester import storage
from ingester.http.checksums import new_hasher
from ingester.providers.base import expected_from_metadata
from ingester.storage import VERIFIED_SUFFIX, StorageOptions

_HASH_BLOCK = 4 * 1024 * 1024


def read_sidecar(uri: str, options: StorageOptions | None = None) -> dict[str, Any] | None:
    try:
        fs, path = storage.filesystem(uri + VERIFIED_SUFFIX, options)
        with fs.open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, OSError):
        return None


def stored_digest(uri: str, algorithm: str, options: StorageOptions | None = None) -> str:
    """The checksum of a stored object, read as a stream."""
    fs, path = storage.filesystem(uri, options)
    hasher = new_hasher(algorithm)
    with fs.open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


def is_verified_in_storage(uri: str, metadata: dict[str, Any], options: StorageOptions | None = None) -> bool:
    """The stored product has its sidecar and the size it records, and its digest is right:

    - a product zipped by us from a folder (`rezipped` in the sidecar) is compared with the sidecar's
      own digest (the catalogue's size and checksums describe the provider's zip, not ours);
    - any other is compared with the catalogue: its size, and a published checksum, taken from the
      sidecar when it holds that algorithm, else computed from the stored object (a sidecar holding
      BLAKE3 never passes for a catalogue that publishes only MD5 without the MD5 being checked)."""
    record = read_sidecar(uri, options)
    if not record:
        return False
    try:
        fs, path = storage.filesystem(uri, options)
        if int(fs.size(path)) != int(record.get("size", -1)):
            return False
        if record.get("rezipped"):
            algorithm, digest = str(record.get("algorithm")), record.get("digest")
            return bool(digest) and algorithm in ("blake3", "md5") and stored_digest(uri, algorithm, options) == digest
        expected = expected_from_metadata(metadata)
        if expected.size is not None and expected.size != record.get("size"):
            return False
        published = {"md5": expected.md5, "blake3": expected.blake3}
        algorithm = str(record.get("algorithm"))
        if published.get(algorithm):
            return published[algorithm] == record.get("digest")
        for algorithm in ("blake3", "md5"):  # the sidecar has another checksum than the published one
            if published[algorithm]:
                return stored_digest(uri, algorithm, options) == published[algorithm]
        return True
    except (FileNotFoundError, OSError, TypeError, ValueError):
        return False


def write_sidecar(uri: str, record: dict[str, Any], workdir: Path, options: StorageOptions | None = None) -> None:
    local = workdir / f".{os.path.basename(uri)}{VERIFIED_SUFFIX}"
    local.write_text(json.dumps(record, sort_keys=True) + "\n")
    storage.put_file(str(local), uri + VERIFIED_SUFFIX, options)
    local.unlink(missing_ok=True)
