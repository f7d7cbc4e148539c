"""Window mode of `stac-assets`: read only the AOI's window of each COG asset, not the whole file.

When it is used, per asset (anything else is fetched whole, as before, and the manifest says why):

- the scene carries the WGS84 bounds of the AOI inside its footprint (`metadata.aoi_bbox`, written by
  `ingester aoi` from the payload's AOI); a scene without them (an old store, a hand-made scenes file,
  `refresh`ed metadata) is fetched whole;
- the graph's config key `assets_window` is `auto` (the built-in graphs' default; the payload's
  `graph_config` `{"assets_window": "off"}` turns it off) and INGESTER_STAC_WINDOW_MAX_SHARE is > 0;
- the asset is a GeoTIFF (media type or file name), its server answers a one-byte `Range` request with
  206 and a `Content-Range` (a server that ignores ranges gets a whole-file download), GDAL reads it as
  a tiled, north-up GeoTIFF, and the window (AOI + INGESTER_STAC_WINDOW_MARGIN metres, widened to the
  COG's own tiles) is at most INGESTER_STAC_WINDOW_MAX_SHARE of the asset's pixels.

Authentication is the provider's: the same (Planetary Computer-signed) href over `/vsicurl/` with the
proxy `requests` would use, or `/vsis3/` with requester-pays, region us-west-2, the AWS credential
chain and INGESTER_STAC_S3_ENDPOINT_URL. A signed URL never reaches a message or a file.

Verification: a file checksum covers the whole file and cannot be checked on a partial read. What is
checked instead: the asset's size (the total of `Content-Range`, or the S3 object's size) equals
`file:size` when the item gives one; GDAL reads the GeoTIFF header and every tile of the window without
an error (its HTTP client retries 429/5xx); the extract has the window's shape and transform and the
asset's CRS, data type and nodata, and is a valid COG. The manifest records, per asset, the window, what
was verified and what was not.

Resume: a verified extract is kept in `<workdir>/downloads/stac-assets/<aoi>/<scene>.<file>.window.tif`
with a record beside it (`.window.json`, written last: what says "verified"), and a later attempt of
the scene reuses it when the record names the same asset (href, size, checksum), a request whose AOI
bounds and margin contain the new ones, and the extract's BLAKE3 digest still matches. Kept extracts
are deleted once the scene's product is complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ingester.errors import AuthError, DownloadError, HTTPError, NotFound, ProviderError, Unavailable
from ingester.http.checksums import digest_file
from ingester.providers.base import provider_error, resume_part
from ingester.providers.cog_window import (
    GDAL_RETRY_CODES,
    Window,
    check_extract,
    credential_session,
    extract,
    gdal_options,
    plan_window,
    redact_gdal_logs,
    valid_bbox,
)
from ingester.scenes import Scene

CONFIG_KEY = "assets_window"  # graph config: "auto" (window reads when they pay) or "off"
MODES = ("auto", "off")
_QUERY = re.compile(r"\?[^\s'\"]*")
_HTTP_CODE = re.compile(r"HTTP (?:response )?code:? ?(\d{3})", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class WindowRequest:
    """What to read of each asset: the AOI's WGS84 bounds in the scene, a margin, the share limit."""

    bbox: tuple[float, float, float, float]
    margin: float
    max_share: float

    def within(self, bbox: Any, margin: Any) -> bool:
        """Whether an extract made for (`bbox`, `margin`) covers this request."""
        other = valid_bbox(bbox)
        if other is None or not isinstance(margin, int | float):
            return False
        w, s, e, n = self.bbox
        return other[0] <= w and other[1] <= s and other[2] >= e and other[3] >= n and margin >= self.margin


