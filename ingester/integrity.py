"""What the store says is in storage, checked against storage (issue 15 item 7).

Cheap check (runs, `datasets`, `stac`): do the indexed files exist? One listing per tile folder
(`<storage>/<aoi>/<scene>/tiles/<tile>/`), through fsspec, whatever the back-end.

Full check (`ingester verify AOI`): every stored product of a DONE scene (`CopyProductToStorage`) is
compared with its verification sidecar and the catalogue's size/checksum, and every indexed output of
a DONE tile with the size and BLAKE3 digest recorded when it was stored (outputs indexed before those
were recorded: existence only). The jobs whose files are missing or damaged are set back through the
workflow (`workflow.rebuild`) so that the next run rebuilds them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from ingester import storage
from ingester.config import Settings
from ingester.store import Store, TileRow, host_name, now_text


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # "product" or "dataset"
    uri: str
    problem: str  # missing, size, checksum, unverified
    detail: str
    scene: str  # scene source id
    tile: str  # tile source id
    scene_id: int
    tile_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("scene_id", "tile_id")}


def _folder(uri: str) -> tuple[str, str]:
    folder, _, name = uri.rstrip("/").rpartition("/")
    return folder, name


def listing(folder_uri: str, options: storage.StorageOptions | None = None) -> dict[str, int]:
    """name → size of the files directly in a storage folder (one listing; empty when it is gone)."""
    fs, path = storage.filesystem(folder_uri, options)
    try:
        fs.invalidate_cache(path)
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out = {}
    for entry in entries:
        if entry.get("type") == "directory":
            continue
        out[str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]] = int(entry.get("size") or 0)
    return out


def listings(uris: Iterable[str], options: storage.StorageOptions | None = None) -> dict[str, dict[str, int]]:
    """One listing per folder of the given URIs: folder → (name → size)."""
    return {folder: listing(folder, options) for folder in sorted({_folder(u)[0] for u in uris})}


def missing_uris(uris: Iterable[str], options: storage.StorageOptions | None = None) -> list[str]:
    """The URIs (in their order) whose file is not in storage, with one listing per folder."""
    uris = list(uris)
    seen = listings(uris, options)
    return [u for u in uris if _folder(u)[1] not in seen[_folder(u)[0]]]


def missing_datasets(store: Store, aoi: str, options: storage.StorageOptions | None = None) -> list[str]:
    """The URIs of the AOI's indexed outputs that are not in storage."""
    return missing_uris((row.uri for row in store.datasets(aoi=aoi)), options)


def missing_text(aoi: str, missing: list[str], shown: int = 5) -> str:
    more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
    return (f"AOI {aoi}: {len(missing)} indexed file(s) missing from storage: {', '.join(missing[:shown])}{more} "
            f"(`ingester verify {aoi}` sets their jobs back so that the next run rebuilds them)")


# --- the full check ----------------------------------------------------------------------------------

def _scene_storage(scene_storage_uri: str, aoi_storage: str, settings: Settings) -> str:
    return storage.resolve_storage_uri(scene_storage_uri, aoi_storage, settings)


def _check_product(uri: str, size: int | None, metadata: dict[str, Any],
                   options: storage.StorageOptions | None = None) -> tuple[str, str] | None:
    """(problem, detail) of a stored product, or None when it is sound."""
    from ingester.providers.base import expected_from_metadata
    from ingester.providers.worker import read_sidecar, stored_digest

    if size is None:
        return "missing", "not in storage"
    record = read_sidecar(uri, options)
    if not record:
        return "unverified", "its verification record (.verified.json) is missing"
    if size != record.get("size"):
        return "size", f"{size} bytes in storage, {record.get('size')} when stored"
    if record.get("rezipped"):
        algorithm, published = str(record.get("algorithm")), record.get("digest")
    else:
        expected = expected_from_metadata(metadata)
        if expected.size is not None and expected.size != size:
            return "size", f"{size} bytes in storage, {expected.size} published by the catalogue"
        algorithm = "blake3" if expected.blake3 else "md5" if expected.md5 else str(record.get("algorithm"))
        published = expected.blake3 or expected.md5 or record.get("digest")
    if algorithm not in ("blake3", "md5") or not published:
        return None
    digest = stored_digest(uri, algorithm, options)
    if digest != published:
        return "checksum", f"{algorithm.upper()} {digest}, expected {published}"
    return None


def _check_dataset(uri: str, size: int | None, extra: dict[str, Any],
                   options: storage.StorageOptions | None = None) -> tuple[str, str] | None:
    from ingester.providers.worker import stored_digest

    if size is None:
        return "missing", "not in storage"
    stored = extra.get("stored") or {}
    if not isinstance(stored, dict) or "size" not in stored:
        return None  # indexed before sizes were recorded: existence is all we can check
    if size != stored["size"]:
        return "size", f"{size} bytes in storage, {stored['size']} when stored"
    if stored.get("blake3"):
        digest = stored_digest(uri, "blake3", options)
        if digest != stored["blake3"]:
            return "checksum", f"BLAKE3 {digest}, expected {stored['blake3']}"
    return None


