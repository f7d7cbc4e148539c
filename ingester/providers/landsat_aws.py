"""Landsat on AWS (docs/providers.md, "Landsat on AWS"): every object of the scene folder
`s3://usgs-landsat/collection02/level-{1,2}/standard/<sensor family>/<year>/<path>/<row>/<product>/`
(requester-pays, region us-west-2, credentials from the AWS chain) into `<workdir>/<product>/`.

The folder is taken from the scene's `metadata.s3_prefix` (the STAC item's `alternate.s3.href`s), or
built from the product id. Each object is checked against the size of the listing and, when the STAC
item gives one for it, its `file:checksum`. Objects are kept between job attempts in
`<workdir>/downloads/landsat-aws/<aoi>/<product>.part/`: an interrupted download resumes where it
stopped, complete objects are not fetched again. The scene worker then stores the folder as
`<product>.zip` (as for SAFE folders), and a stored, verified product is never fetched again.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingester.errors import AuthError, DownloadError, NotFound, Unavailable
from ingester.http.checksums import verify_multihash
from ingester.providers.base import Provider, product_name, resume_part
from ingester.providers.s3data import copy_object, filesystem, move_into, require_credentials
from ingester.scenes import Scene

WORKERS = 4


def scene_prefix(scene: Scene, name: str) -> str:
    from ingester.naming import landsat_parts, landsat_prefix

    prefix = str(scene.metadata.get("s3_prefix") or "")
    if not prefix and landsat_parts(name):
        prefix = landsat_prefix({}, {}, name)
    return prefix


def published_checksums(scene: Scene) -> dict[str, str]:
    """Object file name → `file:checksum` of the STAC item's assets."""
    out: dict[str, str] = {}
    for asset in (scene.metadata.get("assets") or {}).values():
        if not isinstance(asset, dict) or not asset.get("checksum"):
            continue
        for href in (asset.get("s3"), asset.get("href")):
            if href:
                out[str(href).rstrip("/").rsplit("/", 1)[-1]] = str(asset["checksum"])
    return out


class LandsatAwsProvider(Provider):
    name = "landsat-aws"

    @classmethod
    def configured(cls, settings) -> bool:
        return True  # answers NotFound at once for products that are not Landsat Collection 2

    def may_have(self, scene: Scene) -> bool:
        return scene_prefix(scene, scene.source_id).startswith("s3://")

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        prefix = scene_prefix(scene, name)
        if not prefix.startswith("s3://"):
            raise NotFound(f"landsat-aws: {name} is not a Landsat Collection 2 product id")
        require_credentials(self.name, f"{prefix} (bucket {prefix[5:].split('/', 1)[0]})")
        fs = filesystem(self.settings)
        root = prefix[len("s3://"):].rstrip("/")
        try:
            listing = fs.find(root, detail=True)
        except FileNotFoundError:
            listing = {}
        except PermissionError as exc:
            raise AuthError(f"landsat-aws: listing {prefix}: access denied ({exc}); the bucket is requester-pays: "
                            "the AWS credentials must be allowed to pay for requests") from None
        except OSError as exc:
            raise Unavailable(f"landsat-aws: listing {prefix}: {type(exc).__name__}: {exc}") from None
        objects = {key: info for key, info in listing.items() if key != root and info.get("type") != "directory"}
        if not objects:
            raise NotFound(f"landsat-aws: nothing at {prefix}")
        folder = Path(resume_part(self.settings, self.name, scene, name))
        folder.mkdir(parents=True, exist_ok=True)
        checksums = published_checksums(scene)

        def one(key: str) -> None:
            rel = key[len(root) + 1:]
            if not rel or any(p in ("", "..") for p in rel.split("/")):
                raise Unavailable(f"landsat-aws: refusing object name {key!r}")
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            size = objects[key].get("size")
            copy_object(fs, key, dest, size, self.name)
            got = dest.stat().st_size
            if size is not None and got != size:
                raise Unavailable(f"landsat-aws: s3://{key}: received {got} of {size} bytes (resumed next time)")
            checksum = checksums.get(dest.name)
            if checksum:
                try:
                    verify_multihash(dest, checksum, f"s3://{key}")
                except DownloadError as exc:
                    dest.unlink(missing_ok=True)  # a corrupt copy is fetched again from scratch
                    raise Unavailable(f"landsat-aws: {exc}") from None

        with ThreadPoolExecutor(WORKERS) as pool:
            for future in [pool.submit(one, key) for key in sorted(objects)]:
                future.result()
        target = move_into(folder, workdir / name)
        shutil.rmtree(folder, ignore_errors=True)
        return target
