"""Ingesting an area (docs/workflow.md, "Ingesting an area"): validate everything, then write records,
scenes and tiles in one transaction (which also takes the AOI's lock).

`prepare` reads and checks (no write); `commit` writes. Bad input raises an InputError (exit 2)
before anything is written.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingester.aoi_config import aoi_settings, aoi_storage, effective_storage, storage_given, storage_key
from ingester.config import Settings
from ingester.errors import (
    InputError,
    PayloadError,
    ReprocessedCopyWarning,
    ScenesFileError,
    ScenesFileWarning,
    StoreError,
    TilingWarning,
)
from ingester.locks import acquire_lock
from ingester.payload import Payload
from ingester.records import check_record_tags, find_or_create_record, resolve_layers, trusted_record
from ingester.scenes import Scene, Tile, parse_scenes, read_scenes, read_scenes_document
from ingester.storage import resolve_storage_uri
from ingester.store import Store, dumps, monotonic_now, now_text, scene_data, tile_data
from ingester.times import format_time
from ingester.workflow import FAILED, NEW, PENDING

if TYPE_CHECKING:
    from ingester.http.clients import Clients


@dataclasses.dataclass
class Plan:
    payload: Payload
    scenes: list[Scene]  # new scenes, with tiles, sorted by date
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (scene id, reason)
    source: str = ""  # "tiles file", "scenes file", "catalogue"
    layer_formats: dict[str, str] = dataclasses.field(default_factory=dict)  # layer → dformat its graph indexes
    storage: str = ""  # the AOI's storage (resolved), fixed when the AOI is created
    order: dict[str, Any] | None = None  # permission and budget to order (ordering.approve), kept with the AOI


@dataclasses.dataclass
class IngestResult:
    aoi_id: int
    scenes: int
    tiles: int
    records_created: int
    records_reused: int
    skipped: list[tuple[str, str]]


def check_aoi_settings(store: Store, payload: Payload, storage: str = "", storage_origin: str = "") -> None:
    """An existing AOI keeps its storage and its layers: a payload (or INGESTER_STORAGE_URI, when the
    payload has no storage_uri) that changes them is refused (its tiles already ingested were stored
    and indexed with the old ones). retry_count, graph_config and record tags may change: retry_count
    gives the budget of the scenes and tiles ingested from now on (existing jobs keep theirs until a
    manual retry), graph_config applies to the jobs not run yet."""
    row = store.aoi(payload.name)
    if row is None:
        return
    old = row.settings
    differences = []
    if old.get("storage") and storage:
        if storage_key(old["storage"]) != storage_key(storage):
            differences.append(f"storage {old['storage']} → {storage} (from {storage_origin or 'the settings'})")
    elif (old.get("storage_uri") or "") != (payload.storage_uri or ""):  # an AOI from before storage was fixed
        differences.append(f"storage_uri {old.get('storage_uri') or '(default)'!r} → "
                           f"{payload.storage_uri or '(default)'!r}")
    new_layers = {k: [v.variable, v.instance] for k, v in payload.layers.items()}
    old_layers = old.get("layers") or {}
    if old_layers != new_layers:
        def fmt(layers: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v[0]}/{v[1]}" for k, v in sorted(layers.items())) or "(none)"
        differences.append(f"layers {fmt(old_layers)} → {fmt(new_layers)}")
    if differences:
        where = payload.path or "the payload"
        raise PayloadError(f"{where}: the AOI {payload.name!r} already exists with other settings: "
                           f"{'; '.join(differences)}. Keep the AOI's settings, or ingest under another name")


def _refuse_empty(scenes: list[Scene], origin: str, what: str) -> None:
    """A file without any scene is a mistake to report (an empty search written out, the wrong file), not
    an AOI to create empty: exit 2, nothing written."""
    if not scenes:
        raise ScenesFileError(f"{origin}: no scene in this {what} (`features` is empty): nothing to ingest, "
                              "nothing was written")


def _check_aoi(scenes: list[Scene], payload: Payload, origin: str) -> None:
    for i, scene in enumerate(scenes):
        if scene.aoi != payload.name:
            raise ScenesFileError(f"{origin}: features[{i}].properties.aoi: {scene.aoi!r} differs from the payload "
                                  f"name {payload.name!r} (this file is for another AOI)")


def _drop_outside_aoi(scenes: list[Scene], payload: Payload, origin: str, text: str) -> list[Scene]:
    """The scenes of a scenes file whose footprint intersects the AOI: a catalogue search never returns
    the others (0 % coverage, nothing to process), so a hand edit that moved a footprint away is skipped
    with a warning naming the scene and its line; no scene left is exit 2, nothing written."""
    import shapely

    from ingester.geometry import from_wkt_many
    from ingester.scenes import feature_lines

    footprints = from_wkt_many([s.wkt for s in scenes])
    known = [i for i, g in enumerate(footprints) if g is not None]
    hits = shapely.intersects(payload.aoi, [footprints[i] for i in known]) if known else []
    outside = {i for i, hit in zip(known, hits, strict=True) if not hit}
    if not outside:
        return scenes
    lines = feature_lines(text)
    for i in sorted(outside):
        where = f"line {lines[i]}" if i < len(lines) else f"features[{i}]"
        warnings.warn(ScenesFileWarning(
            f"{origin}: {where}: scene {scenes[i].source_id}: its footprint does not intersect the AOI "
            f"{payload.name!r} (0 % coverage): skipped, as a catalogue search leaves it out"), stacklevel=2)
    kept = [s for i, s in enumerate(scenes) if i not in outside]
    if not kept:
        raise ScenesFileError(f"{origin}: no scene of this scenes file intersects the AOI {payload.name!r}: "
                              "nothing to ingest, nothing was written")
    return kept


def _check_links(scenes: list[Scene], store: Store, aoi: str, origin: str) -> None:
    """Previous/reference tiles must exist in the file or in the store and not be FAILED."""
    in_file = {t.key for s in scenes for t in s.tiles}
    stored = store.tile_status_by_key(aoi)
    for i, scene in enumerate(scenes):
        for j, tile in enumerate(scene.tiles):
            for name, link in (("previous", tile.previous), ("reference", tile.reference)):
                if link is None or link.key in in_file:
                    continue
                found = stored.get(link.key)
                where = f"{origin}: features[{i}].properties.tiles[{j}].{name}"
                if found is None:
                    raise ScenesFileError(f"{where}: scene {scene.source_id}, tile {tile.source_id}: {name} tile "
                                          f"{link.source_id} of scene {link.scene_id} is neither in the file nor in "
                                          f"the AOI {aoi!r}")
                if found[1] == FAILED:
                    raise ScenesFileError(f"{where}: scene {scene.source_id}, tile {tile.source_id}: {name} tile "
                                          f"{link.source_id} of scene {link.scene_id} (id {found[0]}) is FAILED")


def _check_cycles(scenes: list[Scene], origin: str) -> None:
    """Previous/reference links must lead back to a root: a cycle (A.previous = B and B.previous = A,
    a tile that is its own previous, a previous at a later date whose own chain comes back) leaves its
    tiles NEW forever. A tile whose reference is itself is a root (the original writes roots so)."""
    links: dict[tuple[str, str], list[tuple[str, tuple[str, str]]]] = {}
    for scene in scenes:
        for tile in scene.tiles:
            out = []
            if tile.previous is not None:
                out.append(("previous", tile.previous.key))
            if tile.reference is not None and tile.reference.key != tile.key:
                out.append(("reference", tile.reference.key))
            links[tile.key] = out
    state: dict[tuple[str, str], int] = {}  # 1: on the current path, 2: no cycle through it
    for start in links:
        if state.get(start):
            continue
        path: list[tuple[tuple[str, str], str]] = [(start, "")]
        stack = [iter(links[start])]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()[0]] = 2
                stack.pop()
                continue
            name, key = step
            if key not in links or state.get(key) == 2:
                continue
            if state.get(key) == 1:
                begin = next(i for i, (k, _) in enumerate(path) if k == key)
                cycle = [*path[begin:], (key, name)]
                text = " → ".join((f"({how}) " if how else "") + "/".join(k) for k, how in cycle)
                raise ScenesFileError(f"{origin}: the previous/reference links form a cycle: {text}; every chain "
                                      "must lead back to a root tile (previous and reference null)")
            state[key] = 1
            path.append((key, name))
            stack.append(iter(links[key]))


def _check_file_graphs(scenes: list[Scene], payload: Payload, origin: str, with_tiles: bool) -> None:
    """Graph names read from a scenes or tiles file (docs/workflow.md, "Ingesting an area": scene graph
    from the file, tile graph from the tiles file with --tiles) are loaded up front, like the payload's."""
    from ingester.graph.loader import check_graphs

    graph_dirs = (str(Path(payload.path).parent),)
    checked: set[tuple] = set()
    for i, scene in enumerate(scenes):
        tiles = list(enumerate(scene.tiles)) if with_tiles and scene.tiles else [(0, None)]
        for j, tile in tiles:
            # (a scenes file's tiles get the payload's tile graph: the scene's graph_config reaches it too)
            names = (scene.graph_name, tile.graph_name if tile else "" if with_tiles else payload.tile_graph_name)
            config = {**payload.graph_config, **scene.graph_config}
            key = (*names, tuple(sorted(config.items())))
            if key not in checked:
                check_graphs(f"{origin}: features[{i}]", *names, graph_dirs,
                             fields=("properties.data.graph_name", f"properties.tiles[{j}].data.graph_name"),
                             config=config, config_field="properties.data.graph_config")
                checked.add(key)


