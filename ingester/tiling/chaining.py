"""Previous/reference chaining of bursts across acquisitions (docs/bursts.md, "Chaining previous and reference").

Tiles are grouped by burst identity, which the SourceID `<orbit>_<burst id>_<swath>` spells out,
and sorted by date (stable: then by scene id). Without tiles already in the store, the earliest
tile is the root (no previous, no reference) and every later one gets reference = the root and
previous = the acquisition just before it.

Tiles already in the AOI's store (`existing`) are fixed anchors: their links are never changed, and
the group's reference is theirs (the reference of the earliest existing tile, or that tile itself
when it is a root). A new acquisition gets previous = the tile just before it (existing or new).

Back-filled older dates (new tiles dated before every existing tile of the group) do NOT start a
second root, as the original did: they get the existing chain's reference, and their previous is
their neighbour towards the chain (the next newer acquisition), so the chain stays one connected
stack whose processed tiles never change. Coherence is symmetric, so pairing with the newer
neighbour is as useful as with the older one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

from ingester.scenes import Tile, TileRef

REPEAT_CYCLE = timedelta(days=12)
_SAME_PASS = timedelta(hours=1)  # two tiles of one burst closer than this are one acquisition


@dataclasses.dataclass
class ChainResult:
    duplicates: list[Tile] = dataclasses.field(default_factory=list)  # new tiles dropped: same pass
    messages: list[str] = dataclasses.field(default_factory=list)  # warnings for the user


def _order(tile: Tile) -> tuple:
    return (tile.date, tile.scene_id)


def chain_tiles(new: Sequence[Tile], existing: Sequence[Tile] = (),
                repeat_cycle: timedelta = REPEAT_CYCLE) -> ChainResult:
    """Set `previous` and `reference` of the `new` tiles in place; see the module docstring."""
    result = ChainResult()
    existing_by_key = {t.key: t for t in existing}
    groups: dict[str, tuple[list[Tile], list[Tile]]] = {}
    for tile in existing:
        groups.setdefault(tile.source_id, ([], []))[0].append(tile)
    for tile in new:
        known = existing_by_key.get(tile.key)
        if known is not None:  # already in the store: keep its links
            tile.previous, tile.reference = known.previous, known.reference
            continue
        groups.setdefault(tile.source_id, ([], []))[1].append(tile)

    gaps: dict[tuple[str, str, int], list[str]] = {}
    for source_id in sorted(groups):
        old, fresh = groups[source_id]
        if not fresh:
            continue
        old.sort(key=_order)
        fresh.sort(key=_order)
        fresh = _drop_same_pass(old, fresh, result)
        merged = sorted([(t, True) for t in old] + [(t, False) for t in fresh], key=lambda p: _order(p[0]))
        if old:
            anchor = old[0]
            reference: TileRef | None = anchor.reference or anchor.ref
            first_old = next(i for i, (_t, is_old) in enumerate(merged) if is_old)
        else:
            reference = None
            first_old = None
        for i, (tile, is_old) in enumerate(merged):
            if is_old:
                continue
            if first_old is not None and i < first_old:  # back-filled before the ingested chain
                tile.previous = merged[i + 1][0].ref
                tile.reference = reference
                continue
            if reference is None:  # the root of a new chain
                tile.previous = tile.reference = None
                reference = tile.ref
                continue
            before = merged[i - 1][0]
            tile.previous = before.ref
            tile.reference = reference
            gap = tile.date - before.date
            if gap > repeat_cycle + timedelta(days=1):
                gaps.setdefault((before.scene_id, tile.scene_id, gap.days), []).append(source_id)
    for (before_id, scene_id, days), bursts in gaps.items():  # one message per pair of scenes
        result.messages.append(
            f"{days} days between {before_id} and {scene_id} (more than the {repeat_cycle.days}-day repeat "
            f"cycle) for burst{'s' if len(bursts) > 1 else ''} {', '.join(bursts)}: an acquisition may be missing"
        )
    return result


def _drop_same_pass(old: list[Tile], fresh: list[Tile], result: ChainResult) -> list[Tile]:
    """Overlapping slices of one data take can both contain a burst: keep the first one only."""
    kept: list[Tile] = []
    for tile in fresh:
        twin = next((t for t in [*old, *kept] if abs(t.date - tile.date) < _SAME_PASS), None)
        if twin is None:
            kept.append(tile)
            continue
        result.duplicates.append(tile)
        result.messages.append(
            f"burst {tile.source_id} is in both {twin.scene_id} and {tile.scene_id} (same pass): "
            f"kept the one of {twin.scene_id}"
        )
    return kept
