"""Sentinel-1 burst inventory: annotations → bursts over the AOI → tiles chained across dates.

For each scene, annotation sources are tried in order (settings.annotation_sources: `cdse` = CDSE
Nodes, `urls` = the payload's annotations_urls); a miss or a failure moves on to the next source.
A scene no source has is skipped with a TilingWarning and listed in `TilingResult.skipped`.
Scenes are fetched `settings.annotation_concurrency` at a time; results keep the input order.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

import shapely

from ingester.config import Settings
from ingester.distance import parse_buffer
from ingester.errors import ConfigError, IngesterError, TilingWarning
from ingester.geodesy import buffer_area
from ingester.http.clients import Clients
from ingester.naming import constellation_of
from ingester.payload import Payload
from ingester.scenes import Scene, Tile
from ingester.tiling.annotation import AnnotationError, SwathAnnotation, footprint_wkt, parse_annotation
from ingester.tiling.burst_ids import relative_orbit_from_absolute
from ingester.tiling.chaining import chain_tiles
from ingester.tiling.result import NO_ANNOTATION, TilingResult
from ingester.tiling.sources import AnnotationSource, CdseNodesSource, PatternSource

NO_BURST = "no burst intersects the AOI"
_T = TypeVar("_T")
_R = TypeVar("_R")


def annotation_sources(payload: Payload, settings: Settings, clients: Clients | None = None) -> list[AnnotationSource]:
    """The sources in the order of settings.annotation_sources (CDSE's logs in with `clients`)."""
    out: list[AnnotationSource] = []
    for kind in (k.strip().lower() for k in settings.annotation_sources.split(",")):
        if kind == "cdse":
            out.append(CdseNodesSource(settings, clients=clients))
        elif kind == "urls":
            out.extend(PatternSource(p, payload.name, settings) for p in payload.annotations_urls)
        elif kind:
            raise ConfigError(f"INGESTER_ANNOTATION_SOURCES: unknown source {kind!r} (known: cdse, urls)")
    if not out:
        raise ConfigError("no annotation source: add 'annotations_urls' to the payload or enable 'cdse' "
                          "in INGESTER_ANNOTATION_SOURCES")
    return out


@dataclasses.dataclass
class _Fetched:
    annotations: list[SwathAnnotation]
    attempts: list[str]  # what each source said, for the skip message


def fetch_annotations(scene: Scene, sources: Sequence[AnnotationSource]) -> _Fetched:
    """The scene's parsed annotations from the first source that has them."""
    attempts: list[str] = []
    for source in sources:
        try:
            files = source.fetch(scene)
        except IngesterError as exc:
            attempts.append(f"{source.name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a storage client's own errors (botocore, …): next source
            attempts.append(f"{source.name}: {type(exc).__name__}: {exc}")
            continue
        if not files:
            attempts.append(f"{source.name}: not found")
            continue
        try:
            return _Fetched([parse_annotation(data, f"{scene.source_id}/{name}") for name, data in files], attempts)
        except AnnotationError as exc:
            attempts.append(f"{source.name}: {exc}")
    return _Fetched([], attempts)


def _relative_orbit(scene: Scene, annotation: SwathAnnotation) -> int:
    raw = scene.tags.get("relativeOrbit", "").strip()
    if raw.isdigit() and 1 <= int(raw) <= 175:
        return int(raw)
    computed = relative_orbit_from_absolute(annotation.mission, annotation.absolute_orbit)
    if computed is None:
        raise AnnotationError(f"{scene.source_id}: no 'relativeOrbit' tag and no formula for {annotation.mission}")
    return computed


def scene_bursts(scene: Scene, annotations: Sequence[SwathAnnotation], area, payload: Payload) -> list[Tile]:
    """Tiles of the bursts of one scene whose footprint intersects `area` (a prepared geometry)."""
    tiles: list[Tile] = []
    for ann in annotations:
        orbit = _relative_orbit(scene, ann)
        footprints = ann.footprints()
        previous_id = None
        for burst, footprint in zip(ann.bursts, footprints, strict=True):
            track, relative, absolute = ann.burst_identity(burst, orbit)
            if burst.annotated_id is not None and burst.annotated_id != relative:
                warnings.warn(f"{ann.origin}: burst {burst.index + 1}: computed burst id {relative} differs from "
                              f"the annotated {burst.annotated_id}; using the annotated one", TilingWarning,
                              stacklevel=2)
                relative = burst.annotated_id
            if burst.annotated_absolute_id is not None:
                absolute = burst.annotated_absolute_id
            if previous_id is not None and relative != previous_id + 1:
                warnings.warn(f"{ann.origin}: burst ids not contiguous ({previous_id} then {relative})",
                              TilingWarning, stacklevel=2)
            previous_id = relative
            if not area.intersects(footprint):
                continue
            tiles.append(Tile(
                source_id=f"{track:03d}_{relative:06d}_{ann.swath}",
                scene_id=scene.source_id,
                date=scene.date,
                wkt=footprint_wkt(footprint),
                anx_time=ann.anx_key(burst),
                graph_name=payload.tile_graph_name,
                is_retriable=payload.is_retriable,
                swath_id=ann.swath,
                tile_nr=burst.index + 1,
                burst_id=relative,
                absolute_burst_id=absolute,
            ))
    tiles.sort(key=lambda t: (t.swath_id, t.tile_nr))
    return tiles


def burst_inventory(
    payload: Payload,
    scenes: Sequence[Scene],
    settings: Settings,
    existing: Sequence[Tile] = (),
    sources: Sequence[AnnotationSource] | None = None,
    clients: Clients | None = None,
):
    """Bursts of every scene over the AOI, chained onto each other and onto `existing` tiles; the CDSE
    annotation source logs in with `clients` (the command's: one login)."""

    owned: Sequence[AnnotationSource] = ()
    if sources is None:
        sources = owned = annotation_sources(payload, settings, clients)
    try:
        return _inventory(payload, scenes, settings, existing, sources)
    finally:
        for source in owned:  # the sessions opened for this run
            source.close()


def ordered_map(pool: Executor, fn: Callable[[_T], _R], items: Sequence[_T], ahead: int) -> Iterator[_R]:
    """`fn` over `items` on the pool, results in the input order, with at most `ahead` calls submitted and
    not yet consumed: a scene's parsed annotations are dropped once its bursts are taken, instead of
    the annotations of every scene being held at once (`Executor.map` submits everything up front)."""
    queue: deque[Future[_R]] = deque()
    rest = iter(items)
    for item in itertools.islice(rest, max(1, ahead)):
        queue.append(pool.submit(fn, item))
    while queue:
        future = queue.popleft()
        for item in itertools.islice(rest, 1):
            queue.append(pool.submit(fn, item))
        yield future.result()


def _add_scene(scene: Scene, got: _Fetched, area, payload: Payload, kept: list[Scene], all_tiles: list[Tile],
               skipped: list[tuple[str, str]]) -> None:
    """The bursts of one scene over `area` into `kept`/`all_tiles`, or the reason it is skipped."""
    if not got.annotations:
        reason = f"{NO_ANNOTATION} ({'; '.join(got.attempts) or 'no source'})"
        skipped.append((scene.source_id, reason))
        warnings.warn(f"{scene.source_id}: {reason}; scene skipped", TilingWarning, stacklevel=3)
        return
    try:
        tiles = scene_bursts(scene, got.annotations, area, payload)
    except AnnotationError as exc:
        skipped.append((scene.source_id, str(exc)))
        warnings.warn(f"{exc}; scene skipped", TilingWarning, stacklevel=3)
        return
    if not tiles:
        skipped.append((scene.source_id, NO_BURST))
        return
    kept.append(dataclasses.replace(scene, tiles=tiles))
    all_tiles.extend(tiles)


def _inventory(payload: Payload, scenes: Sequence[Scene], settings: Settings, existing: Sequence[Tile],
               sources: Sequence[AnnotationSource]):
    area = buffer_area(payload.aoi, parse_buffer(settings.aoi_buffer))
    shapely.prepare(area)
    skipped: list[tuple[str, str]] = []
    todo = []
    for scene in scenes:
        if constellation_of(scene.source_id) != "sentinel1":
            skipped.append((scene.source_id, "not a Sentinel-1 product"))
            warnings.warn(f"{scene.source_id}: not a Sentinel-1 product, skipped", TilingWarning, stacklevel=2)
        else:
            todo.append(scene)

    kept: list[Scene] = []
    all_tiles: list[Tile] = []
    workers = max(1, settings.annotation_concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetched = ordered_map(pool, lambda s: fetch_annotations(s, sources), todo, ahead=workers)
        for scene, got in zip(todo, fetched, strict=True):
            _add_scene(scene, got, area, payload, kept, all_tiles, skipped)

    chained = chain_tiles(all_tiles, existing)
    for message in chained.messages:
        warnings.warn(message, TilingWarning, stacklevel=2)
    if chained.duplicates:
        dropped = {t.key for t in chained.duplicates}
        for scene in kept:
            scene.tiles = [t for t in scene.tiles if t.key not in dropped]
        for scene in [s for s in kept if not s.tiles]:
            skipped.append((scene.source_id, "every burst is already in another scene of the same pass"))
        kept = [s for s in kept if s.tiles]
    return TilingResult(kept, skipped)
