"""Object-store buckets (s3://, gs://): per-constellation URL patterns with `{KEY}` substitution.

`settings.bucket_patterns` (INGESTER_BUCKET_PATTERNS) holds `[constellation=]pattern` entries separated
by `;` or new lines (grammar: `providers.patterns`), tried in order, e.g.
`sentinel2=gs://gcp-public-data-sentinel-2/tiles/{LATITUDE_BAND}/{GRID_SQUARE}/{GRANULE_ID}/{SCENE}.SAFE`.
With `*` or `?` wildcards the lexicographically last match (the newest processing) is taken. A `.zip`
is downloaded and verified; anything else is a folder prefix whose objects are copied (5 at a time)
into `<workdir>/<basename>/`. Requester-pays buckets: INGESTER_S3_REQUESTER_PAYS=true.
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ingester import storage
from ingester.config import Settings
from ingester.errors import AuthError, NotFound, Unavailable
from ingester.naming import CONSTELLATIONS, OBJECT_STORE_SCHEMES, constellation_of, format_pattern
from ingester.providers.base import Provider, product_name
from ingester.providers.patterns import patterns_for
from ingester.providers.url import fetch_fsspec
from ingester.scenes import Scene

FOLDER_WORKERS = 5


BUCKET_SCHEMES = OBJECT_STORE_SCHEMES


def bucket_patterns(settings: Settings, constellation: str | None) -> list[str]:
    return patterns_for(settings.bucket_patterns, "INGESTER_BUCKET_PATTERNS", BUCKET_SCHEMES, constellation)


def scene_constellation(scene: Scene) -> str | None:
    tag = scene.tags.get("constellation", "").strip().lower().replace(" ", "")
    return CONSTELLATIONS.get(tag) or constellation_of(scene.source_id)


class BucketProvider(Provider):
    name = "bucket"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.bucket_patterns.strip())

    def __init__(self, settings: Settings, progress=None, clients=None):  # noqa: ANN001
        super().__init__(settings, progress, clients)
        self.storage = storage.StorageOptions.of(settings)  # endpoint, keys, requester-pays: INGESTER_S3_*

    def may_have(self, scene: Scene) -> bool:
        return bool(bucket_patterns(self.settings, scene_constellation(scene)))

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        constellation = scene_constellation(scene)
        patterns = bucket_patterns(self.settings, constellation)
        if not patterns:
            raise NotFound(f"bucket: no pattern for constellation {constellation or 'unknown'}")
        tried = []
        for pattern in patterns:
            uri = format_pattern(pattern, name)
            tried.append(uri)
            try:
                found = self._resolve(uri)
                if found is None:
                    continue
                if found.lower().endswith(".zip"):
                    try:
                        return fetch_fsspec(self, found, workdir / f"{name}.zip", scene)
                    except NotFound:
                        continue
                folder = self._copy_folder(found, workdir)
                if folder is not None:
                    return folder
            except PermissionError as exc:
                raise AuthError(f"bucket: {uri}: access denied ({exc})") from None
        raise NotFound(f"bucket: nothing at {', '.join(tried)}")

    def _resolve(self, uri: str) -> str | None:
        """The URI itself, or the last match of a wildcard pattern."""
        fs, path = storage.filesystem(uri, self.storage)
        protocol = uri.split("://", 1)[0]
        if any(c in path for c in "*?["):
            try:
                matches = sorted(fs.glob(path))
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise Unavailable(f"bucket: listing {uri}: {exc}") from None
            return f"{protocol}://{matches[-1]}" if matches else None
        return uri

    def _copy_folder(self, uri: str, workdir: Path) -> Path | None:
        """Copy every object under the prefix into `<workdir>/<basename>` (bounded pool, all or nothing)."""
        fs, path = storage.filesystem(uri, self.storage)
        path = path.rstrip("/")
        try:
            files = [f for f in fs.find(path) if f != path]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"bucket: listing {uri}: {exc}") from None
        if not files:
            return None
        base = storage.check_name("product folder", path.rsplit("/", 1)[-1])
        target = workdir / base
        tmp = workdir / f".{base}.part"
        shutil.rmtree(tmp, ignore_errors=True)

        stop = threading.Event()

        def copy(key: str) -> None:
            if stop.is_set():  # another object failed: the folder is refused anyway
                return
            rel = key[len(path) + 1:]
            if not rel or any(p in ("", "..") for p in rel.split("/")):
                raise Unavailable(f"bucket: refusing object name {key!r}")
            local = tmp / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(key, str(local))

        pool = ThreadPoolExecutor(FOLDER_WORKERS)
        try:
            for future in as_completed([pool.submit(copy, key) for key in files]):
                error = future.exception()
                if error is not None:  # first error wins: queued copies are cancelled, running ones skip
                    stop.set()
                    raise error
            os.replace(tmp, target)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"bucket: copying {uri}: {type(exc).__name__}: {exc}") from None
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            shutil.rmtree(tmp, ignore_errors=True)
        return target
