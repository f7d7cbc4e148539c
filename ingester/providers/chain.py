"""The provider chain: providers tried in a configurable order until one delivers the product.

Order: `settings.providers` (default "local,url,cdse"), then every other provider that is configured
(bucket when INGESTER_BUCKET_PATTERNS is set, ftp with INGESTER_FTP_PATTERNS, asf with an Earthdata
token, oneatlas with an API key). NotFound moves on at once; RateLimited/Unavailable are retried with
backoff on the same provider (honouring the server's wait), then the chain moves on; any other error
moves on too. The final error names what every provider said, and is temporary when a provider failed temporarily
(it may succeed later), NotFound when no provider has the product, permanent otherwise.
A provider that defers (`Deferred`: the product is offline, to be asked for again later) is not retried
here; the chain moves on, and when no provider delivers, the deferral wins over NotFound and permanent
errors (a temporary failure elsewhere wins over it: it is retried sooner).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ingester.config import Settings
from ingester.errors import ConfigError, Deferred, DownloadError, IngesterError, NotFound, ProviderError
from ingester.http.checksums import Verified
from ingester.http.clients import Clients
from ingester.http.transfer import TransferProgress
from ingester.providers.base import Provider, configured_names
from ingester.scenes import Scene


def registry() -> dict[str, type[Provider]]:
    from ingester.providers.asf import AsfProvider
    from ingester.providers.bucket import BucketProvider
    from ingester.providers.cdse import CdseProvider
    from ingester.providers.ftp import FtpProvider
    from ingester.providers.landsat_aws import LandsatAwsProvider
    from ingester.providers.local import LocalProvider
    from ingester.providers.oneatlas import OneAtlasProvider
    from ingester.providers.stac_assets import StacAssetsProvider
    from ingester.providers.url import UrlProvider

    classes: list[type[Provider]] = [LocalProvider, UrlProvider, CdseProvider, BucketProvider, FtpProvider,
                                     AsfProvider, StacAssetsProvider, LandsatAwsProvider, OneAtlasProvider]
    return {cls.name: cls for cls in classes}


def listed_providers(settings: Settings) -> list[str]:
    """The names of INGESTER_PROVIDERS, in order, without repeats; raises ConfigError for unknown ones."""
    known = registry()
    names = configured_names(settings)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"INGESTER_PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def provider_order(settings: Settings, clients: Clients | None = None) -> list[str]:
    """The names to try: the configured list first, then the other configured providers (in a job, a
    provider whose token the job carries is configured: its coordinator holds the account)."""
    order = listed_providers(settings)
    order += [n for n, cls in registry().items()
              if n not in order and (cls.configured(settings) or (clients is not None and clients.carries(n)))]
    return order


@dataclasses.dataclass
class Fetched:
    path: Path
    provider: str
    verified: Verified | None
    messages: list[str]


def fetch_product(scene: Scene, workdir: Path, settings: Settings, *, progress: TransferProgress | None = None,
                  providers: list[Provider] | None = None, attempts: int = 3,
                  sleep: Callable[[float], None] = time.sleep, graph_dirs: tuple[str, ...] = (),
                  clients: Clients | None = None) -> Fetched:
    """Run the chain; returns the product in `workdir` and who delivered it. `graph_dirs` (where the
    payload's graphs are) lets a provider read the tile graph (stac-assets: the assets it needs);
    `clients` are the job's HTTP sessions and tokens (without them, the chain opens and closes its own)."""
    if clients is None:
        with Clients() as own:
            return fetch_product(scene, workdir, settings, progress=progress, providers=providers,
                                 attempts=attempts, sleep=sleep, graph_dirs=graph_dirs, clients=own)
    if providers is None:
        known = registry()
        providers = [known[name](settings, progress, clients) for name in provider_order(settings, clients)]
    for provider in providers:
        provider.graph_dirs = graph_dirs
    # only the providers that may have this kind of scene: the others' NotFound says nothing useful
    # ("landsat-aws: not a Landsat product id" about a Sentinel-2 scene); all of them when none may
    providers = [p for p in providers if _may_have(p, scene)] or providers
    workdir.mkdir(parents=True, exist_ok=True)
    messages: list[str] = []
    temporary: list[ProviderError] = []
    deferred: list[Deferred] = []
    not_found = 0
    for provider in providers:
        for attempt in range(1, attempts + 1):
            try:
                path = provider.fetch(scene, workdir)
            except Deferred as exc:
                messages.append(_prefixed(provider.name, exc))
                deferred.append(exc)
                break
            except NotFound as exc:
                messages.append(_prefixed(provider.name, exc))
                not_found += 1
                break
            except ProviderError as exc:
                if exc.temporary and attempt < attempts:
                    sleep(getattr(exc, "retry_after", None) or settings.http_backoff * 2 ** (attempt - 1))
                    continue
                messages.append(_prefixed(provider.name, exc)
                                + (f" (provider tried {attempt} times in this attempt)" if attempt > 1 else ""))
                if exc.temporary:
                    temporary.append(exc)
                break
            except (DownloadError, IngesterError, OSError) as exc:
                text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                messages.append(_prefixed(provider.name, text))
                break
            else:
                return Fetched(path, provider.name, provider.verified.get(str(path)), messages)
        _clean_partial(workdir)
    summary = "; ".join(messages) or "no provider configured"
    if deferred and not temporary:
        raise Deferred(summary if len(messages) > 1 else str(deferred[0]), min(d.retry_at for d in deferred))
    if temporary:
        err: ProviderError = type(temporary[-1])(f"no provider delivered {scene.source_id}: {summary}")
        raise err
    if not_found == len(providers):
        raise NotFound(f"no provider has {scene.source_id}: {summary}")
    raise ProviderError(f"no provider delivered {scene.source_id}: {summary}")


def _may_have(provider: Provider, scene: Scene) -> bool:
    may_have = getattr(provider, "may_have", None)  # (a stand-in provider may not have it: it may then)
    try:
        return True if may_have is None else bool(may_have(scene))
    except (IngesterError, ValueError, TypeError):  # odd metadata: let the provider itself say what is wrong
        return True


def deliverers(scene: Scene, settings: Settings, providers: list[Provider] | None = None) -> list[str]:
    """The names of the configured providers (in chain order) that may deliver the scene."""
    if providers is None:
        known = registry()
        providers = [known[name](settings) for name in provider_order(settings)]
    return [p.name for p in providers if _may_have(p, scene)]


def _prefixed(name: str, exc: object) -> str:
    text = str(exc)
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def _clean_partial(workdir: Path) -> None:
    """Remove what a failed provider left in the work directory (temporary names only)."""
    for entry in workdir.glob("*.part"):
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


__all__ = ["fetch_product", "deliverers", "listed_providers", "provider_order", "registry", "Fetched"]
