"""Repairs of one scene of an AOI: `refresh` (its catalogue metadata read again) and `remove` (the
scene and its tiles taken out of the AOI, chains re-linked). The caller holds the AOI's lock."""

from __future__ import annotations

import dataclasses
from typing import Any

from ingester.config import Settings
from ingester.errors import CatalogueError, HTTPError, InputError
from ingester.store import Store, monotonic_now, now_text
from ingester.workflow import fail_tile

# metadata fields a catalogue entry refreshes
REFRESHED = ("online", "size", "checksums", "product_name", "publication_date", "s3_path")


@dataclasses.dataclass
class Refreshed:
    scene_id: int
    source_id: str
    status: str
    changes: dict[str, tuple[Any, Any]]  # field → (before, now)
    due_now: bool  # a waiting (deferred or backed-off) scene was made due at once

    def to_json(self) -> dict[str, Any]:
        return {"scene_id": self.scene_id, "source_id": self.source_id, "status": self.status, "due_now": self.due_now,
                "changes": {k: {"before": v[0], "now": v[1]} for k, v in self.changes.items()}}


def _scene(store: Store, scene_id: int) -> tuple[str, str, dict[str, Any]]:
    row = store.scene_row(scene_id)
    if row is None:
        raise InputError(f"--scene {scene_id}: no scene with this id (ids from `ingester list scenes AOI`)")
    return row.source_id, row.status, store.job_data("scene", scene_id)


def refresh_scene(store: Store, scene_id: int, settings: Settings, clients: Any = None) -> Refreshed:
    """Read the scene's product from the CDSE catalogue again (Online, size, checksums, name, dates) and
    update the stored scene in one transaction; a scene waiting to be tried again is made due now.
    `clients`: the command's HTTP clients (`http.Clients`; a session of its own without them)."""
    from ingester.catalogue.cdse import entry_metadata, product_entry

    source_id, _status, data = _scene(store, scene_id)
    metadata = dict(data.get("metadata") or {})
    uuid = str(metadata.get("uuid") or "").strip()
    if metadata.get("catalogue") == "oneatlas":
        raise InputError(f"--scene {scene_id}: scene {source_id} comes from OneAtlas: refresh reads the CDSE catalogue "
                         f"only (`ingester retry --scene {scene_id}` checks its order again now)")
    if not uuid:
        raise InputError(f"--scene {scene_id}: scene {source_id} has no CDSE product id (metadata.uuid): refresh "
                         "reads the CDSE catalogue only")
    try:
        entry = product_entry(settings, uuid, clients=clients)
    except HTTPError as exc:
        raise CatalogueError(f"scene {scene_id} ({source_id}): the CDSE catalogue could not be asked: {exc}") from None
    if entry is None:
        raise CatalogueError(f"scene {scene_id} ({source_id}): product {uuid} is no longer in the CDSE catalogue "
                             f"(deleted or replaced by a reprocessing); nothing changed. `ingester remove --scene "
                             f"{scene_id}` takes it out of the AOI")
    fresh = entry_metadata(entry)
    changes = {k: (metadata.get(k), fresh[k]) for k in REFRESHED
               if fresh.get(k) not in (None, "") and metadata.get(k) != fresh[k]}
    with store.transaction():
        status = store.job_status("scene", scene_id) or _status
        if changes:
            data["metadata"] = {**metadata, **{k: v[1] for k, v in changes.items()}}
            store.set_scene_data(scene_id, data, now_text())
        due = store.make_due("scene", monotonic_now(), now_text(), job_id=scene_id)
    return Refreshed(scene_id, source_id, status, changes, bool(due))


@dataclasses.dataclass
class Removed:
    scene_id: int
    source_id: str
    status: str
    tiles: int
    relinked: list[int]  # tiles of other scenes whose previous/reference changed
    released: list[int]  # NEW tiles that became ready by it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def remove_scene(store: Store, scene_id: int) -> Removed:
    """Take the scene and its tiles out of the AOI in one transaction. Chains are re-linked as the fail
    cascade does (children take the removed tile's previous; a removed root hands the chain to its
    earliest child); the attempts of its jobs go with it. Its stored files and indexed datasets stay
    (a re-ingestion of the scene indexes into the same datasets)."""
    source_id, status, _data = _scene(store, scene_id)
    with store.transaction():
        tiles = [tid for tid, _status in store.tiles_of_scene(scene_id)]
        row = store.scene_row(scene_id)
        assert row is not None
        aoi_id = row.aoi_id
        before = store.tile_links(aoi_id, scene_id)
        released: list[int] = []
        for tile_id in tiles:
            released += fail_tile(store, tile_id, f"scene {scene_id} removed", force=True)
        store.delete_scene(scene_id, tiles)
        after = store.tile_links(aoi_id, scene_id)
    relinked = sorted(t for t in after if after[t] != before.get(t))
    return Removed(scene_id, source_id, status, len(tiles), relinked, sorted(set(released)))

