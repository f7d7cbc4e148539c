"""Layers (variable + instance) and records, with the store standing in for the Geocube
(docs/indexing.md, "Layers", "Records").

Records: one per scene; name = scene id, time = scene date, tags = the scene's tags plus
`previous_scenes` / `reference_scenes`, each a JSON array (as a string) of the distinct scene ids
its tiles point to, sorted (docs/original.md, defect 20). A record is reused when name, time and tags are equal, the
`processingDate` tag (set when a tile's outputs are indexed) excluded from the comparison.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ingester.errors import InputError, StoreError
from ingester.graph.model import DFormat
from ingester.jobs import IndexedOutput
from ingester.payload import Layer, Payload
from ingester.scenes import Scene
from ingester.store import PROCESSING_DATE_TAG, Store, dumps, now_text
from ingester.times import format_time

DEFAULT_DFORMAT = DFormat("float32", 0.0, 0.0, 1.0)

# --- layers --------------------------------------------------------------------------------------

def parse_dformat(text: str, field: str = "--dformat") -> DFormat:
    """`dtype,nodata,min,max` (e.g. `float32,0,0,1`), checked by the one dformat parser
    (`DFormat.parse`: known dtype, values the dtype can hold, NaN no-data only for float types, min <
    max); an InputError (exit 2) naming `field` otherwise."""
    try:
        return DFormat.parse(text)
    except ValueError as exc:
        raise InputError(f"{field}: {exc}") from None


def check_layer(variable: str, instance: str, dformat: str | None = None) -> None:
    """InputError (exit 2) for a name a layer cannot have or a data format that does not parse."""
    from ingester.payload import IDENT_RE

    for kind, name in (("variable", variable), ("instance", instance)):
        if not IDENT_RE.match(name):
            raise InputError(f"{kind} name {name!r} must match {IDENT_RE.pattern}")
    if dformat:
        parse_dformat(dformat)


def add_layer(store: Store, variable: str, instance: str, dformat: str | None = None, unit: str = "",
              bands: Sequence[str] = ()) -> tuple[int, bool]:
    """Create the variable (if new) and its instance; returns (instance id, created). A variable has one
    data format, unit and band list: asking for another one is an InputError that says what it has."""
    check_layer(variable, instance)
    wanted = parse_dformat(dformat) if dformat else None
    with store.transaction():
        found = store.variable_format(variable)
        if found is None:
            fmt = wanted or DEFAULT_DFORMAT
            variable_id = store.insert_variable(variable, unit, fmt.dtype, fmt.nodata, fmt.min_value, fmt.max_value,
                                                bands, now_text())
        else:
            variable_id, (dtype, nodata, lo, hi), stored_unit, stored_bands = found
            stored = DFormat(dtype, float("nan") if nodata is None else nodata, lo, hi)  # (NaN no-data kept as NULL)
            differs = []
            if wanted is not None and not wanted.same_as(stored):
                differs.append(f"dformat {stored} (asked: {wanted})")
            if unit and unit != stored_unit:
                differs.append(f"unit {stored_unit!r} (asked: {unit!r})")
            if bands and list(bands) != stored_bands:
                differs.append(f"bands {','.join(stored_bands) or '(none)'} (asked: {','.join(bands)})")
            if differs:
                raise InputError(f"variable {variable!r} exists with {'; '.join(differs)}: a variable's "
                                 "format, unit and bands cannot be changed (use another variable name)")
        existing = store.instance_of(variable_id, instance)
        if existing is not None:
            return existing, False
        return store.insert_instance(variable_id, instance), True


def add_layer_command(layer: Layer, dformat: str | None = None) -> str:
    text = f"ingester layers add {shlex.quote(layer.variable)} {shlex.quote(layer.instance)}"
    return f"{text} --dformat {dformat}" if dformat else text


def resolve_layers(store: Store, payload: Payload, create: bool = False,
                   formats: Mapping[str, str] | None = None) -> dict[str, str]:
    """Payload layer → instance id (as a string, like the original's `instances_id`).

    Missing layers raise an InputError listing them with the commands that add them; with
    `create` they are created instead (call inside the ingestion transaction), each in the data
    format `formats` gives it (the one its graph indexes), else the default float32,0,0,1."""
    formats = formats or {}
    out: dict[str, str] = {}
    missing: list[tuple[str, Layer]] = []
    for name, layer in sorted(payload.layers.items()):
        if layer.instance_id:
            row = store.instance_names(layer.instance_id)
            if row is None or row != (layer.variable, layer.instance):
                raise InputError(f"{payload.path}: field 'layers.{name}.instance_id': no instance "
                                 f"{layer.instance_id} for {layer.variable}/{layer.instance} in the store")
            out[name] = layer.instance_id
            continue
        iid = store.instance_id(layer.variable, layer.instance)
        if iid is None:
            missing.append((name, layer))
        else:
            out[name] = str(iid)
    if missing and not create:
        lines = "\n".join(f"  {add_layer_command(layer, formats.get(n))}" for n, layer in missing)
        names = ", ".join(f"{n} ({layer.variable}/{layer.instance})" for n, layer in missing)
        raise InputError(f"{payload.path}: unknown layer(s) {names}. Add them with:\n{lines}\n"
                         "or run `ingester aoi` with --create-layers")
    for name, layer in missing:
        iid, _ = add_layer(store, layer.variable, layer.instance, formats.get(name))
        out[name] = str(iid)
    return out


# --- records -------------------------------------------------------------------------------------

def linked_scenes(scene: Scene) -> tuple[list[str], list[str]]:
    """Sorted distinct scene ids the scene's tiles point to as previous and as reference."""
    prev = sorted({t.previous.scene_id for t in scene.tiles if t.previous})
    ref = sorted({t.reference.scene_id for t in scene.tiles if t.reference})
    return prev, ref


def record_tags(scene: Scene) -> dict[str, str]:
    prev, ref = linked_scenes(scene)
    tags = dict(scene.tags)
    tags["previous_scenes"] = json.dumps(prev, separators=(",", ":"))
    tags["reference_scenes"] = json.dumps(ref, separators=(",", ":"))
    return tags


def check_record_tags(payload: Payload, scene: Scene) -> None:
    """Every payload `record_tags` pair must be among the scene's tags (docs/indexing.md, "Records")."""
    for key, value in payload.record_tags.items():
        if scene.tags.get(key) != value:
            got = scene.tags.get(key)
            raise InputError(f"scene {scene.source_id}: tag {key!r} is {json.dumps(got)}, but the payload's "
                             f"record_tags require {json.dumps(value)}")


def match_tags(tags: Mapping[str, str]) -> str:
    return dumps({k: v for k, v in tags.items() if k != PROCESSING_DATE_TAG})


def find_or_create_record(store: Store, scene: Scene) -> tuple[int, bool]:
    """(record id, created) for a scene: reused when name, time and tags (minus processingDate) match."""
    tags = record_tags(scene)
    key = (scene.source_id, format_time(scene.date), match_tags(tags))
    existing = store.find_record(*key)
    if existing is not None:
        return existing, False
    return store.insert_record(key[0], key[1], tags, key[2], scene.wkt, now_text()), True


def trusted_record(store: Store, scene: Scene) -> int:
    """A scene file's non-empty `data.record_id` is trusted, but it must exist."""
    try:
        rid = int(scene.record_id)
    except ValueError:
        rid = -1
    if store.record(rid) is None:
        raise InputError(f"scene {scene.source_id}: data.record_id {scene.record_id!r} is not a record of the store")
    return rid


# --- datasets ------------------------------------------------------------------------------------

def index_outputs(store: Store, tile_id: int, outputs: Sequence[IndexedOutput],
                  instances: Mapping[str, str]) -> int:
    """Write a DONE tile's outputs as datasets of its scene's record and set the record's
    processingDate tag (call inside the transaction that sets the tile DONE). Returns the count."""
    if not outputs:
        return 0
    row = store.tile_record(tile_id)
    record_id = None if row is None else row[0]
    if row is None or record_id is None:
        raise StoreError(f"tile {tile_id} has no record to index its outputs into")
    aoi_id = row[1]
    now = now_text()
    for out in outputs:
        if out.layer not in instances:
            raise StoreError(f"output layer {out.layer!r} ({out.uri}) is not one of the payload layers "
                             f"({', '.join(sorted(instances)) or 'none'})")
        store.upsert_dataset(record_id, int(instances[out.layer]), aoi_id, tile_id, out.layer, out.uri, out.bands,
                             out.dtype, out.nodata, out.min_value, out.max_value, out.real_min, out.real_max,
                             out.exponent, dict(out.extra), now)
    store.set_record_tag(record_id, PROCESSING_DATE_TAG, format_time(datetime.now(UTC)))
    return len(outputs)
