"""Where annotation files come from, without downloading the product (docs/bursts.md, "Annotation sources").

A source's `fetch(scene)` returns the selected annotation files `[(name, bytes)]`, or None when it
does not have the scene (a miss: the caller tries the next source). Failures raise.

- `CdseNodesSource`: the CDSE product's own files through OData `Nodes(...)` navigation.
- `PatternSource`: a payload `annotations_urls` pattern; its result is a local SAFE folder, a local
  zip, or a zip on http(s)://, s3://, gs:// read with ranged requests (the central directory and the
  selected members only).

Only one polarisation per swath is fetched (VV, else HH, else the first in name order).
"""

from __future__ import annotations

import io
import os
import re
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlparse

from ingester import storage
from ingester.config import ASF_DOMAINS, CDSE_DOMAINS, Settings, cdse_credentials
from ingester.errors import HTTPError, StorageError, TilingError
from ingester.http.clients import Clients
from ingester.http.session import Service, TokenHolder
from ingester.http.tokens import StaticToken
from ingester.naming import OBJECT_STORE_SCHEMES, format_pattern
from ingester.scenes import Scene

_POL_PREFERENCE = {"vv": 0, "hh": 1, "vh": 2, "hv": 3}
AnnotationFiles = list[tuple[str, bytes]]


class AnnotationSource(Protocol):
    name: str

    def fetch(self, scene: Scene) -> AnnotationFiles | None: ...

    def close(self) -> None: ...


def annotation_regex(scene_id: str) -> re.Pattern[str]:
    """The original's unanchored selection: `<SCENE>.SAFE/annotation/s1[^/]*xml` (no calibration,
    noise or RFI files, which live in sub-folders)."""
    return re.compile(re.escape(scene_id) + r"\.SAFE/annotation/s1[^/]*xml")


def select_annotations(paths: Iterable[str], scene_id: str | None = None) -> list[str]:
    """Product annotations among `paths`, one polarisation per swath, ordered by swath.

    With `scene_id`, paths must match the SAFE regex; without, they are bare file names (CDSE Nodes).
    """
    regex = annotation_regex(scene_id) if scene_id else re.compile(r"^s1[^/]*xml$")
    best: dict[str, tuple[int, str, str]] = {}
    for path in paths:
        if not regex.search(path):
            continue
        base = path.rsplit("/", 1)[-1]
        parts = base.lower().split("-")
        swath = parts[1] if len(parts) > 3 else base
        pol = parts[3] if len(parts) > 3 else ""
        rank = (_POL_PREFERENCE.get(pol, 9), base, path)
        if swath not in best or rank < best[swath]:
            best[swath] = rank
    return [best[s][2] for s in sorted(best)]


# --- CDSE Nodes --------------------------------------------------------------------------------

