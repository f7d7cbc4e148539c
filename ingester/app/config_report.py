"""`ingester config`: every setting with its effective value and where it comes from (the application
layer of the command: it checks the providers' settings as `aoi` does, which `ingester.config`, imported
by the providers, must not)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ingester.config import (
    SECRET_FIELDS,
    Settings,
    _legacy_origin,
    _toml_values,
    load_settings,
    netrc_credentials,
    redact_url,
)

OPTION_NAMES = {"db": "--db", "workers": "--workers", "scene_worker": "--scene-worker",
                "tile_worker": "--tile-worker"}  # settings a command-line option may set


def explain_settings(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                     toml_path: Path | None = None) -> list[dict[str, Any]]:
    """Every setting with its effective value and where it comes from, safe to print: `source` is
    option, environment, ingester.toml, netrc (CDSE credentials, the OneAtlas API key) or default,
    `origin` names the option, variable or file. Effective values: `workers` 0 is shown as the pool size
    a run uses (the CPU count, capped), `providers` as the whole download chain in order. Secrets are
    `***` (when set), URLs lose the password of their user-info part. Raises ConfigError like
    `load_settings` and the providers' settings check that `aoi` runs (same rules, same order)."""
    from ingester.providers import check_settings
    from ingester.providers.chain import provider_order

    env = os.environ if env is None else env
    settings = load_settings(overrides, env, toml_path)
    check_settings(settings)  # the checks `aoi` runs: unknown providers, malformed patterns, …
    toml, toml_origin = _toml_values(toml_path)
    toml_file = str(Path(toml_origin).resolve())
    credentials = None
    if not (settings.cdse_username and settings.cdse_password):
        credentials = netrc_credentials(settings.cdse_token_url)
    oneatlas_key = None if settings.oneatlas_api_key else netrc_credentials(settings.oneatlas_auth_url)
    out = []
    for field in dataclasses.fields(Settings):
        name, variable = field.name, f"INGESTER_{field.name.upper()}"
        value: Any = getattr(settings, name)
        if overrides and overrides.get(name) is not None:
            source, origin = "option", OPTION_NAMES.get(name, name)
        elif variable in env:
            source, origin = "environment", variable
        elif name in toml:
            source, origin = "ingester.toml", toml_file
        elif _legacy_origin(name, env, toml, toml_file)[0]:  # given under its old name
            source, origin = _legacy_origin(name, env, toml, toml_file)
        elif credentials and name in ("cdse_username", "cdse_password") and not value:
            value = credentials[0] if name == "cdse_username" else credentials[1]
            host = urlparse(settings.cdse_token_url).hostname or ""
            source, origin = "netrc", f"{Path.home() / '.netrc'} ({host})"
        elif oneatlas_key and name == "oneatlas_api_key" and not value:
            value = oneatlas_key[1]
            host = urlparse(settings.oneatlas_auth_url).hostname or ""
            source, origin = "netrc", f"{Path.home() / '.netrc'} ({host})"
        else:
            source, origin = "default", ""
        if name == "providers":  # the whole chain: the listed ones, then those that join by themselves
            value = ",".join(provider_order(settings))
        if name == "workers" and not value:  # 0: the CPU count, shown as what a run uses
            value = settings.worker_count()
            origin = (origin + " " if origin else "") + "(0: the CPU count)"
        if name in SECRET_FIELDS and value:
            value = "***"
        elif isinstance(value, str) and "://" in value:
            value = ";".join(redact_url(part) for part in value.split(";"))
        out.append({"name": name, "value": value, "source": source, "origin": origin, "variable": variable})
    return out