def already_in_aoi(store: Store, aoi: str) -> dict[str, str]:
    """Scene source id → why a scene of the input is not ingested again: it is in the AOI already, with
    its store id, its status and what to do. The store is the truth for an ingested scene (a run asks
    the catalogue again about its product when its job runs): a new file or search never changes it;
    `ingester refresh --scene ID` reads it from the catalogue again, `ingester remove --scene ID` takes
    it out so that the next `ingester aoi` ingests it anew."""
    from ingester.times import epoch_text

    now = monotonic_now()
    reasons = {}
    for source_id, scene_id, status, not_before in store.scenes_in_aoi(aoi):
        if status == PENDING and not_before > now:
            what = (f"PENDING, deferred until {epoch_text(not_before)}: a run then picks it up; "
                    f"`ingester refresh --scene {scene_id}` asks the catalogue again now")
        elif status == PENDING:
            what = "PENDING: the run picks it up"
        elif status == "RETRY":
            what = f"RETRY: `ingester retry --scene {scene_id}`"
        elif status == FAILED:
            what = (f"FAILED: `ingester retry --force --scene {scene_id}` after fixing the cause, or "
                    f"`ingester remove --scene {scene_id}` and ingest it again")
        else:
            what = status
        reasons[source_id] = f"already in the AOI (scene {scene_id}, {what})"
    return reasons


