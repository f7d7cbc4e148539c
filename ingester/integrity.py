"""What the store says is in storage, checked against storage (issue 15 item 7).

What the AOI is supposed to keep (`expected_files`, one rule for both checks): every indexed output of
its tiles, and the product zip a `CopyProductToStorage` scene stored in each of its tile folders *unless
the tile graph deletes it* once done with it (an out-file `__product__` with action `to_delete` whose
condition held, as `ExtractS2Bands` and `ExtractLandsatBands` do after a successful extraction, or after
a fatal failure when the graph says so). A product deleted by design is never "missing".

Cheap check (runs; `datasets` and `stac` for the outputs): do those files exist? One listing per tile folder
(`<storage>/<aoi>/<scene>/tiles/<tile>/`), through fsspec, whatever the back-end.

Full check (`ingester verify AOI`): every kept product of a DONE scene is compared with its
verification sidecar and the catalogue's size/checksum, and every indexed output of a DONE tile with
the size and BLAKE3 digest recorded when it was stored (outputs indexed before those were recorded:
existence only). The jobs whose files are missing or damaged are set back through the workflow
(`workflow.rebuild`) so that the next run rebuilds them; a tile set back whose graph reads a product
that was deleted by design sets that product's scene back too (its product is stored again, then the
tile runs and deletes it again), so a rebuild always has its input and never repeats itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ingester import storage
from ingester.config import Settings
from ingester.graph.model import Graph, OutFile
from ingester.store import Store, TileRow


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # "product" or "dataset"
    uri: str
    problem: str  # missing, size, checksum, unverified; needed: deleted by design, needed for a rebuild
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


def missing_text(aoi: str, missing: list[str], shown: int = 5, what: str = "indexed") -> str:
    more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
    return (f"AOI {aoi}: {len(missing)} {what} file(s) missing from storage: {', '.join(missing[:shown])}{more} "
            f"(`ingester verify {aoi}` sets their jobs back so that the next run rebuilds them)")


# --- the full check ----------------------------------------------------------------------------------

def _check_product(uri: str, size: int | None, metadata: dict[str, Any],
                   options: storage.StorageOptions | None = None) -> tuple[str, str] | None:
    """(problem, detail) of a stored product, or None when it is sound."""
    from ingester.providers.base import expected_from_metadata
    from ingester.providers.stored import read_sidecar, stored_digest

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
    from ingester.providers.stored import stored_digest

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


@dataclasses.dataclass(frozen=True)
class StoredProduct:
    """A product zip a copy graph stored in a tile folder."""

    uri: str
    scene_id: int
    scene: str  # scene source id
    tile: str  # tile source id (the scene's own id for a scene without tiles)
    tile_id: int | None
    metadata: dict[str, Any]


@dataclasses.dataclass
class Expected:
    """What an AOI is supposed to keep in storage (see the module doc)."""

    products: list[StoredProduct]  # kept products of DONE copy-graph scenes
    deleted: dict[int, StoredProduct]  # tile id → its product, deleted by design by a tile graph
    needs_product: dict[int, list[int]]  # tile id → the tiles (T0/T1/T2) whose product its graph imports


def _deletes_product(out: OutFile, scene_ids: tuple[str, str, str], status: str) -> bool:
    """Whether a `__product__` `to_delete` out-file was acted on by a tile job that ended in `status`
    (the rule of graph.run.Runner._keep: after success, or after a failure that was fatal, which a
    FAILED tile's was). A file condition counts as held: the product was the job's input."""
    from ingester.graph import conditions as cond

    def held(condition: str) -> bool:
        kind = cond.kind(condition)
        if kind == "tile":
            return cond.tile_condition(condition, scene_ids)
        return condition == "file_exists"

    if status == "DONE":
        return cond.kind(out.condition) != "error" and held(out.condition)
    if status != "FAILED":
        return False
    if out.error_condition and not cond.error_condition(out.error_condition, True, True):
        return False
    if cond.kind(out.condition) == "error":
        return cond.error_condition(out.condition, True, True)
    return bool(out.error_condition) and held(out.condition)


def expected_files(store: Store, aoi: str, settings: Settings) -> Expected:
    """The products the AOI keeps (DONE copy-graph scenes, minus those their tile graph deleted by
    design) and which tiles need which product to be rebuilt. A tile graph that cannot be loaded any
    more deletes nothing (its product is expected)."""
    from ingester.aoi_config import aoi_storage, graph_dirs
    from ingester.errors import GraphError
    from ingester.graph.loader import load_graph
    from ingester.naming import is_copy_graph
    from ingester.storage import PRODUCT_LAYER

    row = store.require_aoi(aoi)
    root = aoi_storage(row.settings, settings)
    dirs = graph_dirs(row.settings)
    tiles = store.tile_rows(row.id)
    by_id = {t.id: t for t in tiles}
    by_scene: dict[int, list[TileRow]] = {}
    for t in tiles:
        by_scene.setdefault(t.scene_id, []).append(t)
    graph_names = store.tile_graph_names(row.id)
    graphs: dict[str, Graph | None] = {}

    def graph_of(name: str) -> Graph | None:
        if name not in graphs:
            try:
                graphs[name] = load_graph(name, dirs) if name.strip() else None
            except GraphError:
                graphs[name] = None
        return graphs[name]

    deleted_tiles: set[int] = set()
    needs: dict[int, list[int]] = {}
    for tile in tiles:
        graph = graph_of(str(graph_names.get(tile.id) or ""))
        if graph is None:
            continue
        triple = [tile, by_id.get(tile.prev or -1) or tile, by_id.get(tile.ref or -1) or tile]
        scene_ids = (triple[0].scene_source_id, triple[1].scene_source_id, triple[2].scene_source_id)
        for index, in_files in enumerate(graph.in_files):
            if any(f.layer == PRODUCT_LAYER for f in in_files):
                needs.setdefault(tile.id, []).append(triple[index].id)
        for index, outs in enumerate(graph.out_files):
            for out in outs:
                if out.layer == PRODUCT_LAYER and out.action == "to_delete" \
                        and _deletes_product(out, scene_ids, tile.status):
                    deleted_tiles.add(triple[index].id)
    products: list[StoredProduct] = []
    deleted: dict[int, StoredProduct] = {}
    for scene_row in store.scene_rows(row.id, status="DONE"):
        scene = store.scene(scene_row.id)
        if not is_copy_graph(scene.graph_name):
            continue
        where = storage.resolve_storage_uri(scene.storage_uri, root, settings)
        own: list[tuple[str, int | None]] = [(t.source_id, t.id) for t in by_scene.get(scene_row.id, [])]
        for tile_name, tile_id in own or [(scene.source_id, None)]:
            prefix = storage.tile_prefix(where, aoi, scene.source_id, tile_name)
            uri = storage.join_uri(prefix, f"{scene.source_id}.zip")
            product = StoredProduct(uri, scene_row.id, scene.source_id, tile_name, tile_id, scene.metadata)
            if tile_id is not None and tile_id in deleted_tiles:
                deleted[tile_id] = product
            else:
                products.append(product)
    return Expected(products, deleted, needs)


def missing_files(store: Store, aoi: str, settings: Settings) -> list[str]:
    """The URIs of what the AOI keeps (the indexed outputs of its DONE tiles and the products of its
    DONE scenes) that are not in storage: the run-time check, with the rule `verify` uses. The files of
    jobs not DONE (set back by `verify`, waiting to be retried) are left out: the run that rebuilds them
    is the cure, not news."""
    expected = expected_files(store, aoi, settings)
    done = {t.id for t in store.tile_rows(store.require_aoi(aoi).id, status="DONE")}
    kept = [d.uri for d in store.datasets(aoi=aoi) if d.tile_id in done]
    return missing_uris([*kept, *(p.uri for p in expected.products)], storage.StorageOptions.of(settings))


def verify(store: Store, aoi: str, settings: Settings) -> tuple[list[Problem], dict[str, int]]:
    """Every product the AOI keeps (DONE scenes) and every output of its DONE tiles, checked (no
    write); returns the problems and how many products and datasets were checked. A tile with a
    problem whose graph reads a product deleted by design adds that product (`needed`), so that its
    scene is set back with it and stores the product again."""
    expected = expected_files(store, aoi, settings)
    products = expected.products
    tiles: dict[int, TileRow | None] = {}
    for d in store.datasets(aoi=aoi):
        if d.tile_id is not None and d.tile_id not in tiles:
            tiles[d.tile_id] = store.tile_row(d.tile_id)
    datasets = [d for d in store.datasets(aoi=aoi) if d.tile_id is not None
                and (t := tiles.get(d.tile_id)) is not None and t.status == "DONE"]
    options = storage.StorageOptions.of(settings)
    seen = listings([p.uri for p in products] + [d.uri for d in datasets], options)

    def size_of(uri: str) -> int | None:
        folder, name = _folder(uri)
        return seen[folder].get(name)

    problems: list[Problem] = []
    for p in products:
        found = _check_product(p.uri, size_of(p.uri), p.metadata, options)
        if found:
            problems.append(Problem("product", p.uri, found[0], found[1], p.scene, p.tile, p.scene_id, None))
    needed: dict[str, StoredProduct] = {}
    for d in datasets:
        tile_row = tiles.get(d.tile_id) if d.tile_id is not None else None
        found = _check_dataset(d.uri, size_of(d.uri), d.extra, options)
        if found and tile_row is not None:
            problems.append(Problem("dataset", d.uri, found[0], found[1], tile_row.scene_source_id,
                                    tile_row.source_id, tile_row.scene_id, tile_row.id))
            for source in expected.needs_product.get(tile_row.id, []):
                if source in expected.deleted:
                    needed.setdefault(expected.deleted[source].uri, expected.deleted[source])
    seen.update(listings((u for u in needed if _folder(u)[0] not in seen), options))
    for uri, p in needed.items():
        if size_of(uri) is None:  # (already stored again: its tile's next run reads it)
            problems.append(Problem("product", uri, "needed", "deleted by design by its tile graph after "
                                    "processing; stored again to rebuild the tile's outputs", p.scene, p.tile,
                                    p.scene_id, None))
    return problems, {"products": len(products), "datasets": len(datasets)}


def set_back(store: Store, aoi: str, problems: list[Problem], settings: Settings,
             holder: str | None = None) -> dict[str, list[str]]:
    """Set the jobs of the problems back through the workflow, in one transaction that holds off any
    run (LockedError, exit 3, while another holds the AOI; `holder`: the caller's own run id, when it
    holds the lock): a product's scene and an output's tile. Each change is written to the job's
    history. Returns the source ids set back."""
    from ingester.locks import check_lock
    from ingester.workflow import Policy, note_manual_changes, rebuild

    done: dict[str, list[str]] = {"scenes": [], "tiles": []}
    with store.transaction():
        row = store.require_aoi(aoi)
        if holder is None or row.lock_run != holder:
            check_lock(store, aoi, settings.lease_seconds)
        policy = Policy(int(row.settings.get("retry_count", 0)), settings.retry_backoff,
                        settings.max_temporary_retries)
        before = store.job_statuses(row.id)
        messages: dict[tuple[str, int], str] = {}
        jobs: dict[tuple[str, int], tuple[str, list[Problem]]] = {}
        for p in problems:
            key = ("scene", p.scene_id) if p.kind == "product" else ("tile", p.tile_id or 0)
            name = p.scene if p.kind == "product" else p.tile
            jobs.setdefault(key, (name, []))[1].append(p)
        for (kind, job_id), (name, found) in sorted(jobs.items(), key=lambda kv: (kv[0][0] != "scene", kv[0][1])):
            if store.job_status(kind, job_id) != "DONE":
                continue
            message = "ingester verify: " + "; ".join(f"{p.uri}: {p.problem} ({p.detail})" for p in found)
            rebuild(store, kind, job_id, policy, message)
            messages[(kind, job_id)] = message
            done["scenes" if kind == "scene" else "tiles"].append(name)
        note_manual_changes(store, row.id, before, holder or "verify", "ingester verify: waits again for a job "
                            "set back (its stored files are missing or damaged)", messages)
    return done


__all__ = ["Problem", "Expected", "StoredProduct", "expected_files", "listing", "missing_uris", "missing_datasets",
           "missing_files", "missing_text", "verify", "set_back"]
