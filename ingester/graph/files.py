"""Thin adapter over storage's save / import / delete of graph files (docs/files.md, "Folder outputs and zips").

storage.py gains `save_output`, `import_input` and `delete_output` (download issue); until then the
fallbacks below implement the same conventions on the storage primitives. Switching over is automatic.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from ingester import storage
from ingester.storage import FOLDER_EXTENSIONS, StorageOptions


def save(local_path: Path, extension: str, prefix_uri: str, info: dict | None = None,
         options: StorageOptions | None = None) -> str:
    """Store a work-folder output under `prefix_uri`; folder-like outputs are zipped. Returns the URI.

    Extension `*` zips every entry of the work folder (the parent of `local_path`) as `<name>.zip`."""
    native = getattr(storage, "save_output", None)
    if native is not None and extension != "*":
        return native(local_path, extension, prefix_uri, info, options)
    return _save_fallback(Path(local_path), extension, prefix_uri, options)


def import_input(uri: str, extension: str, workdir: Path, expected_name: str,
                 options: StorageOptions | None = None) -> Path:
    """Fetch a stored input into the work folder (unzipping folder-like ones) as `expected_name`.
    Raises FileNotFoundError when the object is not in storage."""
    if not storage.exists(uri, options):
        raise FileNotFoundError(uri)
    native = getattr(storage, "import_input", None)
    if native is not None:
        return Path(native(uri, extension, workdir, expected_name, options))
    return _import_fallback(uri, extension, Path(workdir), expected_name, options)


def delete(uri: str, options: StorageOptions | None = None) -> bool:
    native = getattr(storage, "delete_output", None)
    if native is not None:
        return bool(native(uri, options))
    return storage.delete(uri, options)


def stored_uri(prefix_uri: str, local_name: str, extension: str) -> str:
    """The URI an output named `local_name` gets (folder-like extensions → `<name>.zip`)."""
    name = local_name
    if extension in FOLDER_EXTENSIONS:
        if extension != "*" and name.endswith(f".{extension}"):
            name = name[: -len(extension) - 1]
        name += ".zip"
    return f"{prefix_uri.rstrip('/')}/{name}"


def _entries(local_path: Path, extension: str) -> list[Path]:
    if extension == "*":
        return sorted(local_path.parent.iterdir())
    if extension == "dim":
        data = local_path.with_suffix(".data")
        return [local_path] + ([data] if data.exists() else [])
    return [local_path]


def _save_fallback(local_path: Path, extension: str, prefix_uri: str, options: StorageOptions | None = None) -> str:
    uri = stored_uri(prefix_uri, local_path.name, extension)
    if extension not in FOLDER_EXTENSIONS:
        return storage.put_file(str(local_path), uri, options)
    with tempfile.TemporaryDirectory(prefix="ingester-zip-") as tmp:
        archive = Path(tmp) / "out.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for entry in _entries(local_path, extension):
                base = entry.parent
                if entry.is_dir():
                    for path in sorted(entry.rglob("*")):
                        zf.write(path, path.relative_to(base).as_posix())
                else:
                    zf.write(entry, entry.relative_to(base).as_posix())
        return storage.put_file(str(archive), uri, options)


def _import_fallback(uri: str, extension: str, workdir: Path, expected_name: str,
                     options: StorageOptions | None = None) -> Path:
    target = workdir / expected_name
    if extension not in FOLDER_EXTENSIONS:
        storage.get_file(uri, str(target), options)
        return target
    with tempfile.TemporaryDirectory(prefix="ingester-unzip-", dir=workdir) as tmp:
        archive = Path(tmp) / "in.zip"
        storage.get_file(uri, str(archive), options)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                dest = (unpacked / info.filename).resolve()
                if not dest.is_relative_to(unpacked.resolve()):
                    raise ValueError(f"{uri}: zip entry {info.filename!r} escapes the folder")
            zf.extractall(unpacked)
        top = unpacked / expected_name
        if top.exists():
            shutil.move(str(top), target)
            if extension == "dim":
                data = unpacked / (Path(expected_name).stem + ".data")
                if data.exists():
                    shutil.move(str(data), workdir / data.name)
        else:
            shutil.move(str(unpacked), target)
    return target
