"""Settings: command-line option > INGESTER_* environment > ingester.toml > defaults.

Every field `foo_bar` of `Settings` is read from the environment variable `INGESTER_FOO_BAR` and from
the key `foo_bar` of `ingester.toml` (looked up in the current directory, or the file named by
`INGESTER_CONFIG`). Nothing is read at import time. Credentials may also come from `~/.netrc`
(`netrc_credentials`). Secrets are never printed: `Settings.redacted()` is what may be shown.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ingester.distance import DEFAULT_BUFFER, parse_buffer
from ingester.errors import ConfigError

# Domains whose hosts (catalogue., zipper., download., identity.) may receive the CDSE bearer token.
CDSE_DOMAINS = ("dataspace.copernicus.eu",)
# Domains whose hosts (datapool., sentinel1. — the datapool's CNAME) may receive the Earthdata token.
ASF_DOMAINS = ("asf.alaska.edu",)
# Domains whose hosts (search., data., access.foundation.api., authenticate.foundation.api.) may receive
# the OneAtlas bearer token.
ONEATLAS_DOMAINS = ("oneatlas.airbus.com",)

DEFAULT_PROVIDERS = "local,url,cdse"


# Settings read under an old name when the new one is not given: old name → (new name, old value → new value).
def _degrees(value: Any) -> str:
    number = float(value)
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise ValueError(value)
    return f"{number:g}deg"


LEGACY_SETTINGS = {"aoi_buffer_degrees": ("aoi_buffer", _degrees)}  # INGESTER_AOI_BUFFER_DEGREES=0.1: 0.1deg

SECRET_FIELDS = frozenset({"cdse_password", "asf_token", "ftp_password", "s3_secret_access_key", "oneatlas_api_key"})


@dataclasses.dataclass(frozen=True)
class Settings:
    # Copernicus Data Space Ecosystem
    cdse_catalogue_url: str = "https://catalogue.dataspace.copernicus.eu/odata/v1"
    cdse_download_url: str = "https://zipper.dataspace.copernicus.eu/odata/v1"
    cdse_token_url: str = (
        "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
    )
    cdse_username: str = ""
    cdse_password: str = dataclasses.field(default="", repr=False)
    cdse_max_downloads: int = 4
    cdse_page_size: int = 1000  # OData $top per request (the catalogue allows 1 … 1000)
    cdse_max_skip: int = 10000  # the catalogue's $skip ceiling; past it the search is split by time window
    cdse_search_concurrency: int = 4  # catalogue requests at once (the parts of a MultiPolygon AOI); CDSE quota: 4
    # ASF datapool (Earthdata bearer token)
    asf_url: str = "https://datapool.asf.alaska.edu"
    asf_token: str = dataclasses.field(default="", repr=False)
    # Airbus OneAtlas (Pléiades, SPOT): API key → bearer token; search, prices, orders, delivered products
    oneatlas_api_key: str = dataclasses.field(default="", repr=False)
    oneatlas_auth_url: str = (
        "https://authenticate.foundation.api.oneatlas.airbus.com/auth/realms/IDP/protocol/openid-connect/token"
    )
    oneatlas_search_url: str = "https://search.foundation.api.oneatlas.airbus.com/api/v2/opensearch"
    oneatlas_order_url: str = "https://data.api.oneatlas.airbus.com"  # /api/v1/me, /prices, /orders
    oneatlas_min_area: float = 100000.0  # m²: footprint ∩ AOI smaller than this is dropped (orders need 0.1 km²)
    oneatlas_order_recheck: float = 900.0  # seconds before an order being processed is checked again
    # STAC APIs: Landsat 8/9 on the USGS STAC server, named catalogues for `scene_type.catalogue`
    landsat_stac_url: str = "https://landsatlook.usgs.gov/stac-server"
    stac_catalogues: str = (
        "earth-search=https://earth-search.aws.element84.com/v1;"
        "planetary-computer=https://planetarycomputer.microsoft.com/api/stac/v1"
    )  # "name=URL;…": names a payload may give as `scene_type.catalogue`
    stac_page_size: int = 250  # items per STAC search page (USGS answers errors above ~500)
    stac_s3_endpoint_url: str = ""  # the usgs-landsat bucket's S3 endpoint (empty: AWS, region us-west-2)
    pc_sas_url: str = ""  # Planetary Computer SAS token API (empty: the planetary-computer package's default)
    stac_window_max_share: float = 0.5  # stac-assets reads only the AOI's window of a COG asset up to this share of
    # its pixels, the whole asset above it (0: always whole assets)
    stac_window_margin: float = 100.0  # metres added around the AOI before the window is snapped to the COG's tiles
    # Other providers
    local_path: str = ""
    providers: str = DEFAULT_PROVIDERS  # empty: the default
    bucket_patterns: str = ""  # "sentinel2=s3://bucket/{SCENE}.zip;sentinel1=gs://…"
    ftp_patterns: str = ""
    ftp_user: str = ""
    ftp_password: str = dataclasses.field(default="", repr=False)
    s3_endpoint_url: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = dataclasses.field(default="", repr=False)
    s3_requester_pays: bool = False
    # Local paths
    db: str = "outputs/ingester.db"
    storage_uri: str = "outputs/storage"
    workdir: str = "outputs/work"
    # HTTP
    http_timeout: float = 60.0
    http_retries: int = 5
    http_backoff: float = 1.0
    # Runs
    workers: int = 0  # 0: the CPU count
    max_workers: int = 32  # refuse more (--workers 100000 would fork until memory runs out)
    lease_seconds: int = 300
    scene_worker: str = "ingester.providers.worker:run_scene_job"  # import path of the scene worker
    tile_worker: str = "ingester.graph.worker:run_tile_job"  # import path of the tile worker
    executor: str = "local"  # where jobs run: local (a process pool) or dask (a Dask cluster)
    dask_scheduler: str = ""  # the Dask scheduler's address (tcp://host:8786); empty: a LocalCluster of --workers
    shared_storage: bool = False  # a local storage path that every Dask worker sees too (a network file system)
    retry_backoff: float = 30.0  # seconds before an automatic re-run; doubles per attempt
    max_temporary_retries: int = 5  # temporary failures re-queued before counting as an error
    max_wait: float = 60.0  # seconds a run waits for a backed-off or deferred job before ending (exit 5)
    defer_deadline: float = 7 * 86400.0  # seconds a job may stay deferred (from its first deferral)
    offline_recheck: float = 3600.0  # seconds before the catalogue is asked again about an offline product
    annotation_concurrency: int = 10
    aoi_buffer: str = DEFAULT_BUFFER  # around the AOI for the burst test: metres (5000, 5km) or degrees (0.05deg)
    annotation_sources: str = "cdse,urls"  # order of S1 annotation sources: CDSE Nodes, payload annotations_urls
    # Processing graphs
    step_timeout: float = 21600.0  # seconds per graph step (a graph's config `step_timeout` overrides it)
    snap_gpt: str = ""  # SNAP's gpt; empty: $SNAPPATH, then `gpt` on PATH, then /usr/local/snap/bin/gpt
    docker: str = "docker"  # the docker client used by docker steps
    # Unpacking products (zip bombs): at most this many bytes, and (past 64 MiB) this many times the zip
    unpack_max_bytes: int = 64 * 1024**3
    unpack_max_ratio: float = 100.0

    def __post_init__(self) -> None:
        """Reject values that would break a run in odd ways later (a lock that is always stale, …)."""
        if not self.providers.strip():  # INGESTER_PROVIDERS= (set but empty) means the default list
            object.__setattr__(self, "providers", DEFAULT_PROVIDERS)
        if not self.aoi_buffer.strip():  # INGESTER_AOI_BUFFER= likewise
            object.__setattr__(self, "aoi_buffer", DEFAULT_BUFFER)
        positive = ("http_timeout", "lease_seconds", "cdse_page_size", "annotation_concurrency", "stac_page_size",
                    "step_timeout", "max_workers", "cdse_search_concurrency", "offline_recheck", "unpack_max_bytes",
                    "unpack_max_ratio", "oneatlas_order_recheck")
        not_negative = ("http_retries", "http_backoff", "workers", "retry_backoff", "max_temporary_retries",
                        "cdse_max_skip", "cdse_max_downloads",  # 0: no cap
                        "max_wait", "defer_deadline", "oneatlas_min_area")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # nan passes every comparison below; infinity only where it means "no limit"
            if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and field.name != "max_wait")):
                raise ConfigError(f"INGESTER_{field.name.upper()}: must be a finite number, got {value!r}")
        for name in positive:
            value = getattr(self, name, 1)
            if not value > 0:
                raise ConfigError(f"INGESTER_{name.upper()}: must be > 0, got {value!r}")
        for name in not_negative:
            value = getattr(self, name, 0)
            if not value >= 0:  # NaN too
                raise ConfigError(f"INGESTER_{name.upper()}: must be ≥ 0, got {value!r}")
        for name in ("cdse_catalogue_url", "cdse_download_url", "cdse_token_url", "asf_url", "landsat_stac_url",
                     "stac_s3_endpoint_url", "pc_sas_url", "oneatlas_auth_url", "oneatlas_search_url",
                     "oneatlas_order_url"):
            value = getattr(self, name)
            if not value and name in ("stac_s3_endpoint_url", "pc_sas_url"):
                continue
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigError(f"INGESTER_{name.upper()}: {redact_url(value)!r} is not an http(s) URL")
        if self.executor not in ("local", "dask"):
            raise ConfigError(f"--executor / INGESTER_EXECUTOR: {self.executor!r} is not an executor; "
                              "expected local or dask")
        if self.workers > self.max_workers:
            raise ConfigError(f"--workers / INGESTER_WORKERS: {self.workers} worker processes is more than "
                              f"INGESTER_MAX_WORKERS ({self.max_workers}); each one is a Python process of its own "
                              "(raise INGESTER_MAX_WORKERS if this machine can really run that many)")
        stac_catalogues(self)  # a malformed INGESTER_STAC_CATALOGUES is refused here
        if self.stac_page_size > 10000:
            raise ConfigError(f"INGESTER_STAC_PAGE_SIZE: STAC API pages hold at most 10000 items, got "
                              f"{self.stac_page_size}")
        if not 0 <= self.stac_window_max_share <= 1:
            raise ConfigError(f"INGESTER_STAC_WINDOW_MAX_SHARE: a share of an asset's pixels between 0 (window reads "
                              f"off) and 1, got {self.stac_window_max_share!r}")
        if not 0 <= self.stac_window_margin < float("inf"):
            raise ConfigError(f"INGESTER_STAC_WINDOW_MARGIN: metres around the AOI, a finite number ≥ 0, got "
                              f"{self.stac_window_margin!r}")
        try:
            parse_buffer(self.aoi_buffer)
        except ValueError as exc:
            raise ConfigError(f"INGESTER_AOI_BUFFER: {exc}") from None
        if self.cdse_page_size > 1000:
            raise ConfigError(f"INGESTER_CDSE_PAGE_SIZE: the CDSE catalogue serves at most 1000 rows a page, "
                              f"got {self.cdse_page_size}")

    def worker_count(self) -> int:
        """The pool size a run asks for: `workers`, else the CPU count, at most `max_workers` (a run also
        starts no more than it has jobs)."""
        return min(self.workers or os.cpu_count() or 1, self.max_workers)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets replaced, safe to print or log."""
        out = dataclasses.asdict(self)
        for key in SECRET_FIELDS:
            if out.get(key):
                out[key] = "***"
        return out