def _mark_aoi_bbox(scene: Scene, payload: Payload) -> None:
    """A scene of STAC assets keeps the WGS84 bounds of this AOI inside its footprint
    (`metadata.aoi_bbox`): `stac-assets` reads only that window of its COG assets (the AOI itself is
    not stored with the scene)."""
    if isinstance(scene.metadata.get("assets"), dict):
        from ingester.providers.cog_window import aoi_bbox

        bbox = aoi_bbox(payload.aoi, scene.wkt)
        if bbox is not None:
            scene.metadata["aoi_bbox"] = bbox


def one_processing_per_acquisition(scenes: list[Scene], stored: set[str], aoi: str
                                   ) -> tuple[list[Scene], list[tuple[str, str]]]:
    """Drop the other processings of an acquisition (naming.dedup_key): one already in the AOI is kept
    (it may be processed already), else the input's newest. A warning names both. Returns (kept, skipped)."""
    from ingester.catalogue.cdse import newest_key
    from ingester.naming import dedup_key

    in_aoi = {dedup_key(sid): sid for sid in stored}
    best: dict[str, Scene] = {}
    skipped: list[tuple[str, str]] = []
    for scene in scenes:
        if scene.source_id in stored:
            continue  # the same product: "already in the AOI" (below)
        key = dedup_key(scene.source_id)
        kept = in_aoi.get(key)
        if kept is not None:
            warnings.warn(f"{scene.source_id} is another processing of {kept}, which is already in the AOI "
                          f"{aoi}: not ingested (an acquisition is ingested once; remove {kept} from the AOI "
                          "first to ingest this one)", ReprocessedCopyWarning, stacklevel=2)
            skipped.append((scene.source_id, f"another processing of {kept} (in the AOI)"))
            continue
        other = best.get(key)
        if other is not None and other.source_id != scene.source_id:
            older, newer = (other, scene) if newest_key(scene) > newest_key(other) else (scene, other)
            warnings.warn(f"{older.source_id} is an older processing of {newer.source_id} (same file): not "
                          "ingested", ReprocessedCopyWarning, stacklevel=2)
            skipped.append((older.source_id, f"older processing of {newer.source_id}"))
            scene = newer
        best[key] = scene
    kept_ids = {id(s) for s in best.values()}
    return [s for s in scenes if s.source_id in stored or id(s) in kept_ids], skipped


