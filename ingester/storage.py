"""Storage layout and file naming (reference §12): `<storage>/<aoi>/<scene>/tiles/<tile>/<file>`."""

from __future__ import annotations

import re
from datetime import datetime

from ingester.errors import InputError

FOLDER_EXTENSIONS = frozenset({"SAFE", "dim", "data", "*"})
PRODUCT_LAYER = "__product__"
ANNOTATIONS_LAYER = "__annotations__"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")


def check_name(kind: str, name: str) -> str:
    """A product, AOI, tile or layer name that cannot write outside the storage root."""
    if not name or not _SAFE_NAME.match(name) or ".." in name:
        raise InputError(f"{kind} name {name!r} is not allowed in storage paths "
                         "(letters, digits, '.', '_', ':', '-'; no '/', no '..')")
    return name


def layer_file_name(layer: str, extension: str, scene_id: str, tile_id: str, date: datetime) -> str:
    """The file name of a layer of a tile, before zipping (§12)."""
    ext = "" if extension in ("", "*") else f".{extension}"
    if layer == PRODUCT_LAYER:
        return f"{scene_id}{ext}"
    if layer == ANNOTATIONS_LAYER:
        return f"{scene_id}_annotations{ext}"
    return f"{date.strftime('%Y%m%d')}_{tile_id}_{layer}{ext}"


def stored_file_name(layer: str, extension: str, scene_id: str, tile_id: str, date: datetime) -> str:
    """The object name in storage: folder-like extensions are stored as `.zip`."""
    name = layer_file_name(layer, extension, scene_id, tile_id, date)
    if extension in FOLDER_EXTENSIONS:
        if extension != "*" and name.endswith(f".{extension}"):
            name = name[: -len(extension) - 1]
        return f"{name}.zip"
    return name


def tile_prefix(storage_uri: str, aoi: str, scene_id: str, tile_id: str) -> str:
    """`<storage>/<aoi>/<scene>/tiles/<tile>` with every name checked."""
    root = storage_uri.rstrip("/")
    return "/".join([root, check_name("AOI", aoi), check_name("scene", scene_id), "tiles",
                     check_name("tile", tile_id)])


# --- I/O through fsspec (local paths, file://, s3://, gs://) ------------------------------------

def _fs(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    return bool(fs.exists(path))


def put_file(local_path: str, uri: str) -> str:
    """Upload a local file to `uri` (atomically for local targets: temp name + rename). Returns `uri`."""
    import os
    import shutil

    fs, path = _fs(uri)
    if getattr(fs, "protocol", None) in ("file", ("file", "local"), "local") or uri.startswith(("/", "file://")) \
            or "://" not in uri:
        target = path
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = f"{target}.part"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, target)
        return uri
    fs.put_file(local_path, path)
    return uri


def get_file(uri: str, local_path: str) -> str:
    """Download `uri` to a local file."""
    import os

    fs, path = _fs(uri)
    os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
    fs.get_file(path, local_path)
    return local_path


def delete(uri: str) -> bool:
    """Delete a stored object; a missing one is tolerated (returns False)."""
    fs, path = _fs(uri)
    try:
        fs.rm_file(path)
        return True
    except FileNotFoundError:
        return False