def stac_catalogues(settings: Settings) -> dict[str, str]:
    """The named STAC catalogues of INGESTER_STAC_CATALOGUES (`name=URL;name=URL`), name → URL."""
    out: dict[str, str] = {}
    for entry in settings.stac_catalogues.replace("\n", ";").split(";"):
        if not entry.strip():
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip().lower(), url.strip()
        parsed = urlparse(url)
        if not sep or not name or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"INGESTER_STAC_CATALOGUES: {entry.strip()!r} must be name=https://… "
                              "(entries separated by ';')")
        out[name] = url.rstrip("/")
    return out


def redact_url(url: str) -> str:
    """A URL without the password of its user-info part (http://bob:***@host/…)."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def _coerce(name: str, kind: Any, raw: Any, origin: str) -> Any:
    """Convert a raw env/toml value to the field's type, with a message naming where it came from (the
    variable, or the file and its key) and what was expected, never Python's words."""
    where = origin if origin.startswith("INGESTER_") else f"{origin}: {name}"
    shown = repr(raw) if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else repr(raw)
    if kind in (bool, "bool"):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: {shown} is not true or false")
    if kind in (int, "int"):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d+\s*", raw):
            return int(raw)
        raise ConfigError(f"{where}: {shown} is not a whole number")
    if kind in (float, "float"):
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {shown} is not a number")
    if isinstance(raw, dict | list):
        raise ConfigError(f"{where}: expected a text value, got {type(raw).__name__} {raw!r}")
    return str(raw)


