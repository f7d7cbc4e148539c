"""Where a view comes from: a scenes/tiles file (its AOI from `--payload`), or an AOI of the store
(its AOI as stored at ingestion)."""

from __future__ import annotations

import warnings
from pathlib import Path

from shapely.geometry import MultiPolygon

from ingester.errors import IngesterWarning, InputError
from ingester.views.model import View, from_file, from_store


def payload_aoi(payload: Path | None) -> MultiPolygon | None:
    if payload is None:
        return None
    from ingester.payload import load_payload

    return load_payload(payload).aoi


def is_file_target(target: str) -> bool:
    """A target that names an existing path is a file; anything else is an AOI name."""
    return Path(target).exists()


def open_view(target: str, payload: Path | None, db: str) -> View:
    """The view of a scenes/tiles file, or of the AOI of that name in the store at `db`."""
    if is_file_target(target):
        if Path(target).is_dir():
            raise InputError(f"{target}: a folder, not a scenes or tiles file")
        return from_file(target, payload_aoi(payload))
    if not Path(db).is_file():
        raise InputError(f"{target}: no such file, and no store at {db} to find an AOI of that name in "
                         "(choose the store with --db or INGESTER_DB)")
    from ingester.app.reads import reading

    aoi = payload_aoi(payload)
    with reading(db) as store:
        row = store.aoi(target)
        if row is None:
            known = store.aoi_names()
            raise InputError(f"{target}: no such file, and no AOI of that name in {db}"
                             + (f" (known: {', '.join(known)})" if known else " (the store has no AOI)"))
        view = from_store(store, target, aoi)
    if view.aoi is None:
        view.aoi = _aoi_from_payload_path(row.settings.get("payload_path") or "")
        if view.aoi is not None:
            from ingester.views.model import add_coverage

            add_coverage(view)
    if view.aoi is None:
        warnings.warn(f"the store keeps no outline for the AOI {target!r} (ingested by an older ingester): "
                      "give --payload PAYLOAD to draw it", IngesterWarning, stacklevel=2)
    return view


def _aoi_from_payload_path(path: str) -> MultiPolygon | None:
    """The outline from the payload file the AOI was ingested with, when it is still there and valid."""
    if not path or not Path(path).is_file():
        return None
    try:
        return payload_aoi(Path(path))
    except InputError:
        return None
