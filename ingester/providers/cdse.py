"""Copernicus Data Space Ecosystem: `GET <download_url>/Products(<uuid>)/$value` with a bearer token.

Tokens: one `TokenManager` per account *per process* (password grant once, refresh grant before
expiry, shared by every job the process runs); in a local process pool each worker process keeps its
own manager, so a run logs in at most once per worker process. The Authorization header follows
redirects only to the service's own origins (`http.Service`: scheme, host and port of the configured
download, catalogue and token URLs, and https on the hosts of `config.CDSE_DOMAINS`), never elsewhere.

Concurrency: at most `settings.cdse_max_downloads` downloads at once across all processes of the
machine that share the work folder (`slots.slot` on `<workdir>/.slots/cdse`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlparse

from ingester.config import CDSE_DOMAINS, Settings, cdse_credentials
from ingester.errors import AuthError, HTTPError, NotFound, Unavailable
from ingester.http import (
    Service,
    TokenManager,
    download,
    forget_services,
    forget_token_managers,
    shared_service,
    shared_token_manager,
)
from ingester.providers.base import (
    Provider,
    expected_from_metadata,
    is_offline,
    product_name,
    provider_error,
    resume_part,
)
from ingester.providers.slots import slot
from ingester.scenes import Scene


def token_manager(settings: Settings) -> TokenManager:
    """The process's token manager for the configured CDSE account (created on first use, shared
    with the annotation sources of `ingester tiles`)."""
    creds = cdse_credentials(settings)
    if not creds or not creds[0] or not creds[1]:
        raise AuthError("cdse: no credentials: set INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD, "
                        f"or a ~/.netrc entry for {urlparse(settings.cdse_token_url).hostname}")
    return shared_token_manager(settings.cdse_token_url, creds[0], creds[1], timeout=settings.http_timeout)


def download_service(settings: Settings) -> Service:
    token = token_manager(settings)
    key = ("cdse", settings.cdse_download_url, settings.cdse_catalogue_url, settings.http_timeout,
           settings.http_retries, settings.http_backoff, id(token))

    def make() -> Service:
        # the service's own hosts: download (zipper), catalogue (redirects to zipper), identity, and
        # the other hosts of the CDSE domain
        hosts = {settings.cdse_catalogue_url, settings.cdse_token_url}  # their origins: scheme, host, port
        return Service("cdse", settings.cdse_download_url, timeout=settings.http_timeout,
                       retries=settings.http_retries, backoff=settings.http_backoff, token=token,
                       trusted_hosts=hosts, trusted_domains=CDSE_DOMAINS)

    return shared_service(key, make)


def reset() -> None:
    """Forget the process's tokens and sessions (tests; a new run in the same process)."""
    forget_token_managers()
    forget_services()


class CdseProvider(Provider):
    name = "cdse"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(cdse_credentials(settings))

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        uuid = str(scene.metadata.get("uuid") or "").strip()
        if not uuid:
            raise NotFound("cdse: the scene has no metadata.uuid (the CDSE product id)")
        if is_offline(scene.metadata):
            raise Unavailable(f"cdse: product {name} is offline (Online=false in the catalogue); "
                              "it can only be ordered through the Data Workspace, try again later")
        service = download_service(self.settings)
        dest = workdir / f"{name}.zip"
        slots_dir = Path(self.settings.workdir).resolve() / ".slots" / "cdse"
        try:
            with slot(slots_dir, self.settings.cdse_max_downloads):
                verified = download(service, f"Products({quote(uuid, safe='')})/$value", str(dest), auth=True,
                                    expected=expected_from_metadata(scene.metadata), progress=self.progress,
                                    part=resume_part(self.settings, self.name, scene, dest.name))
        except HTTPError as exc:
            raise provider_error("cdse", exc) from None
        self.verified[str(dest)] = verified
        return dest