def prepare(store: Store, payload: Payload, settings: Settings, scenes_file: str | None = None,
            tiles_file: str | None = None, create_layers: bool = False, *, clients: Clients | None = None) -> Plan:
    """Read and validate the input; nothing is written. `clients`: the command's HTTP clients (the
    tiling step's CDSE login is then the run's)."""
    if scenes_file and tiles_file:
        raise InputError("give either --scenes or --tiles, not both")
    from ingester.graph.loader import check_payload_graphs

    check_payload_graphs(payload)
    if not create_layers:
        resolve_layers(store, payload, create=False, formats=layer_formats(payload))  # the payload's graph
    storage, storage_origin = effective_storage(payload.storage_uri, settings)
    asked = bool((payload.storage_uri or "").strip()) or storage_given(settings)  # unset: the AOI keeps its own
    check_aoi_settings(store, payload, storage if asked else "", storage_origin)
    existing_aoi = store.aoi(payload.name)
    if existing_aoi is not None:
        storage = aoi_storage(existing_aoi.settings, settings)
    existing = already_in_aoi(store, payload.name)
    skipped: list[tuple[str, str]] = []
    if tiles_file:
        origin, source = tiles_file, "tiles file"
        scenes = read_scenes(tiles_file).scenes
        _refuse_empty(scenes, origin, "tiles file")
        _check_aoi(scenes, payload, origin)
        if scenes and not any(scene.tiles for scene in scenes):
            raise ScenesFileError(f"{origin}: no scene of this file has tiles: it is a scenes file, not a tiles "
                                  "file (give it with --scenes, or make tiles with `ingester tiles`)")
        _check_file_graphs(scenes, payload, origin, with_tiles=True)
        scenes, skipped = one_processing_per_acquisition(scenes, set(existing), payload.name)
        new = []
        for scene in scenes:
            if scene.source_id in existing:
                skipped.append((scene.source_id, existing[scene.source_id]))
            elif not scene.tiles:
                skipped.append((scene.source_id, "no tiles"))
            else:
                new.append(scene)
    else:
        if scenes_file:
            origin, source = scenes_file, "scenes file"
            text, doc = read_scenes_document(scenes_file)
            scenes = parse_scenes(doc, origin, text).scenes
            _refuse_empty(scenes, origin, "scenes file")
            _check_aoi(scenes, payload, origin)
            scenes = _drop_outside_aoi(scenes, payload, origin, text)
            _check_file_graphs(scenes, payload, origin, with_tiles=False)
        else:
            from ingester.catalogue import search

            origin, source = "catalogue", "catalogue"
            found = search(payload, settings, clients=clients).scenes
            scenes = [dataclasses.replace(s, aoi=s.aoi or payload.name) for s in found]
        scenes, skipped = one_processing_per_acquisition(scenes, set(existing), payload.name)
        fresh = []
        for scene in scenes:
            if scene.source_id in existing:
                skipped.append((scene.source_id, existing[scene.source_id]))
            else:
                fresh.append(scene)
        from ingester.tiling import tile_step

        with warnings.catch_warnings():
            warnings.simplefilter("default", TilingWarning)
            tiling = tile_step(payload, fresh, settings, store.aoi_tiles(payload.name), clients)  # as `ingester tiles`
        skipped += tiling.skipped
        new = [s for s in tiling.scenes if s.tiles]
        skipped += [(s.source_id, "no tiles") for s in tiling.scenes if not s.tiles]
    for scene in new:
        check_record_tags(payload, scene)
        if scene.record_id:  # a record named by the file must exist before anything is written
            try:
                trusted_record(store, scene)
            except InputError as exc:
                raise InputError(f"{origin}: {exc}") from None
        try:
            own = resolve_storage_uri(scene.storage_uri, payload.storage_uri, settings)
        except InputError as exc:
            raise InputError(f"{origin}: scene {scene.source_id}: {exc}") from None
        if scene.storage_uri.strip() and storage_key(own) != storage_key(storage):
            raise ScenesFileError(f"{origin}: scene {scene.source_id}: data.storage_uri {scene.storage_uri!r} is not "
                                  f"the AOI's storage {storage}: an AOI keeps one storage (leave data.storage_uri "
                                  "empty or equal to it)")
        _mark_aoi_bbox(scene, payload)
    _check_links(new, store, payload.name, origin)
    _check_cycles(new, origin)
    new.sort(key=lambda s: (s.date, s.source_id))
    return Plan(payload, new, skipped, source, layer_formats(payload, new), storage)