def window_request(settings: Any, config: dict[str, str], scene: Scene) -> tuple[WindowRequest | None, str]:
    """(the request, "") when the scene's assets may be read as windows, else (None, why not)."""
    mode = (config.get(CONFIG_KEY) or "auto").strip().lower()
    if mode not in MODES:
        raise ProviderError(f"stac-assets: graph_config {CONFIG_KEY}: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return None, f"graph_config {CONFIG_KEY} is off"
    if settings.stac_window_max_share <= 0:
        return None, "INGESTER_STAC_WINDOW_MAX_SHARE is 0"
    bbox = valid_bbox(scene.metadata.get("aoi_bbox"))
    if bbox is None:
        return None, "the scene has no AOI bounds (metadata.aoi_bbox)"
    return WindowRequest(bbox, float(settings.stac_window_margin), float(settings.stac_window_max_share)), ""


def is_geotiff(asset: dict[str, Any]) -> bool:
    kind = str(asset.get("type") or "").lower()
    path = urlparse(str(asset.get("href") or "")).path.lower()
    return "tiff" in kind or path.endswith((".tif", ".tiff"))


def redact(text: str) -> str:
    return _QUERY.sub("?…", text)


class WindowReader:
    """Reads the windows of one scene's assets for the `stac-assets` provider (see the module docstring)."""

    def __init__(self, provider: Any, scene: Scene, name: str, request: WindowRequest):
        self.provider = provider
        self.settings = provider.settings
        self.scene = scene
        self.name = name
        self.request = request

    # --- the kept extract of an asset --------------------------------------------------------------
    def _kept(self, file_name: str) -> tuple[Path, Path]:
        base = resume_part(self.settings, self.provider.name, self.scene, f"{self.name}.{file_name}")[:-len(".part")]
        return Path(f"{base}.window.tif"), Path(f"{base}.window.json")

    def _reusable(self, kept: Path, record_path: Path, asset: dict[str, Any], href: str) -> dict[str, Any] | None:
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        request = record.get("request") or {}
        same_asset = (record.get("href") == redact(href) and record.get("asset_size") == asset.get("size")
                      and record.get("asset_checksum") == asset.get("checksum"))
        try:
            intact = (kept.is_file() and kept.stat().st_size == record.get("size")
                      and digest_file(kept, "blake3") == record.get("blake3"))
        except OSError:
            intact = False
        if same_asset and intact and self.request.within(request.get("bbox"), request.get("margin")):
            return record
        return None

    # --- one asset ---------------------------------------------------------------------------------
    def fetch(self, key: str, asset: dict[str, Any], href: str, dest: Path) -> dict[str, Any] | str:
        """Read the asset's window into `dest`; returns the manifest's window record, or the reason
        why the asset has to be fetched whole. Raises the provider errors of a failed read."""
        if not is_geotiff(asset):
            return "not a GeoTIFF"
        what = f"asset {key} of {self.name}"
        kept, record_path = self._kept(dest.name)
        record = self._reusable(kept, record_path, asset, href)
        if record is not None:
            _place(kept, dest)
            return {**record["window"], "verified": record["verified"], "not_verified": record["not_verified"],
                    "blake3": record["blake3"], "reused": "a verified extract of an earlier attempt"}
        kept.unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)
        scheme = urlparse(href).scheme.lower()
        size = self._remote_size(href, scheme, what)
        if isinstance(size, str):
            return size
        total, how = size
        published = asset.get("size") if isinstance(asset.get("size"), int) else None
        if published is not None and published != total:
            raise DownloadError(f"stac-assets: {what}: the server has {total} bytes, the item's file:size says "
                                f"{published}: not the file the catalogue describes")
        outcome = self._read(href, scheme, what, kept)
        if isinstance(outcome, str):
            return outcome
        window, digest = outcome
        verified = [
            f"asset size {total} bytes ({how})" + (" = file:size" if published is not None else
                                                    "; the item gives no file:size"),
            "GeoTIFF header and every tile of the window read by GDAL without an error "
            f"(HTTP {GDAL_RETRY_CODES} retried up to {self.settings.http_retries} times)",
            f"extract: shape {window.width}×{window.height} at column {window.col_off}, row {window.row_off} of "
            f"{window.asset_width}×{window.asset_height} (whole {window.block[0]}×{window.block[1]} tiles), "
            "transform, CRS, data type and nodata of the asset; a valid COG",
        ]
        not_verified = ("file:checksum: it covers the whole file, which a window read does not read"
                        if asset.get("checksum") else "no file:checksum published (none could be checked)")
        record = {"href": redact(href), "asset_size": asset.get("size"), "asset_checksum": asset.get("checksum"),
                  "request": {"bbox": list(self.request.bbox), "margin": self.request.margin},
                  "window": window.as_dict(), "size": kept.stat().st_size, "blake3": digest, "verified": verified,
                  "not_verified": not_verified}
        tmp = record_path.with_name(f".{record_path.name}.part")
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, record_path)  # last: the record is what says "verified"
        _place(kept, dest)
        return {**window.as_dict(), "verified": verified, "not_verified": not_verified, "blake3": digest}

    def _remote_size(self, href: str, scheme: str, what: str) -> tuple[int, str] | str:
        """(size, how it was learnt) of the remote file, or why it cannot be read as a window."""
        if scheme in ("http", "https"):
            from ingester.providers.url import plain_service

            service = plain_service(self.settings, self.provider.clients, self.provider.name)
            try:
                response = service.request("GET", href, stream=True, headers={"Range": "bytes=0-0"},
                                           ok_statuses=(416,))
            except HTTPError as exc:
                error = provider_error(self.provider.name, exc)
                raise type(error)(redact(str(error)) + f" ({what})") from None
            try:
                status = response.status_code
                content_range = response.headers.get("Content-Range", "")
            finally:
                response.close()
            if status != 206:
                return f"the server answered {status} to a Range request (no byte ranges)"
            match = re.fullmatch(r"bytes\s+0-0/(\d+)", content_range.strip())
            if not match:
                return f"the server's Content-Range {content_range!r} does not give the file size"
            return int(match.group(1)), "Content-Range of a 1-byte Range request"
        if scheme == "s3":
            from ingester.providers.s3data import filesystem, require_credentials

            require_credentials(self.provider.name, href)
            try:
                info = filesystem(self.settings).info(href[len("s3://"):])
            except FileNotFoundError:
                raise NotFound(f"stac-assets: {href} does not exist ({what})") from None
            except PermissionError as exc:
                raise AuthError(f"stac-assets: {href}: access denied ({exc}); requester-pays buckets need AWS "
                                "credentials allowed to pay for the transfer") from None
            except OSError as exc:
                raise Unavailable(f"stac-assets: {href}: {type(exc).__name__}: {exc}") from None
            return int(info.get("size") or 0), "size of the S3 object (HEAD, requester-pays)"
        return f"no window reads over {scheme or 'no scheme'!r}"

    def _read(self, href: str, scheme: str, what: str, kept: Path) -> tuple[Window, str] | str:
        """Plan and extract the window into `kept` (checked); (window, BLAKE3 of the extract) or why not."""
        import rasterio
        from rasterio.errors import RasterioError
        from rasterio.session import DummySession

        redact_gdal_logs()
        session: Any
        if scheme == "s3":
            path = "/vsis3/" + href[len("s3://"):]
            session = credential_session(self._s3_options())
            options = gdal_options(self.settings)
        else:
            path = "/vsicurl/" + href
            session = DummySession()
            options = gdal_options(self.settings, href)
        try:
            with rasterio.Env(session=session, **options), rasterio.open(path) as src:
                window, why = plan_window(src, self.request.bbox, self.request.margin, self.request.max_share)
                if window is None:
                    return why
                profile = {"crs": src.crs, "count": src.count, "dtype": src.dtypes[0], "nodata": src.nodata}
                kept.parent.mkdir(parents=True, exist_ok=True)
                extract(src, window, kept)
        except RasterioError as exc:
            kept.unlink(missing_ok=True)
            text = redact(str(exc))
            code = _HTTP_CODE.search(text)
            if code:
                error = provider_error(self.provider.name, HTTPError(f"reading the window of {what}: GDAL: {text}",
                                                                     int(code.group(1)), redact(href)))
                raise error from None
            if "not recognized as" in text or "not a supported file format" in text.lower():
                return f"GDAL cannot read it as a raster ({text[:160]})"
            raise Unavailable(f"stac-assets: reading the window of {what}: GDAL: {text[:300]}") from None
        try:
            check_extract(kept, window, profile)
        except DownloadError as exc:
            kept.unlink(missing_ok=True)
            raise DownloadError(f"stac-assets: {what}: {exc}") from None
        return window, digest_file(kept, "blake3")

    def _s3_options(self) -> dict[str, str]:
        """GDAL's /vsis3/ options: requester-pays, region us-west-2, the credentials of the AWS chain as
        botocore resolves them for the provider's own S3 reads (environment, AWS_PROFILE and ~/.aws, an
        instance role), INGESTER_STAC_S3_ENDPOINT_URL. No boto3 needed (not a dependency)."""
        import botocore.session

        from ingester.providers.s3data import REGION

        options = {"AWS_REGION": REGION, "AWS_REQUEST_PAYER": "requester"}
        credentials = botocore.session.get_session().get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(AWS_ACCESS_KEY_ID=frozen.access_key, AWS_SECRET_ACCESS_KEY=frozen.secret_key)
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
        endpoint = self.settings.stac_s3_endpoint_url
        if endpoint:
            parsed = urlparse(endpoint)
            options.update(AWS_S3_ENDPOINT=parsed.netloc, AWS_HTTPS="NO" if parsed.scheme == "http" else "YES",
                           AWS_VIRTUAL_HOSTING="FALSE")
        return options


def forget_kept(provider: Any, scene: Scene, name: str) -> None:
    """Delete every kept extract of the scene in its AOI (its product is complete; extracts of an
    earlier attempt that this one did not need go too)."""
    folder = Path(resume_part(provider.settings, provider.name, scene, f"{name}.x")).parent
    for path in folder.glob(f"{name}.*.window.*"):
        path.unlink(missing_ok=True)


def _place(kept: Path, dest: Path) -> None:
    """The kept extract into the product folder (a hard link when the file system allows it)."""
    dest.unlink(missing_ok=True)
    try:
        os.link(kept, dest)
    except OSError:
        shutil.copyfile(kept, dest)


__all__ = ["CONFIG_KEY", "WindowReader", "WindowRequest", "forget_kept", "is_geotiff", "window_request"]
