"""The provider interface and what every provider shares: expected size/checksums from the scene's
metadata, mapping HTTP failures to provider errors, and products placed in the work directory.

A provider is built from the settings and answers `fetch(scene, workdir) -> Path`: the product file
(`<scene>.zip`) or the unpacked product folder (`<scene>.SAFE`, `<scene>`) inside `workdir`. It raises
NotFound (try the next provider), AuthError, RateLimited, Unavailable (may pass: retried with backoff,
then reported as temporary) or another ProviderError/DownloadError (permanent for this provider).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ingester.config import Settings
from ingester.errors import (
    AuthError,
    DownloadError,
    HTTPError,
    NotFound,
    ProviderError,
    RateLimited,
    Unavailable,
)
from ingester.http.checksums import Expected, Verified
from ingester.http.clients import Clients
from ingester.http.transfer import TransferProgress
from ingester.providers.unpack import check_folder
from ingester.scenes import Scene
from ingester.storage import check_name

_OFFLINE_WORDS = ("offline", "not online", "long term archive", "being restored", "not available yet")


def configured_names(settings: Any) -> list[str]:
    """The provider names of INGESTER_PROVIDERS, lower-cased, in order (unchecked: `chain.listed_providers`
    checks them against the known providers)."""
    return [n.strip().lower() for n in settings.providers.split(",") if n.strip()]


class Provider:
    """Base class. Subclasses set `name` and implement `fetch`; `configured` says whether the settings
    give it what it needs (the chain skips unconfigured providers unless they are named explicitly).
    `clients` are the HTTP sessions and tokens of the job (or command) the provider works for."""

    name = "provider"

    def __init__(self, settings: Settings, progress: TransferProgress | None = None, clients: Clients | None = None):
        self.settings = settings
        self.progress = progress
        self.clients = clients if clients is not None else Clients()
        self.verified: dict[str, Verified] = {}  # path → what the transfer verified
        self.graph_dirs: tuple[str, ...] = ()  # the payload's graph folders (set by the chain)

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Whether the chain adds this provider after the listed ones (its settings are present)."""
        return False

    def may_have(self, scene: Scene) -> bool:
        """Whether this provider could deliver this kind of scene with its settings (cheap: no network, no
        credential check). The chain tries only those (their NotFound would say nothing useful), and the
        pre-flight check finds the scenes no configured provider can deliver."""
        return True

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def resume_part(settings: Settings, provider: str, scene: Scene, file_name: str) -> str:
    """Where a partial HTTP download is kept between job attempts (the job's work directory is
    deleted after each attempt): `<workdir>/downloads/<provider>/<aoi>/<file>.part`. One run holds
    an AOI at a time, so no two jobs write the same part."""
    folder = Path(settings.workdir).resolve() / "downloads" / provider / check_name("AOI", scene.aoi or "_")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{file_name}.part")


def product_name(scene: Scene) -> str:
    """The scene id, checked: it names files in the work directory and in storage."""
    return check_name("scene", scene.source_id)


def _get(metadata: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in metadata and metadata[key] not in (None, ""):
            return metadata[key]
    lowered = {k.lower(): v for k, v in metadata.items()}
    for key in keys:
        value = lowered.get(key.lower())
        if value not in (None, ""):
            return value
    return None


def expected_from_metadata(metadata: dict[str, Any]) -> Expected:
    """Size and checksums published by the catalogue, in any of the shapes found in scene metadata:
    the OData `Checksum` list ([{Algorithm, Value}]), a {algorithm: value} dict, or flat keys
    `md5`/`blake3`/`checksum_md5`/`checksum_blake3`; size from `content_length`/`ContentLength`/`size`."""
    md5 = _get(metadata, "md5", "checksum_md5", "md5sum")
    b3 = _get(metadata, "blake3", "checksum_blake3")
    checksums = _get(metadata, "checksum", "checksums")
    if isinstance(checksums, str):
        try:
            import json

            checksums = json.loads(checksums)
        except ValueError:
            checksums = None
    if isinstance(checksums, dict):
        checksums = [{"Algorithm": k, "Value": v} for k, v in checksums.items()]
    if isinstance(checksums, list):
        for item in checksums:
            if not isinstance(item, dict):
                continue
            algo = str(item.get("Algorithm") or item.get("algorithm") or "").upper()
            value = item.get("Value") or item.get("value")
            if algo == "MD5" and value and not md5:
                md5 = str(value)
            elif algo == "BLAKE3" and value and not b3:
                b3 = str(value)
    size = _get(metadata, "content_length", "ContentLength", "size", "bytes")
    try:
        size = int(size) if size is not None else None
    except (TypeError, ValueError):
        size = None
    return Expected(size=size if size and size > 0 else None, md5=md5, blake3=b3)


def is_offline(metadata: dict[str, Any]) -> bool:
    value = _get(metadata, "online")
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0", "no")
    return value is False


def provider_error(provider: str, exc: HTTPError) -> ProviderError:
    """An HTTP failure as a provider error: 404/410 NotFound, 401/403 AuthError, 429 RateLimited,
    no answer/408/5xx or an 'offline' answer Unavailable, other statuses permanent."""
    message = str(exc) if str(exc).startswith(f"{provider}:") else f"{provider}: {exc}"
    text = str(exc).lower()
    status = exc.status
    if any(word in text for word in _OFFLINE_WORDS) and status not in (401,):
        return Unavailable(f"{message} (the product is offline; try again later)")
    if status in (404, 410):
        return NotFound(message)
    if status in (401, 403):
        return AuthError(message)
    if status == 429:
        return RateLimited(message)
    if status is None or status == 408 or status >= 500:
        return Unavailable(message)
    return ProviderError(message)


def place_local(source: Path, workdir: Path) -> Path:
    """Copy a local product (zip file or folder) into the work directory (never used in place: the
    work directory is deleted after the job). A folder holding a symbolic link or a special file, or
    that is itself a link, is refused (UnsafeArchiveError naming the entry)."""
    target = workdir / source.name
    tmp = workdir / f".{source.name}.part"
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if source.is_dir():
        check_folder(source)  # no symbolic link, no special file: nothing from outside the product
    try:
        if source.is_dir():
            # links are copied as links, never followed (one made after the check is refused when zipped:
            # the worker checks the copy again)
            shutil.copytree(source, tmp, symlinks=True)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise DownloadError(f"cannot copy {source} into the work directory: {exc.strerror or exc}") from None
    return target


__all__ = ["Provider", "product_name", "expected_from_metadata", "is_offline", "provider_error", "place_local",
           "resume_part"]
