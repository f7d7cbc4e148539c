"""Tile inventory: Sentinel-1 bursts from annotation files, and tile = scene for the other missions.

Entry point: `make_tiles`. Sentinel-1 burst parsing, ESA burst ids, annotation sources and
previous/reference chaining live in the sub-modules of this package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ingester.config import Settings
from ingester.errors import TilingError
from ingester.naming import is_copy_graph
from ingester.payload import Payload
from ingester.scenes import Scene, Tile
from ingester.tiling.result import NO_ANNOTATION, TilingResult

__all__ = ["NO_ANNOTATION", "TilingResult", "make_tiles", "require_annotations", "tile_step", "uses_bursts"]

if TYPE_CHECKING:
    from ingester.http.clients import Clients




def require_annotations(scenes: Sequence[Scene], result: TilingResult) -> None:
    """The rule of `ingester tiles` and `ingester aoi --scenes` (and a searching `aoi`): when no
    annotation source has any of the scenes, nothing can be tiled, and saying "0 tiles" with exit 0
    would hide a misconfiguration (annotations_urls, INGESTER_ANNOTATION_SOURCES, CDSE settings or
    credentials). A TilingError (exit 1), before anything is written; some scenes missing is a warning."""
    missing = [(sid, reason) for sid, reason in result.skipped if reason.startswith(NO_ANNOTATION)]
    if scenes and missing and len(missing) == len(scenes):
        example = missing[0][1][len(NO_ANNOTATION):].strip(" ()")
        raise TilingError(f"no annotation found for any of the {len(scenes)} scenes; nothing written (check "
                          "annotations_urls, INGESTER_ANNOTATION_SOURCES, the INGESTER_CDSE_* settings and credentials)"
                          f"; for {missing[0][0]}: {example}")


def uses_bursts(payload: Payload) -> bool:
    """Sentinel-1 is split into bursts, unless its scene graph just copies the product."""
    return payload.constellation == "sentinel1" and not is_copy_graph(payload.scene_graph_name)


def scene_tiles(scene: Scene, payload: Payload) -> list[Tile]:
    """One tile per scene (tile = scene): no previous, no reference
    (docs/bursts.md, "When scenes are split into bursts")."""
    return [
        Tile(
            source_id=scene.source_id,
            scene_id=scene.source_id,
            date=scene.date,
            wkt=scene.wkt,
            graph_name=payload.tile_graph_name,
            is_retriable=payload.is_retriable,
        )
    ]


def make_tiles(
    payload: Payload,
    scenes: Sequence[Scene],
    settings: Settings,
    existing: Sequence[Tile] = (),
    clients: Clients | None = None,
) -> TilingResult:
    """Split scenes into tiles and chain them; `existing` are the AOI's tiles already in the store.
    `clients`: the command's HTTP clients (annotations from CDSE: one login per command)."""
    if uses_bursts(payload):
        from ingester.tiling.inventory import burst_inventory

        return burst_inventory(payload, scenes, settings, existing, clients=clients)
    out = []
    for scene in scenes:
        copy = dataclasses.replace(scene, tiles=scene_tiles(scene, payload))
        out.append(copy)
    return TilingResult(out)


def tile_step(payload: Payload, scenes: Sequence[Scene], settings: Settings, existing: Sequence[Tile] = (),
              clients: Clients | None = None) -> TilingResult:
    """The tile step of `ingester tiles` and of `ingester aoi` (with `--scenes`, or searching): the
    scenes (those not yet in the AOI) → tiles, chained onto the AOI's `existing` tiles; when no
    annotation source has any of them, a TilingError (exit 1) before anything is written. `clients`:
    the command's HTTP clients (annotations from CDSE: one login per command)."""
    result = make_tiles(payload, scenes, settings, existing=existing, clients=clients)
    require_annotations(scenes, result)
    return result