class CdseNodesSource:
    """`Products(<uuid>)/Nodes(<name>.SAFE)/Nodes(annotation)/Nodes` on the CDSE download service.

    Listing needs no authentication; each `$value` is fetched with a bearer token when credentials
    exist (settings or ~/.netrc), from the token manager of the command's `clients` (the one the CDSE
    downloads and the pre-flight check use: one login per command). A scene without a catalogue uuid,
    or a 404, is a miss.
    """

    name = "cdse-nodes"

    def __init__(self, settings: Settings, token: TokenHolder | None = None, clients: Clients | None = None):
        self._own = Clients() if clients is None else None  # closed with the source
        logins = clients if clients is not None else self._own
        if token is None and logins is not None:
            creds = cdse_credentials(settings)
            if creds and creds[0] and creds[1]:
                token = logins.token_manager(settings.cdse_token_url, creds[0], creds[1],
                                             timeout=settings.http_timeout)
        self.service = Service(
            "CDSE Nodes", settings.cdse_download_url, timeout=settings.http_timeout,
            retries=settings.http_retries, backoff=settings.http_backoff, token=token,
            max_concurrency=settings.cdse_max_downloads, trusted_domains=CDSE_DOMAINS,
        )

    def close(self) -> None:
        self.service.session.close()
        if self._own is not None:
            self._own.close()

    def fetch(self, scene: Scene) -> AnnotationFiles | None:
        uuid = str(scene.metadata.get("uuid") or scene.tags.get("uuid") or "")
        if not uuid:
            return None
        product, safe = quote(uuid, safe=""), quote(scene.source_id, safe="")  # ids never leave their key
        folder = f"Products({product})/Nodes({safe}.SAFE)/Nodes(annotation)/Nodes"
        response = self.service.request("GET", folder, ok_statuses=(404,))
        if response.status_code == 404:
            response.close()
            return None
        try:
            listing = response.json()
        except ValueError:
            raise HTTPError(f"CDSE Nodes: listing of {scene.source_id} is not JSON", response.status_code) from None
        result = listing.get("result") if isinstance(listing, dict) else None
        if not isinstance(result, list):
            raise HTTPError(f"CDSE Nodes: listing of {scene.source_id} has no 'result' list")
        names = [str(item.get("Name", "")) for item in result if isinstance(item, dict)]
        chosen = select_annotations(names)
        if not chosen:
            return None
        files = []
        for name in chosen:
            path = folder[: -len("/Nodes")] + f"/Nodes({quote(name, safe='')})/$value"
            answer = self.service.request("GET", path, auth=self.service.token is not None)
            files.append((name, answer.content))
        return files


# --- payload patterns --------------------------------------------------------------------------

