"""ASF datapool (Sentinel-1 SLC and GRD) with an Earthdata Login bearer token.

URLs: `<asf_url>/SLC/S{MISSION_VERSION}/{SCENE}.zip`, `<asf_url>/GRD_HD/S{MISSION_VERSION}/{SCENE}.zip`
(then the original's `GRD-HD`). The token (INGESTER_ASF_TOKEN, or the password of a ~/.netrc entry
for the datapool host) is sent to ASF hosts (`config.ASF_DOMAINS`) and Earthdata Login only: the
datapool redirects to pre-signed S3 URLs on amazonaws.com, which get no Authorization header."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ingester.config import ASF_DOMAINS, Settings, netrc_credentials
from ingester.errors import AuthError, HTTPError, NotFound
from ingester.http.session import Service
from ingester.http.tokens import StaticToken
from ingester.http.transfer import download
from ingester.naming import NameError_, product_keys
from ingester.providers.base import (
    Provider,
    expected_from_metadata,
    product_name,
    provider_error,
    resume_part,
)
from ingester.scenes import Scene

EDL_HOSTS = ("urs.earthdata.nasa.gov",)


def asf_token(settings: Settings) -> str:
    if settings.asf_token:
        return settings.asf_token
    creds = netrc_credentials(settings.asf_url)
    return creds[1] if creds else ""


def paths(scene_id: str) -> list[str]:
    try:
        keys = product_keys(scene_id)
    except NameError_:
        return []
    mission = f"S{keys['MISSION_VERSION']}"
    kind = keys.get("PRODUCT_TYPE", "")
    if kind == "SLC":
        return [f"SLC/{mission}/{scene_id}.zip"]
    if kind == "GRD":
        return [f"GRD_HD/{mission}/{scene_id}.zip", f"GRD-HD/{mission}/{scene_id}.zip"]
    return []


class AsfProvider(Provider):
    name = "asf"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(asf_token(settings))

    def _service(self) -> Service:
        token = asf_token(self.settings)
        if not token:
            raise AuthError("asf: no Earthdata token: set INGESTER_ASF_TOKEN or a ~/.netrc entry for "
                            f"{urlparse(self.settings.asf_url).hostname}")
        s = self.settings
        key = ("asf", s.asf_url, token, s.http_timeout, s.http_retries, s.http_backoff)
        return self.clients.service(key, lambda: Service(
            "asf", s.asf_url, timeout=s.http_timeout, retries=s.http_retries, backoff=s.http_backoff,
            token=StaticToken(token), trusted_hosts=EDL_HOSTS, trusted_domains=ASF_DOMAINS))

    def may_have(self, scene: Scene) -> bool:
        return bool(paths(scene.source_id))

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        candidates = paths(name)
        if not candidates:
            raise NotFound(f"asf: only Sentinel-1 SLC and GRD products are in the datapool ({name})")
        service = self._service()
        dest = workdir / f"{name}.zip"
        said = []
        for path in candidates:
            try:
                verified = download(service, path, str(dest), auth=True, progress=self.progress,
                                    expected=expected_from_metadata(scene.metadata),
                                    part=resume_part(self.settings, self.name, scene, dest.name))
            except HTTPError as exc:
                error = provider_error("asf", exc)
                if isinstance(error, NotFound):
                    said.append(str(exc))
                    continue
                raise error from None
            self.verified[str(dest)] = verified
            return dest
        raise NotFound("asf: " + "; ".join(said))
