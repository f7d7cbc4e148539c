"""Download providers: one module per provider behind one interface (`base.Provider.fetch`), tried in
order by `chain.fetch_product`; `worker.run_scene_job` is the scene worker of `ingester aoi`."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

from ingester.config import Settings


def check_settings(settings: Settings) -> None:
    """Raise ConfigError (exit 2) for the provider configuration mistakes a worker would otherwise meet
    on every job: unknown names in INGESTER_PROVIDERS, malformed INGESTER_BUCKET_PATTERNS or
    INGESTER_FTP_PATTERNS, `cdse` named in INGESTER_PROVIDERS without credentials, `oneatlas` named there
    without an API key.

    The default provider list (INGESTER_PROVIDERS unset) also names cdse: a run without CDSE
    credentials is allowed then (local and url may have every product), and a scene that only CDSE
    has ends with the cdse provider's "no credentials" message (outcome `error`, never `fatal`)."""
    from ingester.config import cdse_credentials
    from ingester.errors import ConfigError
    from ingester.providers.bucket import BUCKET_SCHEMES
    from ingester.providers.chain import listed_providers
    from ingester.providers.ftp import FTP_SCHEMES
    from ingester.providers.patterns import parse_patterns

    names = listed_providers(settings)
    parse_patterns(settings.bucket_patterns, "INGESTER_BUCKET_PATTERNS", BUCKET_SCHEMES)
    parse_patterns(settings.ftp_patterns, "INGESTER_FTP_PATTERNS", FTP_SCHEMES)
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "providers")
    if "oneatlas" in names:
        from ingester.config import oneatlas_api_key

        if not oneatlas_api_key(settings):
            host = urlparse(settings.oneatlas_auth_url).hostname
            raise ConfigError("INGESTER_PROVIDERS: oneatlas is listed but has no API key: set "
                              f"INGESTER_ONEATLAS_API_KEY, or a ~/.netrc entry for {host}")
    if "cdse" in names and settings.providers != default:
        creds = cdse_credentials(settings)
        if not creds or not creds[0] or not creds[1]:
            host = urlparse(settings.cdse_token_url).hostname
            raise ConfigError(f"INGESTER_PROVIDERS: cdse is listed but has no credentials: set "
                              f"INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD, or a ~/.netrc entry for {host}")


__all__ = ["check_settings"]