def verify(store: Store, aoi: str, settings: Settings) -> tuple[list[Problem], dict[str, int]]:
    """Every stored product of the AOI's DONE scenes and every output of its DONE tiles, checked (no
    write); returns the problems and how many products and datasets were checked."""
    from ingester.ingest import aoi_storage
    from ingester.naming import is_copy_graph

    row = store.require_aoi(aoi)
    root = aoi_storage(row.settings, settings)
    products: list[tuple[str, int, str, str, dict[str, Any]]] = []  # uri, scene id, scene, tile, metadata
    for scene_row in store.scene_rows(row.id, status="DONE"):
        scene = store.scene(scene_row.id)
        if not is_copy_graph(scene.graph_name):
            continue
        names = [t.source_id for t in store.tile_rows(row.id, scene_id=scene_row.id)] or [scene.source_id]
        where = _scene_storage(scene.storage_uri, root, settings)
        for tile in names:
            prefix = storage.tile_prefix(where, aoi, scene.source_id, tile)
            products.append((storage.join_uri(prefix, f"{scene.source_id}.zip"), scene_row.id, scene.source_id,
                             tile, scene.metadata))
    tiles: dict[int, TileRow | None] = {}
    for d in store.datasets(aoi=aoi):
        if d.tile_id is not None and d.tile_id not in tiles:
            tiles[d.tile_id] = store.tile_row(d.tile_id)
    datasets = [d for d in store.datasets(aoi=aoi) if d.tile_id is not None
                and (t := tiles.get(d.tile_id)) is not None and t.status == "DONE"]
    options = storage.StorageOptions.of(settings)
    seen = listings([p[0] for p in products] + [d.uri for d in datasets], options)

    def size_of(uri: str) -> int | None:
        folder, name = _folder(uri)
        return seen[folder].get(name)

    problems: list[Problem] = []
    for uri, scene_id, scene_name, tile, metadata in products:
        found = _check_product(uri, size_of(uri), metadata, options)
        if found:
            problems.append(Problem("product", uri, found[0], found[1], scene_name, tile, scene_id, None))
    for d in datasets:
        tile_row = tiles.get(d.tile_id) if d.tile_id is not None else None
        found = _check_dataset(d.uri, size_of(d.uri), d.extra, options)
        if found and tile_row is not None:
            problems.append(Problem("dataset", d.uri, found[0], found[1], tile_row.scene_source_id,
                                    tile_row.source_id, tile_row.scene_id, tile_row.id))
    return problems, {"products": len(products), "datasets": len(datasets)}


def set_back(store: Store, aoi: str, problems: list[Problem], settings: Settings) -> dict[str, list[str]]:
    """Set the jobs of the problems back through the workflow, in one transaction that holds off any
    run (LockedError, exit 3, while one holds the AOI): a product's scene and an output's tile. Each
    change is written to the job's history. Returns the source ids set back."""
    from ingester.coordinator import check_lock
    from ingester.workflow import Policy, rebuild

    done: dict[str, list[str]] = {"scenes": [], "tiles": []}
    with store.transaction():
        check_lock(store, aoi, settings.lease_seconds)
        row = store.require_aoi(aoi)
        policy = Policy(int(row.settings.get("retry_count", 0)), settings.retry_backoff,
                        settings.max_temporary_retries)
        jobs: dict[tuple[str, int], tuple[str, list[Problem]]] = {}
        for p in problems:
            key = ("scene", p.scene_id) if p.kind == "product" else ("tile", p.tile_id or 0)
            name = p.scene if p.kind == "product" else p.tile
            jobs.setdefault(key, (name, []))[1].append(p)
        for (kind, job_id), (name, found) in sorted(jobs.items(), key=lambda kv: (kv[0][0] != "scene", kv[0][1])):
            if store.one(f"SELECT status FROM {kind} WHERE id = ?", (job_id,)) != "DONE":
                continue
            message = "ingester verify: " + "; ".join(f"{p.uri}: {p.problem} ({p.detail})" for p in found)
            status = rebuild(store, kind, job_id, policy, message)
            attempts = store.one(f"SELECT attempts FROM {kind} WHERE id = ?", (job_id,))
            now = now_text()
            store.execute("INSERT INTO job_attempt (kind, job_id, aoi_id, attempt, run_id, host, pid, worker, "
                          "started_at, finished_at, outcome, status, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                          (kind, job_id, row.id, attempts, "verify", host_name(), os.getpid(), "",
                           now, now, "manual", status, message))
            done["scenes" if kind == "scene" else "tiles"].append(name)
    return done


__all__ = ["Problem", "listing", "missing_uris", "missing_datasets", "missing_text", "verify", "set_back"]
