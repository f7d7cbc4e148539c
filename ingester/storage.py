"""Storage layout and file naming (docs/files.md, "Storage layout"): `<storage>/<aoi>/<scene>/tiles/<tile>/<file>`.

I/O goes through fsspec (local paths, file://, s3://, gs://) with the options of a `StorageOptions`
(s3 endpoint, keys, requester-pays; how far a zipped input may unpack), derived from the settings by
whoever has them (`StorageOptions.of(settings)`) and passed down; a function given none reads them from
the INGESTER_S3_* environment (a graph step's own scripts, library use). Nothing is kept process-wide.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ingester.errors import InputError, StorageError
from ingester.fileio import atomic_copy
from ingester.ids import file_name_problem
from ingester.naming import STORAGE_SCHEMES
from ingester.providers.unpack import Limits

FOLDER_EXTENSIONS = frozenset({"SAFE", "dim", "data", "*"})
PRODUCT_LAYER = "__product__"
ANNOTATIONS_LAYER = "__annotations__"


def check_name(kind: str, name: str) -> str:
    """A product, AOI, tile or file name that cannot write outside the storage root (`ids` grammar)."""
    problem = file_name_problem(name)
    if problem is not None:
        raise InputError(f"{kind} name not allowed in storage paths: {problem}")
    return name


def layer_file_name(layer: str, extension: str, scene_id: str, tile_id: str, date: datetime) -> str:
    """The file name of a layer of a tile, before zipping (docs/files.md, "File names")."""
    ext = "" if extension in ("", "*") else f".{extension}"
    if layer == PRODUCT_LAYER:
        return f"{scene_id}{ext}"
    if layer == ANNOTATIONS_LAYER:
        return f"{scene_id}_annotations{ext}"
    return f"{date.year:04d}{date.month:02d}{date.day:02d}_{tile_id}_{layer}{ext}"


def tile_prefix(storage_uri: str, aoi: str, scene_id: str, tile_id: str) -> str:
    """`<storage>/<aoi>/<scene>/tiles/<tile>` with every name checked."""
    root = storage_uri.rstrip("/")
    return "/".join([root, check_name("AOI", aoi), check_name("scene", scene_id), "tiles",
                     check_name("tile", tile_id)])


# --- storage options (s3 endpoint, keys, requester-pays; unpacking limits) -------------------------

_TRUE = ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class StorageOptions:
    """How the storage is reached: the fsspec options of s3:// (INGESTER_S3_ENDPOINT_URL, _ACCESS_KEY_ID,
    _SECRET_ACCESS_KEY, _REQUESTER_PAYS) and how far a zipped input may unpack (`unpack`)."""

    s3_endpoint_url: str = ""
    s3_access_key_id: str = dataclasses.field(default="", repr=False)
    s3_secret_access_key: str = dataclasses.field(default="", repr=False)
    s3_requester_pays: bool = False
    unpack: Limits = Limits()

    @classmethod
    def of(cls, settings: Any) -> StorageOptions:
        """From the settings (command line, environment, ingester.toml)."""
        return cls(settings.s3_endpoint_url, settings.s3_access_key_id, settings.s3_secret_access_key,
                   bool(settings.s3_requester_pays), Limits.of(settings))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageOptions:
        """From the INGESTER_S3_* variables alone (what a graph step's scripts see); default unpacking limits."""
        env = os.environ if env is None else env
        return cls(env.get("INGESTER_S3_ENDPOINT_URL", ""), env.get("INGESTER_S3_ACCESS_KEY_ID", ""),
                   env.get("INGESTER_S3_SECRET_ACCESS_KEY", ""),
                   env.get("INGESTER_S3_REQUESTER_PAYS", "").lower() in _TRUE)

    def fsspec_options(self, protocol: str) -> dict:
        """The keyword arguments of fsspec's file system for `protocol` (only s3:// has some)."""
        if protocol != "s3":
            return {}
        opts: dict = {}
        if self.s3_endpoint_url:
            opts["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key_id and self.s3_secret_access_key:
            opts["key"] = self.s3_access_key_id
            opts["secret"] = self.s3_secret_access_key
        if self.s3_requester_pays:
            opts["requester_pays"] = True
        return opts


# --- I/O through fsspec (local paths, file://, s3://, gs://) ------------------------------------

def _fs(uri: str, options: StorageOptions | None = None):
    import fsspec

    protocol = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    options = options if options is not None else StorageOptions.from_env()
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options.fsspec_options(protocol))
    except ImportError as exc:  # e.g. gs:// without gcsfs installed
        raise StorageError(f"{uri}: the {protocol}:// back-end is not installed ({exc})") from None
    return fs, path


def filesystem(uri: str, options: StorageOptions | None = None):
    """(fsspec file system, path) of a URI, with the storage's options (s3 endpoint, keys,
    requester-pays): the one place where those options are applied."""
    return _fs(uri, options)


def exists(uri: str, options: StorageOptions | None = None) -> bool:
    fs, path = _fs(uri, options)
    return bool(fs.exists(path))


def put_file(local_path: str, uri: str, options: StorageOptions | None = None) -> str:
    """Upload a local file to `uri` (atomically for local targets: temp name + rename). Returns `uri`."""
    fs, path = _fs(uri, options)
    if getattr(fs, "protocol", None) in ("file", ("file", "local"), "local") or uri.startswith(("/", "file://")) \
            or "://" not in uri:
        atomic_copy(local_path, path)
        return uri
    fs.put_file(local_path, path)
    return uri


def get_file(uri: str, local_path: str, options: StorageOptions | None = None) -> str:
    """Download `uri` to a local file."""
    fs, path = _fs(uri, options)
    os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
    fs.get_file(path, local_path)
    return local_path


def delete(uri: str, options: StorageOptions | None = None) -> bool:
    """Delete a stored object; a missing one is tolerated (returns False)."""
    fs, path = _fs(uri, options)
    try:
        if not fs.exists(path):  # object stores answer a delete of a missing key with success
            return False
        fs.rm_file(path)
        return True
    except FileNotFoundError:
        return False


# --- saving, importing and deleting outputs (docs/files.md, "Folder outputs and zips") ------------

SCHEMES = STORAGE_SCHEMES


def local_path(uri: str) -> str:
    """The file-system path of a local storage URI (plain path or file://)."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def join_uri(prefix_uri: str, name: str) -> str:
    return f"{prefix_uri.rstrip('/')}/{name}"


def resolve_storage_uri(scene_storage_uri: str, payload_storage_uri: str, settings) -> str:
    """The storage of a scene: its own `storage_uri`, else the payload's, else the settings' default.

    Local paths become absolute (workers may run elsewhere than the coordinator's cwd); only local
    paths and the schemes of `naming.STORAGE_SCHEMES` (file://, s3://, gs://, gcs://) are accepted."""
    for candidate in (scene_storage_uri, payload_storage_uri, settings.storage_uri):
        uri = (candidate or "").strip()
        if not uri:
            continue
        if "://" in uri:
            scheme = uri.split("://", 1)[0].lower()
            if scheme not in SCHEMES:
                raise InputError(f"storage_uri {uri!r}: unsupported scheme {scheme!r} "
                                 "(use a local path, file://, s3://, gs:// or gcs://)")
            if scheme == "file":
                return "file://" + os.path.abspath(local_path(uri))
            if not uri.split("://", 1)[1].strip("/"):
                raise InputError(f"storage_uri {uri!r}: a bucket name is required")
            return uri.rstrip("/")
        return os.path.abspath(os.path.expanduser(uri)).rstrip("/") or "/"
    raise InputError("no storage: set the payload's storage_uri or INGESTER_STORAGE_URI")


def _zip_entries(local: str, extension: str) -> tuple[str, list[tuple[str, str]]]:
    """(stored object name, [(path on disk, name in the zip)]) of a folder-like output."""
    path = os.path.abspath(local).rstrip("/")
    base = os.path.basename(path)
    if extension == "*":
        if not os.path.isdir(path):
            raise StorageError(f"output {path}: extension '*' needs a folder")
        entries = [(os.path.join(path, name), name) for name in sorted(os.listdir(path))]
        return f"{base}.zip", entries
    if extension == "dim":
        stem = base[:-4] if base.endswith(".dim") else base
        dim = os.path.join(os.path.dirname(path), f"{stem}.dim")
        data = os.path.join(os.path.dirname(path), f"{stem}.data")
        if not os.path.isfile(dim):
            raise StorageError(f"output {dim}: file not found")
        entries = [(dim, f"{stem}.dim")]
        if os.path.isdir(data):
            entries.append((data, f"{stem}.data"))
        return f"{stem}.zip", entries
    suffix = f".{extension}"
    stem = base[: -len(suffix)] if base.endswith(suffix) else base
    if not os.path.isdir(path):
        raise StorageError(f"output {path}: a .{extension} output must be a folder")
    return f"{stem}.zip", [(path, base)]


def zip_tree(entries: list[tuple[str, str]], zip_path: str) -> None:
    """Zip files and folders (fast deflate); `entries` are (path on disk, name in the zip)."""
    import zipfile

    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for disk, arc in entries:
            if os.path.islink(disk):
                continue
            if os.path.isdir(disk):
                zf.write(disk, arc + "/")
                for root, dirs, files in os.walk(disk):
                    dirs.sort()
                    rel_root = os.path.relpath(root, disk)
                    for name in dirs:
                        full = os.path.join(root, name)
                        if not os.path.islink(full):
                            zf.write(full, _arcname(arc, rel_root, name) + "/")
                    for name in sorted(files):
                        full = os.path.join(root, name)
                        if not os.path.islink(full):
                            zf.write(full, _arcname(arc, rel_root, name))
            else:
                zf.write(disk, arc)


def _arcname(arc: str, rel_root: str, name: str) -> str:
    return "/".join(p for p in (arc, "" if rel_root == "." else rel_root.replace("\\", "/"), name) if p)


def _describe(local: str, info: dict | None) -> None:
    """Fill `info` with the size and BLAKE3 digest of the file about to be stored (what `ingester
    verify` later compares the stored object with)."""
    if info is None:
        return
    from ingester.http.checksums import hash_file

    info["size"] = os.path.getsize(local)
    info["blake3"] = hash_file(local, "blake3").hexdigest()


def save_output(local_path: str | Path, extension: str, prefix_uri: str, info: dict | None = None,
                options: StorageOptions | None = None) -> str:
    """Store a produced file or folder under `prefix_uri`; returns the stored URI
    (docs/files.md, "Folder outputs and zips").

    Folder-like extensions (SAFE, dim + its .data, data, `*` = every entry of the folder) are zipped
    with fast deflate and stored as `<name>.zip`; plain files are stored unchanged. Writes are atomic
    (a local target is written to a temporary name and renamed; an object store put is atomic).
    `info`, when given, receives the stored object's `size` and `blake3` digest."""
    import tempfile

    local = os.fspath(local_path)
    if extension in FOLDER_EXTENSIONS:
        name, entries = _zip_entries(local, extension)
        check_name("output", name)
        fd, tmp = tempfile.mkstemp(prefix=".save-", suffix=".zip",
                                   dir=os.path.dirname(os.path.abspath(local)) or ".")
        os.close(fd)
        try:
            zip_tree(entries, tmp)
            _describe(tmp, info)
            return put_file(tmp, join_uri(prefix_uri, name), options)
        except OSError as exc:
            raise StorageError(f"cannot store {local} under {prefix_uri}: {exc}") from None
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    if not os.path.isfile(local):
        raise StorageError(f"output {local}: file not found")
    name = check_name("output", os.path.basename(local))
    try:
        _describe(local, info)
        return put_file(local, join_uri(prefix_uri, name), options)
    except OSError as exc:
        raise StorageError(f"cannot store {local} under {prefix_uri}: {exc}") from None


def import_input(uri: str, extension: str, workdir: str | Path, expected_name: str,
                 options: StorageOptions | None = None) -> Path:
    """Fetch a stored file into `workdir`; returns the local path (docs/files.md, "Folder outputs and zips").

    Folder-like ones are unzipped safely (into a temporary folder of workdir); the top entry named
    `expected_name` (and, for `.dim`, its `.data` folder) is moved into place, or, when there is no
    such entry (case `*`), the whole unpacked folder is renamed to `expected_name`."""
    import shutil
    import tempfile

    from ingester.providers.unpack import ArchiveError, extract

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = check_name("input", expected_name or uri.rstrip("/").rsplit("/", 1)[-1])
    target = workdir / name
    if extension not in FOLDER_EXTENSIONS:
        part = workdir / f".{name}.part"
        try:
            get_file(uri, str(part), options)
            os.replace(part, target)
        except FileNotFoundError:
            part.unlink(missing_ok=True)
            raise StorageError(f"{uri}: not found in storage") from None
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise StorageError(f"cannot fetch {uri}: {exc}") from None
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=workdir))
    try:
        archive = tmp / "archive.zip"
        try:
            get_file(uri, str(archive), options)
        except FileNotFoundError:
            raise StorageError(f"{uri}: not found in storage") from None
        except OSError as exc:
            raise StorageError(f"cannot fetch {uri}: {exc}") from None
        unpacked = tmp / "unpacked"
        try:
            extract(archive, unpacked, (options or StorageOptions.from_env()).unpack)
        except ArchiveError as exc:
            raise StorageError(f"cannot import {uri}: {exc}") from None
        moves: list[tuple[Path, Path]] = []
        if (unpacked / name).exists():
            moves.append((unpacked / name, target))
            if extension == "dim" and name.endswith(".dim"):
                data = unpacked / (name[:-4] + ".data")
                if data.exists():
                    moves.append((data, workdir / data.name))
        else:
            moves.append((unpacked, target))
        for _, dest in moves:
            if dest.exists():
                raise StorageError(f"cannot import {uri}: {dest} already exists")
        for src, dest in moves:
            os.replace(src, dest)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def delete_output(uri: str, options: StorageOptions | None = None) -> bool:
    """Delete a stored output (and its verification sidecar); "not found" is tolerated (False)."""
    try:
        deleted = delete(uri, options)
    except FileNotFoundError:
        return False
    try:
        delete(uri + VERIFIED_SUFFIX, options)
    except (FileNotFoundError, OSError):
        pass
    return deleted


VERIFIED_SUFFIX = ".verified.json"
