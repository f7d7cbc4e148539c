"""What an AOI keeps from the payload it was ingested with (`aoi.settings`), and its storage, which is
fixed when the AOI is created (docs/files.md, "Storage locations")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingester.config import Settings
from ingester.errors import InputError
from ingester.storage import local_path, resolve_storage_uri

if TYPE_CHECKING:  # the payload model (shapely) loads only when an AOI is ingested
    from ingester.payload import Payload


def aoi_settings(payload: Payload, instances: dict[str, str], storage: str = "") -> dict[str, Any]:
    """What a later `ingester run AOI` needs from the payload (stored with the AOI); `storage` is the
    resolved storage the AOI was given at creation (payload storage_uri, else INGESTER_STORAGE_URI)."""
    from ingester.geometry import to_wkt

    return {
        "payload_path": os.path.abspath(payload.path) if payload.path and not payload.path.startswith("<") else "",
        "retry_count": payload.retry_count,
        "storage_uri": payload.storage_uri,
        "storage": storage,
        "graph_config": payload.graph_config,
        "layers": {k: [v.variable, v.instance] for k, v in payload.layers.items()},
        "instances": instances,
        "record_tags": payload.record_tags,
        "aoi_wkt": to_wkt(payload.aoi),  # the AOI outline of `ingester map|timeline AOI`
    }


STORAGE_SETTING = "INGESTER_STORAGE_URI (or ingester.toml's storage_uri, default outputs/storage)"


def storage_key(uri: str) -> str:
    """A storage URI in one spelling: `file://` and plain paths as normalised paths, others without a
    trailing slash (`A/`, `./A` and `file:///…/A` are one storage)."""
    if "://" not in uri or uri.lower().startswith("file://"):
        return os.path.normpath(os.path.abspath(os.path.expanduser(local_path(uri))))
    return uri.rstrip("/")


def storage_given(settings: Settings) -> bool:
    """Whether INGESTER_STORAGE_URI (or ingester.toml's storage_uri) names a storage: its default does
    not, so that an existing AOI keeps the storage it was created with when the setting is unset."""
    return settings.storage_uri != Settings.__dataclass_fields__["storage_uri"].default


def effective_storage(payload_storage_uri: str, settings: Settings) -> tuple[str, str]:
    """(the storage an AOI of this payload gets, where that comes from)."""
    uri = resolve_storage_uri("", payload_storage_uri, settings)
    return uri, ("the payload's storage_uri" if (payload_storage_uri or "").strip() else STORAGE_SETTING)


def aoi_storage(aoi_settings_json: dict[str, Any], settings: Settings) -> str:
    """The AOI's storage as fixed at creation; an AOI made before it was recorded: its payload's
    storage_uri, else the current settings (recorded at its next `ingester aoi`)."""
    return aoi_settings_json.get("storage") or resolve_storage_uri("", aoi_settings_json.get("storage_uri") or "",
                                                                   settings)


def check_run_storage(aoi: str, aoi_settings_json: dict[str, Any], settings: Settings) -> str:
    """The AOI's storage for a run; InputError (exit 2) when the settings now point elsewhere: a run
    would otherwise put part of the AOI's files in another storage."""
    fixed = aoi_settings_json.get("storage")
    if not fixed:
        return aoi_storage(aoi_settings_json, settings)
    if not (aoi_settings_json.get("storage_uri") or "").strip() and not storage_given(settings):
        return fixed  # nothing asks for another storage: the AOI's own
    now, origin = effective_storage(aoi_settings_json.get("storage_uri") or "", settings)
    if storage_key(now) != storage_key(fixed):
        raise InputError(f"AOI {aoi!r} keeps its files in {fixed}, but {origin} now says {now}: an AOI's storage "
                         f"is fixed when it is created (set it back to {fixed}, or unset it: the AOI then uses "
                         "its own)")
    return fixed


def graph_dirs(aoi_settings_json: dict[str, Any]) -> tuple[str, ...]:
    path = aoi_settings_json.get("payload_path") or ""
    return (str(Path(path).parent),) if path else ()
