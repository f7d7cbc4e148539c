"""The public-data S3 buckets of STAC assets and of `landsat-aws` (usgs-landsat, sentinel-s2-l1c, …):
requester-pays (the transfer is billed to the AWS account of the caller), region us-west-2,
credentials from the usual AWS chain (environment, AWS_PROFILE and ~/.aws, instance role), never the
storage's INGESTER_S3_* keys. INGESTER_STAC_S3_ENDPOINT_URL points elsewhere (tests, mirrors)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ingester.config import Settings
from ingester.errors import AuthError, NotFound, Unavailable

REGION = "us-west-2"
_CHUNK = 4 * 1024 * 1024


def require_credentials(provider: str, what: str) -> None:
    """AuthError naming what to set when the AWS chain finds no credentials (requester-pays needs them)."""
    import botocore.session

    try:
        credentials = botocore.session.get_session().get_credentials()
    except Exception as exc:  # noqa: BLE001 - a broken ~/.aws/config is also "no usable credentials"
        raise AuthError(f"{provider}: AWS credentials could not be read ({type(exc).__name__}: {exc})") from None
    if credentials is None:
        raise AuthError(f"{provider}: no AWS credentials for {what}: it is requester-pays (the transfer is billed to "
                        "your AWS account); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or "
                        "run with an instance role")


def filesystem(settings: Settings):
    """An s3fs file system for the public-data buckets (requester-pays, us-west-2, AWS chain)."""
    import s3fs

    client_kwargs = {"region_name": REGION}
    if settings.stac_s3_endpoint_url:
        client_kwargs["endpoint_url"] = settings.stac_s3_endpoint_url
    return s3fs.S3FileSystem(requester_pays=True, client_kwargs=client_kwargs, skip_instance_cache=False)


def copy_object(fs, key: str, dest: Path, size: int | None, provider: str) -> None:
    """Copy one object to `dest`, resuming a partial `dest` (ranged read from its size); the caller
    verifies size and checksum."""
    done = dest.stat().st_size if dest.exists() else 0
    if size is not None and done > size:
        dest.unlink()
        done = 0
    if size is not None and done == size:
        return
    try:
        with fs.open(key, "rb", block_size=_CHUNK) as src, open(dest, "ab" if done else "wb") as out:
            if done:
                src.seek(done)
            shutil.copyfileobj(src, out, _CHUNK)
    except FileNotFoundError:
        raise NotFound(f"{provider}: s3://{key} does not exist") from None
    except PermissionError as exc:
        raise AuthError(f"{provider}: s3://{key}: access denied ({exc}); requester-pays buckets need AWS "
                        "credentials allowed to pay for the transfer") from None
    except OSError as exc:
        raise Unavailable(f"{provider}: s3://{key}: {type(exc).__name__}: {exc}") from None


def move_into(folder: Path, target: Path) -> Path:
    """Put a completed resume folder in place as the product folder (another file system: copy)."""
    if target.exists():
        shutil.rmtree(target)
    try:
        os.replace(folder, target)
    except OSError:
        shutil.copytree(folder, target)
        shutil.rmtree(folder, ignore_errors=True)
    return target