def private_file_problem(path: str | Path) -> str | None:
    """Why a file holding passwords is not private (None: it is): the rule of Python's netrc reader
    (and ftp's, curl's), also applied to ingester.toml: no permission for group or others, owned by
    the user running the tool."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = st.st_mode & 0o777
    if mode & 0o077:
        return f"mode {mode:o}: readable by other users"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return "owned by another user"
    return None


def refused_private_file(path: str | Path, problem: str, holds: str = "passwords") -> ConfigError:
    return ConfigError(f"{path}: refused ({problem}): a file holding {holds} must be private; run "
                       f"`chmod 600 {path}`")


def _toml_values(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        env_path = os.environ.get("INGESTER_CONFIG")
        path = Path(env_path) if env_path else Path("ingester.toml")
        if not path.exists():
            if env_path:
                raise ConfigError(f"INGESTER_CONFIG: {env_path}: file not found")
            return {}, str(path)
    import tomllib  # here: a process that is handed its settings (a worker) never reads a file

    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    secrets = sorted(k for k in SECRET_FIELDS if values.get(k) not in (None, ""))
    problem = private_file_problem(path) if secrets else None
    if problem:  # the same rule as ~/.netrc: a password others may read is never used
        raise refused_private_file(path, problem, f"secrets ({', '.join(secrets)})")
    return values, str(path)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
) -> Settings:
    """Build the settings; `overrides` are command-line values (None values are ignored)."""
    env = os.environ if env is None else env
    toml, toml_origin = _toml_values(toml_path)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    unknown = sorted(set(toml) - set(fields) - set(LEGACY_SETTINGS))
    if unknown:
        raise ConfigError(
            f"{toml_origin}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = _legacy_values(env, toml, toml_origin)
    for name, field in fields.items():
        if name in toml:
            values[name] = _coerce(name, field.type, toml[name], toml_origin)
        env_name = f"INGESTER_{name.upper()}"
        if env_name in env:
            values[name] = _coerce(name, field.type, env[env_name], env_name)
        if overrides and overrides.get(name) is not None:
            values[name] = overrides[name]
    return Settings(**values)


def _legacy_values(env: Mapping[str, str], toml: Mapping[str, Any], toml_origin: str) -> dict[str, Any]:
    """Settings given under an old name (LEGACY_SETTINGS), converted; the new name, when given, wins
    (it is read after these)."""
    out: dict[str, Any] = {}
    for old, (new, convert) in LEGACY_SETTINGS.items():
        variable = f"INGESTER_{old.upper()}"
        for origin, source, name in ((toml_origin, toml, old), (variable, env, variable)):
            if name in source:
                try:
                    out[new] = convert(source[name])
                except (TypeError, ValueError):
                    raise ConfigError(f"{origin}: {old}: expected a number ≥ 0, got {source[name]!r}") from None
    return out


def _legacy_origin(name: str, env: Mapping[str, str], toml: Mapping[str, Any], toml_file: str) -> tuple[str, str]:
    """Where a setting given under its old name came from: (source, origin), or ("", "")."""
    for old, (new, _convert) in LEGACY_SETTINGS.items():
        if new == name and f"INGESTER_{old.upper()}" in env:
            return "environment", f"INGESTER_{old.upper()}"
        if new == name and old in toml:
            return "ingester.toml", f"{toml_file} ({old})"
    return "", ""


def netrc_credentials(url: str, path: str | None = None) -> tuple[str, str] | None:
    """(login, password) of the ~/.netrc entry for the URL's host, or None when there is no file or no
    entry. A file that cannot be used is a ConfigError that says why: Python's netrc reader (like ftp
    and curl) refuses a ~/.netrc holding passwords that other users may read (mode 644, …)."""
    import netrc

    host = urlparse(url).hostname or url
    try:
        entry = netrc.netrc(path).authenticators(host)
    except FileNotFoundError:
        return None
    except netrc.NetrcParseError as exc:
        where = path or exc.filename or os.path.expanduser("~/.netrc")
        if "permissive" in str(exc) or "owner" in str(exc):
            problem = private_file_problem(where) or "readable by other users or not owned by you"
            raise refused_private_file(where, problem) from None
        raise ConfigError(f"{where}: cannot be read as a netrc file: {exc.msg} (line {exc.lineno})") from None
    except OSError as exc:
        raise ConfigError(f"{path or '~/.netrc'}: {exc.strerror or exc}") from None
    if not entry:
        return None
    login, _account, password = entry
    return (login or "", password or "")


def oneatlas_api_key(settings: Settings) -> str:
    """The OneAtlas API key from the settings, else the password of the ~/.netrc entry for the
    authentication host (its login is free: OneAtlas names the key's user `APIKEY`); "" without one."""
    if settings.oneatlas_api_key:
        return settings.oneatlas_api_key
    entry = netrc_credentials(settings.oneatlas_auth_url)
    return entry[1] if entry else ""


def cdse_credentials(settings: Settings) -> tuple[str, str] | None:
    """CDSE user name and password from the settings, else from ~/.netrc for the token host."""
    if settings.cdse_username and settings.cdse_password:
        return settings.cdse_username, settings.cdse_password
    return netrc_credentials(settings.cdse_token_url)
