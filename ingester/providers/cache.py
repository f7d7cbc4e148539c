"""Verified products kept between the attempts of a scene job.

A scene graph other than `CopyProductToStorage` (SNAP preprocessing, …) does not store the product:
without a copy kept somewhere, every attempt after a processing failure would download it again. The
scene job keeps the verified product in the work folder, `<workdir>/products/<aoi>/<scene>.zip`, with
its verification record beside it (`<scene>.zip.verified.json`, written last: what says "verified"),
and every later attempt of the scene (automatic re-run or `ingester retry`) uses it instead of
downloading. It is deleted when the scene's job succeeds, or by `ingester remove --scene`; a FAILED
scene keeps it for `ingester retry --force`.

`CopyProductToStorage` keeps the product the same way when the storage refuses the write (a full or
read-only disk, a bucket without permission): the next attempt stores the kept product instead of
downloading it again, and deletes it once stored.

Only product files (zips) are kept: folder products come from a local archive or a bucket, read again
cheaply. Reads and writes are the job's own (one run per AOI at a time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ingester.config import Settings
from ingester.storage import VERIFIED_SUFFIX, check_name


def product_path(settings: Settings, aoi: str, scene: str) -> Path:
    return Path(settings.workdir).resolve() / "products" / check_name("AOI", aoi) / f"{check_name('scene', scene)}.zip"


def kept_product(settings: Settings, aoi: str, scene: str, metadata: dict[str, Any]) -> Path | None:
    """The kept product of the scene when it is there and still verified (size and the catalogue's
    checksum, as for a product in storage), else None (a stale one is deleted)."""
    from ingester.providers.stored import is_verified_in_storage

    path = product_path(settings, aoi, scene)
    if not path.is_file():
        return None
    if is_verified_in_storage(str(path), metadata):
        return path
    forget_product(settings, aoi, scene)
    return None


def keep_product(settings: Settings, aoi: str, scene: str, source: Path, record: dict[str, Any]) -> Path:
    """Keep a verified product file (hard link when possible: no copy of gigabytes), record last."""
    path = product_path(settings, aoi, scene)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    record_tmp = path.with_name(f".{path.name}{VERIFIED_SUFFIX}.part")
    record_tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
    os.replace(record_tmp, Path(f"{path}{VERIFIED_SUFFIX}"))
    return path


def place_kept(path: Path, workdir: Path) -> Path:
    """The kept product in the job's work folder (hard link when possible), where it may be unpacked."""
    target = workdir / path.name
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target


def forget_product(settings: Settings, aoi: str, scene: str) -> None:
    """Delete the scene's kept product (record first: an interrupted delete leaves nothing 'verified')."""
    with contextlib.suppress(ValueError):  # a name that can never have been kept
        path = product_path(settings, aoi, scene)
        Path(f"{path}{VERIFIED_SUFFIX}").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