def layer_formats(payload: Payload, scenes: list[Scene] | None = None) -> dict[str, str]:
    """The data format each payload layer is indexed in by the tile graph(s) (see records.resolve_layers)."""
    from ingester.graph.loader import payload_layer_formats

    names = [t.graph_name for s in scenes or () for t in s.tiles]
    return payload_layer_formats(payload, names)


def commit(store: Store, plan: Plan, run_id: str, create_layers: bool = False,
           lock_stale_after: float = 300.0) -> IngestResult:
    """One transaction: take the AOI's lock, resolve layers, records, scenes, tiles, links."""
    payload = plan.payload
    created = reused = n_tiles = 0
    with store.transaction():
        now = now_text()
        aoi_id = store.create_aoi(payload.name, now)
        acquire_lock(store, payload.name, run_id, lock_stale_after)  # LockedError (exit 3): all rolled back
        if store.aoi(payload.name).settings:  # type: ignore[union-attr]  # an existing AOI: same storage, layers
            check_aoi_settings(store, payload, plan.storage)
        raced = sorted(store.scene_ids_in_aoi(payload.name) & {sc.source_id for sc in plan.scenes})
        if raced:
            raise StoreError(f"AOI {payload.name!r} changed while the input was checked: another run ingested "
                             f"{len(raced)} of these scenes (e.g. {raced[0]}); nothing was written, re-run the "
                             "command (the scenes already in the AOI are then skipped)")
        instances = resolve_layers(store, payload, create=create_layers, formats=plan.layer_formats)
        store.set_aoi_settings(payload.name, {**aoi_settings(payload, instances, plan.storage),
                                              **({"order": plan.order} if plan.order is not None else {})}, now)
        keys: dict[tuple[str, str], int] = {k: v[0] for k, v in store.tile_status_by_key(payload.name).items()
                                            if v[1] != FAILED}
        next_tile = store.next_tile_id()  # the tiles get their ids here: their links are known when inserted
        new_tiles: list[tuple[int, int, Tile]] = []
        for scene in plan.scenes:
            if scene.record_id:
                record_id, was_created = trusted_record(store, scene), False
            else:
                record_id, was_created = find_or_create_record(store, scene)
            created += was_created
            reused += not was_created
            stored = dataclasses.replace(scene, record_id=str(record_id), instances_id=dict(instances))
            try:
                scene_id = store.insert_scene(aoi_id, scene.source_id, format_time(scene.date), PENDING,
                                              payload.retry_count, record_id, scene_data(stored), dumps(scene.tags),
                                              scene.wkt, now)
            except Exception as exc:
                raise StoreError(f"scene {scene.source_id}: cannot store it: {exc}") from None
            for tile in scene.tiles:
                keys[tile.key] = next_tile
                new_tiles.append((next_tile, scene_id, tile))
                next_tile += 1
        rows = []
        for tile_id, scene_id, tile in new_tiles:
            prev = keys.get(tile.previous.key) if tile.previous else None
            ref = keys.get(tile.reference.key) if tile.reference else None
            if (tile.previous and prev is None) or (tile.reference and ref is None):
                raise StoreError(f"insert tile {tile.source_id} of {tile.scene_id}: its previous or reference tile "
                                 "is missing or FAILED (hint: check the parent tile is not FAILED)")
            rows.append((tile_id, scene_id, aoi_id, tile.source_id, NEW, payload.retry_count, tile_data(tile), now,
                         prev, ref))
        try:
            store.insert_tiles(rows)
        except Exception as exc:
            raise StoreError(f"cannot store the tiles of AOI {payload.name!r}: {exc}") from None
        n_tiles = len(rows)
    return IngestResult(aoi_id, len(plan.scenes), n_tiles, created, reused, plan.skipped)
