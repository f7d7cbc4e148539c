"""The default scene worker of `ingester aoi` ("ingester.providers.worker:run_scene_job").

A scene job: fetch the product through the provider chain into the job's work directory (unless
it is already verified in storage), then run the scene graph. `CopyProductToStorage` stores the
verified product as `<scene>.zip` under `<storage>/<aoi>/<scene>/tiles/<tile>/` for every tile;
any other graph is run by `ingester.graph.worker.run_scene_graph` on the unpacked product.

A product that another scene graph processes is kept, verified, in the work folder until the scene
job succeeds (`providers.cache`): a processing failure never makes a later attempt download it again.

"Verified in storage" is recorded by a sidecar `<scene>.zip.verified.json` (size, checksum algorithm
and digest, what was compared with the catalogue, provider, `rezipped` for folder products zipped
here), written after the zip: a product whose sidecar exists, whose stored size matches it and whose
digest matches the catalogue's (for a rezipped product: the sidecar's own) is not fetched again
(`is_verified_in_storage`). The work directory is always deleted.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

from ingester import storage
from ingester.config import Settings
from ingester.errors import StorageError
from ingester.failures import failure_result, os_error
from ingester.http.checksums import Verified, hash_file
from ingester.http.clients import Clients
from ingester.http.transfer import TransferProgress
from ingester.job_context import current as current_job
from ingester.jobs import JobResult, SceneJob
from ingester.naming import is_copy_graph
from ingester.providers import cache
from ingester.providers.chain import fetch_product
from ingester.providers.progress import default_progress
from ingester.providers.stored import is_verified_in_storage, read_sidecar, write_sidecar
from ingester.providers.unpack import Limits, check_folder, extract, list_members
from ingester.storage import StorageOptions, check_name, join_uri, tile_prefix


def tile_ids(job: SceneJob) -> list[str]:
    """The scene's tiles; a scene without tiles is its own single tile (S2, Landsat, …)."""
    return [t.source_id for t in job.scene.tiles] or [job.scene.source_id]


def product_uris(job: SceneJob) -> list[str]:
    name = check_name("scene", job.scene.source_id)
    return [join_uri(tile_prefix(job.storage_uri, job.aoi, name, tile), f"{name}.zip") for tile in tile_ids(job)]


def _as_zip(path: Path, name: str, verified: Verified | None, workdir: Path,
            limits: Limits | None = None) -> tuple[Path, dict[str, Any]]:
    """The product as a checked `<scene>.zip` and the record of its verification. A folder product
    (local or bucket `.SAFE`) is zipped here: its record says `rezipped`, and its digest is ours."""
    if path.is_dir():
        check_folder(path)  # no symbolic link or special file in what we store
        target = workdir / f"{name}.zip"
        storage.zip_tree([(str(path), path.name)], str(target))
        digest = hash_file(str(target), "blake3").hexdigest()
        record = Verified(str(target), target.stat().st_size, "blake3", digest, "none").as_dict()
        return target, {**record, "rezipped": True}
    list_members(path, limits)  # refuse empty, broken or unsafe archives before storing them
    if verified is None:
        digest = hash_file(str(path), "blake3").hexdigest()
        verified = Verified(str(path), path.stat().st_size, "blake3", digest, "none")
    return path, verified.as_dict()


def _product_folder(path: Path, workdir: Path, limits: Limits | None = None) -> Path:
    """The unpacked product in the work directory (`<workdir>/<scene>.SAFE`, as the original's
    providers leave it): a zip is extracted safely next to itself, then deleted; its single top entry
    is the product (several top entries: the work directory itself)."""
    if path.is_dir() or not zipfile.is_zipfile(path):
        return path
    archive = path.rename(path.with_name(f".{path.name}.unpacking"))
    entries = extract(archive, path.parent, limits)
    archive.unlink(missing_ok=True)
    return entries[0] if len(entries) == 1 else path.parent