class PatternSource:
    """One `annotations_urls` pattern, formatted with the product keys and `{AREA}`."""

    def __init__(self, pattern: str, area: str, settings: Settings):
        self.pattern = pattern
        self.name = pattern
        self.area = area
        self.settings = settings
        self.bytes_read = 0  # remote bytes fetched (http only), for tests and the benchmark
        self._services: dict[tuple[str, str], Service] = {}  # (host, token) → one session for all scenes
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the sessions opened for remote zips."""
        with self._lock:
            for service in self._services.values():
                service.session.close()
            self._services.clear()

    def location(self, scene: Scene) -> str:
        return format_pattern(self.pattern, scene.source_id, {"AREA": self.area})

    def fetch(self, scene: Scene) -> AnnotationFiles | None:
        where = self.location(scene)
        scheme = urlparse(where).scheme.lower()
        if scheme in ("http", "https"):
            return self._remote_zip(scene, where)
        if scheme in OBJECT_STORE_SCHEMES:
            return self._fsspec_zip(scene, where)
        if scheme == "file":
            where = unquote(urlparse(where).path)
        elif scheme and len(scheme) > 1:
            raise TilingError(f"annotation source {self.pattern!r}: unsupported scheme {scheme}://")
        path = Path(where)
        if path.is_dir():
            return _from_folder(path, scene.source_id)
        if path.is_file():
            with open(path, "rb") as fh:
                return _from_zip(fh, scene.source_id, str(path))
        return None

    def _remote_zip(self, scene: Scene, url: str) -> AnnotationFiles | None:
        """A zip over http(s) read with Range requests. The ASF datapool gets the Earthdata bearer
        token (settings.asf_token), sent to ASF and Earthdata hosts only, never to the pre-signed
        S3 URLs it redirects to."""
        service = self._service(url)
        auth = service.token is not None
        try:
            raw = HTTPRangeFile(service, url, auth=auth)
        except FileNotFoundError:
            return None
        try:
            with io.BufferedReader(raw, buffer_size=64 * 1024) as fh:
                return _from_zip(fh, scene.source_id, url)
        finally:
            self.bytes_read += raw.bytes_read

    def _service(self, url: str) -> Service:
        """One session per (scheme, host, token) for the whole run (scenes are fetched concurrently)."""
        parsed = urlparse(url)
        host = parsed.hostname or ""
        token = ""
        if self.settings.asf_token and host == urlparse(self.settings.asf_url).hostname:
            token = self.settings.asf_token
        key = (f"{parsed.scheme}://{parsed.netloc}", token)
        with self._lock:
            service = self._services.get(key)
            if service is None:
                service = Service("annotations", key[0], timeout=self.settings.http_timeout,
                                  token=StaticToken(token) if token else None,  # type: ignore[arg-type]
                                  retries=self.settings.http_retries, backoff=self.settings.http_backoff,
                                  trusted_hosts=("urs.earthdata.nasa.gov",) if token else (),
                                  trusted_domains=ASF_DOMAINS if token else ())
                self._services[key] = service
            return service

    def _fsspec_zip(self, scene: Scene, url: str) -> AnnotationFiles | None:
        """A zip on s3:// or gs:// through the storage's file systems (same endpoint, keys and
        requester-pays options as the storage: INGESTER_S3_*)."""
        try:
            fs, path = storage.filesystem(url, storage.StorageOptions.of(self.settings))
        except StorageError as exc:
            raise TilingError(f"annotation source {self.pattern!r}: {exc}") from None
        try:
            with fs.open(path, "rb", block_size=256 * 1024) as fh:
                return _from_zip(fh, scene.source_id, url)
        except FileNotFoundError:
            return None


def _from_folder(folder: Path, scene_id: str) -> AnnotationFiles | None:
    paths = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            paths.append(Path(root, name).as_posix())
    chosen = select_annotations(paths, scene_id)
    if not chosen:
        return None
    return [(p.rsplit("/", 1)[-1], Path(p).read_bytes()) for p in chosen]


MAX_ANNOTATION_BYTES = 256 * 1024**2  # real annotation files weigh a few MB


def _from_zip(fh, scene_id: str, origin: str) -> AnnotationFiles | None:
    try:
        archive = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        raise TilingError(f"{origin}: not a zip file ({exc})") from None
    with archive:
        chosen = select_annotations(archive.namelist(), scene_id)
        if not chosen:
            return None
        for member in chosen:  # read into memory: a zip bomb posing as an annotation must not be
            size = archive.getinfo(member).file_size
            if size > MAX_ANNOTATION_BYTES:
                raise TilingError(f"{origin}: member {member!r} unpacks to {size} bytes, far more than an "
                                  f"annotation file (at most {MAX_ANNOTATION_BYTES}); refused")
        return [(member.rsplit("/", 1)[-1], archive.read(member)) for member in chosen]


class HTTPRangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP `Range` requests (for zipfile on a remote zip).

    Raises FileNotFoundError on 404, and TilingError when the server ignores `Range` (it would
    send the whole file, which is exactly what this class exists to avoid).
    """

    def __init__(self, service: Service, url: str, auth: bool = False):
        super().__init__()
        self.service = service
        self.url = url
        self.auth = auth
        self.pos = 0
        self.bytes_read = 0
        response = service.request("GET", url, headers={"Range": "bytes=0-0"}, stream=True, ok_statuses=(404,),
                                   auth=auth)
        with response:
            if response.status_code == 404:
                raise FileNotFoundError(url)
            if response.status_code != 206:
                raise TilingError(f"{_safe(url)}: the server does not honour Range requests "
                                  f"(answered {response.status_code}); cannot read the zip partially")
            total = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
            if not total.isdigit():
                raise TilingError(f"{_safe(url)}: no size in Content-Range {response.headers.get('Content-Range')!r}")
            self.size = int(total)
            self.bytes_read += len(response.content)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:  # noqa: ANN001
        if self.pos >= self.size or len(buffer) == 0:
            return 0
        end = min(self.size, self.pos + len(buffer)) - 1
        response = self.service.request("GET", self.url, headers={"Range": f"bytes={self.pos}-{end}"},
                                        auth=self.auth)
        data = response.content
        if response.status_code != 206 and len(data) != end - self.pos + 1:
            raise TilingError(f"{_safe(self.url)}: Range request answered {response.status_code}")
        n = len(data)
        buffer[:n] = data
        self.pos += n
        self.bytes_read += n
        return n



def _safe(url: str) -> str:
    """A URL without its query string (which may hold a token)."""
    parsed = urlparse(url)
    return parsed._replace(query="", fragment="").geturl() if parsed.query else url

