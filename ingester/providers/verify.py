"""Verification of files that did not come through an HTTP transfer (local copies, fsspec, FTP)."""

from __future__ import annotations

import os
from pathlib import Path

from ingester.http import Expected, Verified, check, hash_file


def verify_file(path: Path, expected: Expected, announced: int | None = None) -> Verified:
    """Hash the file and compare it with the published size/checksum; raises DownloadError on a
    mismatch (the caller deletes the file)."""
    size = os.path.getsize(path)
    digest = hash_file(str(path), expected.algorithm).hexdigest()
    checked = check(size, expected.algorithm, digest, expected, announced, path.name)
    return Verified(str(path), size, expected.algorithm, digest, checked)
