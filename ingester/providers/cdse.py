"""Copernicus Data Space Ecosystem: `GET <download_url>/Products(<uuid>)/$value` with a bearer token.

Tokens: in a job run by an executor, the access token the coordinator handed with the job, renewed
through the coordinator (`http.tokens.JobTokens`): workers never log in. Elsewhere (library use, the
tile inventory of `ingester tiles`), the one `TokenManager` for the account of the command's `Clients`
(password grant once, refresh grant before expiry). The Authorization header follows redirects only to
the service's own origins (`http.Service`: scheme, host and port of the configured download, catalogue
and token URLs, and https on the hosts of `config.CDSE_DOMAINS`), never elsewhere.

Concurrency: at most `settings.cdse_max_downloads` downloads at once across all processes of the
machine that share the work folder (`slots.slot` on `<workdir>/.slots/cdse`).

Availability is asked when the job runs, never taken from the search: `GET <catalogue>/Products(<uuid>)`
(no account needed) gives the product's current `Online` flag, size and checksums. CDSE keeps older
products offline (long-term archive); a download request does not restore them (they come back online
only when ordered, through the Data Workspace), so an offline product is not requested: the job is
deferred (`Deferred`, `settings.offline_recheck` seconds) and asks the catalogue again then. A download
refused as offline while the catalogue still says online is deferred the same way. When the catalogue
cannot be asked, the search-time flag decides.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from urllib.parse import quote, urlparse

from ingester.config import CDSE_DOMAINS, Settings, cdse_credentials
from ingester.errors import AuthError, Deferred, HTTPError, NotFound
from ingester.http.clients import Clients
from ingester.http.session import Service, TokenHolder
from ingester.http.tokens import TokenManager
from ingester.http.transfer import download
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


def is_cdse_scene(scene: Scene) -> bool:
    """A scene of the CDSE catalogue: it carries the CDSE product id (`metadata.uuid`) and comes from no
    other catalogue (STAC APIs, OneAtlas name theirs in `metadata.catalogue`)."""
    return bool(str(scene.metadata.get("uuid") or "").strip()) and not scene.metadata.get("catalogue")


def token_manager(settings: Settings, clients: Clients) -> TokenHolder:
    """The token holder for CDSE downloads: the job's handed token (in a worker), else the login of
    `clients` (`login_manager`)."""
    handed = clients.handed("cdse")
    return handed if handed is not None else login_manager(settings, clients)


def login_manager(settings: Settings, clients: Clients) -> TokenManager:
    """The token manager of `clients` for the configured CDSE account (made on first use; shared by
    whatever uses the same clients: the annotation sources of `ingester tiles`, the pre-flight check,
    the coordinator's token source)."""
    creds = cdse_credentials(settings)
    if not creds or not creds[0] or not creds[1]:
        raise AuthError("cdse: no credentials: set INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD, "
                        f"or a ~/.netrc entry for {urlparse(settings.cdse_token_url).hostname}")
    return clients.token_manager(settings.cdse_token_url, creds[0], creds[1], timeout=settings.http_timeout)


def download_service(settings: Settings, clients: Clients) -> Service:
    """The CDSE download service of `clients` (one session for all their downloads)."""
    token = token_manager(settings, clients)
    key = ("cdse", settings.cdse_download_url, settings.cdse_catalogue_url, settings.cdse_token_url,
           settings.http_timeout, settings.http_retries, settings.http_backoff, token)

    def make() -> Service:
        # the service's own hosts: download (zipper), catalogue (redirects to zipper), identity, and
        # the other hosts of the CDSE domain
        hosts = {settings.cdse_catalogue_url, settings.cdse_token_url}  # their origins: scheme, host, port
        return Service("cdse", settings.cdse_download_url, timeout=settings.http_timeout,
                       retries=settings.http_retries, backoff=settings.http_backoff, token=token,
                       trusted_hosts=hosts, trusted_domains=CDSE_DOMAINS)

    return clients.service(key, make)


class CdseProvider(Provider):
    name = "cdse"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(cdse_credentials(settings))

    def _offline(self, name: str, why: str) -> Deferred:
        from ingester.times import epoch_text

        retry_at = time.time() + self.settings.offline_recheck
        return Deferred(f"cdse: product {name} is offline ({why}); CDSE keeps it in its long-term archive "
                        "until it is ordered (Data Workspace, https://dataspace.copernicus.eu/workspace/): the "
                        f"catalogue is asked again at {epoch_text(retry_at)}", retry_at)

    def current_metadata(self, scene: Scene, name: str, uuid: str) -> dict:
        """The scene's metadata updated with the catalogue's current entry (Online, size, checksums)."""
        from ingester.catalogue.cdse import entry_metadata, product_entry

        try:
            entry = product_entry(self.settings, uuid, clients=self.clients)
        except HTTPError as exc:
            if is_offline(scene.metadata):
                raise self._offline(name, f"at search time, and the catalogue could not be asked now: {exc}") \
                    from None
            return scene.metadata  # the search said online: try the download
        if entry is None:
            raise NotFound(f"cdse: product {name} ({uuid}) is no longer in the CDSE catalogue (deleted or replaced "
                           "by a reprocessing: search again, or `ingester remove --scene ID`)")
        fresh = entry_metadata(entry)
        if not fresh["online"]:
            raise self._offline(name, "the catalogue says Online=false now")
        keep = {k: v for k, v in fresh.items() if k in ("online", "size", "checksums") and v not in (None, {}, "")}
        return {**scene.metadata, **keep}

    def may_have(self, scene: Scene) -> bool:
        return is_cdse_scene(scene)

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        uuid = str(scene.metadata.get("uuid") or "").strip()
        if not uuid:
            raise NotFound("cdse: the scene has no metadata.uuid (the CDSE product id)")
        if scene.metadata.get("catalogue") == "oneatlas":  # its uuid is a OneAtlas id
            raise NotFound("cdse: not a CDSE product (a OneAtlas scene)")
        metadata = self.current_metadata(scene, name, uuid)
        if metadata is not scene.metadata:
            scene = dataclasses.replace(scene, metadata=metadata)
        service = download_service(self.settings, self.clients)
        dest = workdir / f"{name}.zip"
        slots_dir = Path(self.settings.workdir).resolve() / ".slots" / "cdse"
        try:
            with slot(slots_dir, self.settings.cdse_max_downloads):
                verified = download(service, f"Products({quote(uuid, safe='')})/$value", str(dest), auth=True,
                                    expected=expected_from_metadata(scene.metadata), progress=self.progress,
                                    part=resume_part(self.settings, self.name, scene, dest.name))
        except HTTPError as exc:
            error = provider_error("cdse", exc)
            if error.temporary and "offline" in str(error):
                raise self._offline(name, f"the download was refused: {exc}") from None
            raise error from None
        self.verified[str(dest)] = verified
        return dest
