"""STAC assets (`stac-assets`): only the assets of a STAC item that the tile graph reads, each into
`<workdir>/<scene>/` under its own file name, with a `stac-assets.json` manifest (asset → file, band
name, `raster:bands`, and the item's processing fields), over http(s) or s3 (requester-pays, the
AWS chain: `providers.s3data`).

The tile graph declares what it reads (graph key `assets`, `graph.model.AssetNeeds`); its `select`
names come from the graph config overridden by the scene's `graph_config` (so `{"bands": "B04,B08"}`
fetches two assets). A name the payload asked for (or an `always` group) that the item does not have
is an error naming the asset keys looked for and those the item has; a name only in the graph's own
default list is skipped. Each asset is verified (`file:size`, `file:checksum` multihash when the item
gives them) and resumable across job attempts (`<workdir>/downloads/stac-assets/<aoi>/…part`).
Planetary Computer hrefs are signed with the `planetary-computer` package just before the transfer;
the signed URL (a SAS token) never reaches a message or a file.

Window mode (`providers.stac_window`): a COG asset is read only inside the AOI's window (HTTP range
requests through GDAL) when that window is at most INGESTER_STAC_WINDOW_MAX_SHARE of the asset; the
manifest then marks the asset (and the product: `window_extract`, `window_bbox`) as a window extract,
with what was verified (size, GeoTIFF structure, the window's grid) and what could not be (the
whole-file checksum). Graph config `assets_window: off` fetches whole assets.

Scenes of the USGS server (`catalogue: usgs-landsat`) are left to `landsat-aws` (their https hrefs
need an EROS login), unless INGESTER_PROVIDERS names stac-assets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ingester.errors import DownloadError, HTTPError, NotFound, ProviderError, Unavailable
from ingester.http.checksums import Expected, verify_multihash
from ingester.http.transfer import download
from ingester.providers.base import Provider, configured_names, product_name, provider_error, resume_part
from ingester.providers.url import plain_service
from ingester.scenes import Scene
from ingester.storage import check_name

if TYPE_CHECKING:  # loaded when a STAC scene is fetched: the chain imports every provider
    from ingester.graph.model import AssetNeeds
    from ingester.providers.stac_window import WindowReader

MANIFEST = "stac-assets.json"
_QUERY = re.compile(r"\?[^\s'\"]*")


def tile_graph(scene: Scene, graph_dirs: tuple[str, ...]):
    from ingester.graph.loader import load_graph

    names = {t.graph_name for t in scene.tiles if t.graph_name.strip()}
    if not names:
        raise NotFound("stac-assets: the scene has no tile graph to say which assets it reads")
    if len(names) > 1:
        raise ProviderError(f"stac-assets: the tiles of {scene.source_id} have several graphs "
                            f"({', '.join(sorted(names))})")
    return load_graph(names.pop(), graph_dirs)


def _matches(candidate: str, key: str, asset: dict[str, Any]) -> bool:
    if key.lower() == candidate.lower():
        return True
    base = unquote(urlparse(str(asset.get("href", ""))).path).rsplit("/", 1)[-1].upper()
    return base.endswith("_" + candidate.upper())


def find_asset(candidates: tuple[str, ...] | list[str], assets: dict[str, dict[str, Any]]) -> str | None:
    for candidate in candidates:
        for key, asset in assets.items():
            if _matches(candidate, key, asset):
                return key
    return None


def needed_assets(needs: AssetNeeds, config: dict[str, str], overridden: set[str],
                  assets: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """([(name, asset key)], [problems]) for an item: the names selected, then the `always` groups."""
    keys = dict(needs.keys)
    if needs.select is None:
        names, required = list(keys), False
    else:
        text = needs.select.value if needs.select.type == "fixed" else config.get(needs.select.value, "")
        names = [n.strip() for n in text.split(",") if n.strip()] or list(keys)
        required = needs.select.type == "fixed" or needs.select.value in overridden
    chosen: list[tuple[str, str]] = []
    problems: list[str] = []
    for name in names:
        if name not in keys:
            problems.append(f"{name!r} is not a name the graph knows ({', '.join(keys)})")
            continue
        key = find_asset(keys[name], assets)
        if key is not None:
            chosen.append((name, key))
        elif required:
            problems.append(f"no asset for {name} (looked for {', '.join(keys[name])})")
    for group in needs.always:
        key = find_asset(group, assets)
        if key is None:
            problems.append(f"no asset among {', '.join(group)}")
        else:
            chosen.append((key, key))
    return list(dict.fromkeys(chosen)), problems


def sign_href(href: str, settings) -> str:
    """A Planetary Computer href with its SAS token (planetary-computer package; PC_SDK_SAS_URL or
    INGESTER_PC_SAS_URL for the token API)."""
    import planetary_computer
    from planetary_computer.settings import Settings as PcSettings

    if settings.pc_sas_url:
        PcSettings.get().sas_url = settings.pc_sas_url
    try:
        return planetary_computer.sign_url(href)
    except Exception as exc:  # noqa: BLE001 - requests/pydantic errors of the token API
        status = getattr(getattr(exc, "response", None), "status_code", None)
        text = f"{type(exc).__name__}: {_QUERY.sub('?…', str(exc))[:200]}"
        if status is None or status in (408, 429) or status >= 500:
            raise Unavailable(f"stac-assets: Planetary Computer SAS token for {href}: {text}") from None
        raise ProviderError(f"stac-assets: Planetary Computer SAS token for {href}: {text}") from None


def file_name(key: str, asset: dict[str, Any], taken: set[str]) -> str:
    base = unquote(urlparse(str(asset.get("href", ""))).path).rstrip("/").rsplit("/", 1)[-1]
    if not base or base in taken or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", base):
        ext = os.path.splitext(base)[1] if base else ""
        base = re.sub(r"[^A-Za-z0-9._\-]", "_", key) + ext
    return check_name("asset file", base)


class StacAssetsProvider(Provider):
    name = "stac-assets"

    @classmethod
    def configured(cls, settings) -> bool:
        return True  # answers NotFound at once for scenes that do not come from a STAC API

    def may_have(self, scene: Scene) -> bool:
        assets = scene.metadata.get("assets")
        if not isinstance(assets, dict) or not assets:
            return False
        return scene.metadata.get("catalogue") != "usgs-landsat" or self.name in configured_names(self.settings)

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        assets = scene.metadata.get("assets")
        if not isinstance(assets, dict) or not assets:
            raise NotFound("stac-assets: the scene has no STAC assets (metadata.assets)")
        if scene.metadata.get("catalogue") == "usgs-landsat" and self.name not in configured_names(self.settings):
            raise NotFound("stac-assets: USGS Landsat scenes are fetched whole by landsat-aws (name stac-assets in "
                           "INGESTER_PROVIDERS to fetch their assets)")
        graph = tile_graph(scene, tuple(getattr(self, "graph_dirs", ()) or ()))
        if graph.assets is None:
            raise NotFound(f"stac-assets: tile graph {graph.name} does not declare the STAC assets it reads "
                           "(graph key 'assets'): the whole product is needed")
        config = {**graph.config, **scene.graph_config}
        chosen, problems = needed_assets(graph.assets, config, set(scene.graph_config), assets)
        item = scene.metadata.get("item_id") or name
        if problems:
            raise ProviderError(f"stac-assets: item {item} ({scene.metadata.get('collection') or 'no collection'}) "
                                f"lacks what graph {graph.name} reads: {'; '.join(problems)}; its assets: "
                                f"{', '.join(sorted(assets))}")
        from ingester.providers.stac_window import WindowReader, forget_kept, window_request

        request, why_whole = window_request(self.settings, config, scene)
        windows = WindowReader(self, scene, name, request) if request is not None else None
        folder = workdir / f".{name}.assets.part"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        manifest: dict[str, Any] = {"item": scene.metadata.get("stac_item", ""), "id": item,
                                    "collection": scene.metadata.get("collection", ""),
                                    "properties": {k: scene.metadata[k] for k in
                                                   ("s2:processing_baseline", "earthsearch:boa_offset_applied")
                                                   if k in scene.metadata},
                                    "assets": {}, "window_extract": False}
        if request is not None:
            manifest["aoi_bbox"] = list(request.bbox)
        taken: set[str] = {MANIFEST}
        try:
            for band, key in chosen:
                asset = assets[key]
                target = file_name(key, asset, taken)
                taken.add(target)
                entry = {"file": target, "href": _QUERY.sub("?…", str(asset.get("href", "")))}
                entry.update(self._fetch_one(scene, name, key, asset, folder / target, windows, why_whole))
                if band != key:
                    entry["name"] = band
                for field in ("raster", "bands", "type"):
                    if field in asset:
                        entry[field] = asset[field]
                manifest["assets"][key] = entry
            boxes = [e["window"]["bbox"] for e in manifest["assets"].values() if e.get("fetched") == "window"]
            if boxes:
                manifest["window_extract"] = True
                manifest["window_bbox"] = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                                           max(b[2] for b in boxes), max(b[3] for b in boxes)]
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            target_dir = workdir / name
            shutil.rmtree(target_dir, ignore_errors=True)
            os.replace(folder, target_dir)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        forget_kept(self, scene, name)
        return target_dir

    def _fetch_one(self, scene: Scene, name: str, key: str, asset: dict[str, Any], dest: Path,
                   windows: WindowReader | None, why_whole: str) -> dict[str, Any]:
        """Fetch one asset into `dest`: its window when `windows` may read it, else the whole file;
        returns what the manifest records of how (`fetched`, `window` or `whole_because`)."""
        href = str(asset.get("href", ""))
        scheme = urlparse(href).scheme.lower()
        size = asset.get("size") if isinstance(asset.get("size"), int) else None
        part = resume_part(self.settings, self.name, scene, f"{name}.{dest.name}")
        what = f"asset {key} of {name}"
        url = href
        if scheme in ("http", "https") and scene.metadata.get("signing") == "planetary-computer":
            url = sign_href(href, self.settings)
        if windows is not None and scheme in ("http", "https", "s3"):
            outcome = windows.fetch(key, asset, url, dest)
            if isinstance(outcome, dict):
                return {"fetched": "window", "window": outcome}
            why_whole = outcome
        self._fetch_whole(url, scheme, size, part, what, href, asset, dest)
        return {"fetched": "whole", "whole_because": why_whole} if why_whole else {"fetched": "whole"}

    def _fetch_whole(self, url: str, scheme: str, size: int | None, part: str, what: str, href: str,
                     asset: dict[str, Any], dest: Path) -> None:
        if scheme in ("http", "https"):
            try:
                download(plain_service(self.settings, self.clients, self.name), url, str(dest),
                         expected=Expected(size=size), progress=self.progress, part=part)
            except HTTPError as exc:
                error = provider_error(self.name, exc)
                raise type(error)(_QUERY.sub("?…", str(error)) + f" ({what})") from None
            except DownloadError as exc:
                raise DownloadError(_QUERY.sub("?…", str(exc))) from None
        elif scheme == "s3":
            from ingester.providers.s3data import copy_object, filesystem, require_credentials

            require_credentials(self.name, href)
            fs = filesystem(self.settings)
            partial = Path(part)
            copy_object(fs, href[len("s3://"):], partial, size, self.name)
            if size is not None and partial.stat().st_size != size:
                raise Unavailable(f"stac-assets: {href}: received {partial.stat().st_size} of {size} bytes")
            os.replace(partial, dest)
        else:
            raise ProviderError(f"stac-assets: {what}: unsupported href scheme {scheme or 'none'!r} ({href})")
        checksum = asset.get("checksum")
        if checksum:
            try:
                verify_multihash(dest, str(checksum), what)
            except DownloadError as exc:
                dest.unlink(missing_ok=True)
                raise Unavailable(f"stac-assets: {exc}; fetched again on the next attempt") from None