def run_scene_job(job: SceneJob, settings: Settings, progress: TransferProgress | None = None,
                  clients: Clients | None = None) -> JobResult:
    """Download the scene's product (verified) and run the scene graph; never raises.

    Run by an executor, the job's context gives the tokens handed with it and the progress queue; the
    job's HTTP sessions (`clients`, made from that context when not given) are closed at its end."""
    workdir = Path(job.workdir)
    context = current_job()
    own_clients = context.job_clients() if clients is None else None
    own_progress = default_progress(context.progress_events) if progress is None else None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        name = check_name("scene", job.scene.source_id)
        uris = product_uris(job)
        job_clients = clients if clients is not None else own_clients
        assert job_clients is not None
        reporter = progress if progress is not None else own_progress
        if is_copy_graph(job.scene.graph_name):
            return _copy_to_storage(job, settings, name, uris, workdir, reporter, job_clients)
        return _run_graph(job, settings, name, uris, workdir, reporter, job_clients)
    except BaseException as exc:  # noqa: BLE001 - a worker reports, it does not crash the pool
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return _result_of(exc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if own_clients is not None:
            own_clients.close()
        if own_progress is not None:
            own_progress.close()


def _copy_to_storage(job: SceneJob, settings: Settings, name: str, uris: list[str], workdir: Path,
                     progress: TransferProgress | None, clients: Clients) -> JobResult:
    options = StorageOptions.of(settings)
    missing = [u for u in uris if not is_verified_in_storage(u, job.scene.metadata, options)]
    if not missing:
        return JobResult.done(f"{name}: already verified in storage ({len(uris)} tile(s)); nothing downloaded",
                              details={"downloaded": False, "stored": uris})
    kept = cache.kept_product(settings, job.aoi, name, job.scene.metadata)
    record = read_sidecar(str(kept)) if kept else None
    if kept and record:  # an earlier attempt downloaded and verified it, then could not store it
        zip_path, provider = cache.place_kept(kept, workdir), str(record.get("provider") or "")
        record = {**record, "scene": name}
    else:
        fetched = fetch_product(job.scene, workdir, settings, progress=progress, graph_dirs=job.graph_dirs,
                                clients=clients)
        zip_path, record = _as_zip(fetched.path, name, fetched.verified, workdir, options.unpack)
        record.update({"scene": name, "provider": fetched.provider})
        provider, kept = fetched.provider, None
    for uri in missing:
        try:
            storage.put_file(str(zip_path), uri, options)
            write_sidecar(uri, record, workdir, options)  # last: the sidecar is what says "verified"
        except OSError as exc:
            if kept is None and zip_path.is_file() and not record.get("rezipped"):
                cache.keep_product(settings, job.aoi, name, zip_path, record)  # the next attempt stores it
            raise StorageError(f"{name}: cannot write the product to storage {uri}: {os_error(exc)}") from exc
    cache.forget_product(settings, job.aoi, name)
    if kept is not None:
        return JobResult.done(f"{name}: product verified by an earlier attempt (kept in the work folder, not "
                              f"downloaded again); stored in {len(missing)} tile(s)",
                              details={"downloaded": False, "provider": provider, "stored": missing, **record})
    if record.get("rezipped"):
        checked = "folder product zipped here: the catalogue's size and checksums do not apply"
    elif record["checked"] != "none":
        checked = record["checked"]
    else:
        checked = "unverified: no size or checksum published"
    return JobResult.done(
        f"{name}: downloaded from {provider} ({record['size']} bytes, {checked}); "
        f"stored in {len(missing)} tile(s)",
        details={"downloaded": True, "provider": provider, "stored": missing, **record})


def _run_graph(job: SceneJob, settings: Settings, name: str, uris: list[str], workdir: Path,
               progress: TransferProgress | None, clients: Clients) -> JobResult:
    try:
        from ingester.graph.worker import run_scene_graph
    except ImportError as exc:
        return JobResult("error", f"{name}: graph {job.scene.graph_name!r} needs the graph engine "
                                  f"(ingester.graph.worker.run_scene_graph), which is not available: {exc}")
    options = StorageOptions.of(settings)
    stored = next((u for u in uris if is_verified_in_storage(u, job.scene.metadata, options)), None)
    kept = None if stored else cache.kept_product(settings, job.aoi, name, job.scene.metadata)
    if stored:
        local = workdir / f"{name}.zip"
        storage.get_file(stored, str(local), options)
        product, provider = _product_folder(local, workdir, options.unpack), "storage"
    elif kept:
        product = _product_folder(cache.place_kept(kept, workdir), workdir, options.unpack)
        provider = "an earlier attempt (kept in the work folder, not downloaded again)"
    else:
        fetched = fetch_product(job.scene, workdir, settings, progress=progress, graph_dirs=job.graph_dirs,
                                clients=clients)
        if fetched.path.is_file():  # kept, verified, for the later attempts of this scene
            zip_path, record = _as_zip(fetched.path, name, fetched.verified, workdir, options.unpack)
            cache.keep_product(settings, job.aoi, name, zip_path, {**record, "scene": name,
                                                                    "provider": fetched.provider})
        product, provider = _product_folder(fetched.path, workdir, options.unpack), fetched.provider
    result = run_scene_graph(job, product, settings)
    if result.outcome == "done":
        cache.forget_product(settings, job.aoi, name)
    if result.outcome == "done" and not result.message:
        return JobResult.done(f"{name}: product from {provider}; graph {job.scene.graph_name} done",
                              outputs=result.outputs, log_path=result.log_path, details=result.details)
    return result


def _result_of(exc: BaseException) -> JobResult:
    """A scene job's failure as its outcome (ingester.failures: the same words as a tile job's)."""
    return failure_result(exc)


__all__ = ["run_scene_job", "is_verified_in_storage", "product_uris"]
