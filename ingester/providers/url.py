"""The scene's own link, `metadata.download_link`: a local path or file:// (copied into the work
directory), http(s) (streamed, resumed, verified), s3:// or gs:// (through fsspec, verified).
A link without a `.zip` name is saved as `<scene>.zip` when it is a zip, else under its own name."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from ingester.config import Settings
from ingester.errors import DownloadError, HTTPError, NotFound, ProviderError
from ingester.http.checksums import verify_file
from ingester.http.clients import Clients
from ingester.http.session import Service
from ingester.http.transfer import download
from ingester.naming import OBJECT_STORE_SCHEMES
from ingester.providers.base import (
    Provider,
    expected_from_metadata,
    place_local,
    product_name,
    provider_error,
)
from ingester.scenes import Scene


def plain_service(settings: Settings, clients: Clients, name: str = "url") -> Service:
    """The session of `clients` for plain links (no token)."""
    key = (name, settings.http_timeout, settings.http_retries, settings.http_backoff)
    return clients.service(key, lambda: Service(name, "http://unused.invalid", timeout=settings.http_timeout,
                                               retries=settings.http_retries, backoff=settings.http_backoff))


def fetch_fsspec(provider: Provider, uri: str, dest: Path, scene: Scene) -> Path:
    """Copy an object-store file (s3://, gs://) to `dest` through `<dest>.part`, then verify it."""
    from ingester import storage

    part = Path(f"{dest}.part")
    options = storage.StorageOptions.of(provider.settings)
    try:
        if not storage.exists(uri, options):
            raise NotFound(f"{provider.name}: {uri} does not exist")
        storage.get_file(uri, str(part), options)
    except FileNotFoundError:
        raise NotFound(f"{provider.name}: {uri} does not exist") from None
    except PermissionError as exc:
        from ingester.errors import AuthError

        raise AuthError(f"{provider.name}: {uri}: access denied ({exc})") from None
    except (OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        from ingester.errors import Unavailable

        raise Unavailable(f"{provider.name}: {uri}: {type(exc).__name__}: {exc}") from None
    try:
        verified = verify_file(part, expected_from_metadata(scene.metadata))
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    verified.path = str(dest)
    provider.verified[str(dest)] = verified
    return dest


def target_name(scene_id: str, link: str) -> str:
    base = unquote(urlparse(link).path.rstrip("/").rsplit("/", 1)[-1]) if "://" in link else Path(link).name
    if base.lower().endswith(".zip"):
        return f"{scene_id}.zip"
    return base if base and base not in (".", "..") and "$" not in base else scene_id


class UrlProvider(Provider):
    name = "url"

    def may_have(self, scene: Scene) -> bool:
        return bool(str(scene.metadata.get("download_link") or "").strip()) \
            and scene.metadata.get("catalogue") != "oneatlas"

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        link = str(scene.metadata.get("download_link") or "").strip()
        if not link:
            raise NotFound("url: the scene has no metadata.download_link")
        if scene.metadata.get("catalogue") == "oneatlas":  # its links need the account's token
            raise NotFound("url: a OneAtlas link is fetched by the oneatlas provider")
        scheme = urlparse(link).scheme.lower() if "://" in link else "file"
        dest = workdir / target_name(name, link)
        if scheme == "file":
            path = Path(unquote(urlparse(link).path) if link.startswith("file://") else link).expanduser()
            if not path.exists():
                raise NotFound(f"url: {path} does not exist")
            target = place_local(path, workdir)
            if target.is_file():
                try:
                    self.verified[str(target)] = verify_file(target, expected_from_metadata(scene.metadata))
                except DownloadError:
                    target.unlink(missing_ok=True)
                    raise
            return target
        if scheme in ("http", "https"):
            try:
                verified = download(plain_service(self.settings, self.clients), link, str(dest), progress=self.progress,
                                    expected=expected_from_metadata(scene.metadata))
            except HTTPError as exc:
                raise provider_error("url", exc) from None
            self.verified[str(dest)] = verified
            return _zip_name(dest, name, self)
        if scheme in OBJECT_STORE_SCHEMES:
            return _zip_name(fetch_fsspec(self, link, dest, scene), name, self)
        raise ProviderError(f"url: unsupported link scheme {scheme!r} in metadata.download_link")


def _zip_name(path: Path, scene_id: str, provider: Provider) -> Path:
    """A downloaded zip always ends up as `<scene>.zip` whatever the link's name."""
    if path.suffix.lower() != ".zip" and path.is_file() and zipfile.is_zipfile(path):
        target = path.with_name(f"{scene_id}.zip")
        os.replace(path, target)
        verified = provider.verified.pop(str(path), None)
        if verified:
            verified.path = str(target)
            provider.verified[str(target)] = verified
        return target
    return path
