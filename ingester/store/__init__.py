"""The SQLite store (docs/workflow.md, "Store"): `Store` is one connection with named methods for
every statement the tool runs; nothing outside this package writes SQL.

- `base`: opening (read-only, writable, created), schema version and migrations, transactions;
- `schema`: the migrations;
- `rows`: the row models (built by column name) and the (de)serialising of scenes and tiles;
- `aois`: AOIs and their lock columns; `jobs`: the workflow's columns, releases, cascade links, claims,
  leases and attempts; `records`: records, layers and datasets; `reads`: listings, models, monitoring.

Dates are stored as written (`format_time`: RFC 3339 with a trimmed fraction, so `…24.37Z` sorts
before `…24.3Z` as text); every ORDER BY uses the fixed-width `date_key` (`record.time_key`), whose
fraction is padded to nine digits: generated on a scene, copied from its scene on a tile.
"""

from __future__ import annotations

from ingester.store.aois import AoiStore
from ingester.store.base import (
    StoreBase,
    dumps,
    host_name,
    monotonic_now,
    now_text,
    pid_alive,
    store_error,
)
from ingester.store.jobs import CLAIM_SQL, JobStore
from ingester.store.reads import ReadStore
from ingester.store.records import RecordStore
from ingester.store.rows import (
    AoiRow,
    AttemptRow,
    DatasetRow,
    LayerRow,
    RecordRow,
    SceneRow,
    SceneTileRow,
    TileRow,
    WaitingJob,
    scene_data,
    scene_from_row,
    tile_data,
    tile_from_data,
)
from ingester.store.schema import MIGRATIONS, STATUSES

PROCESSING_DATE_TAG = "processingDate"


class Store(AoiStore, JobStore, RecordStore, ReadStore, StoreBase):
    """One connection to the SQLite file (see the package docstring). Not shared across processes
    (workers never open it)."""


__all__ = [
    "AoiRow", "AttemptRow", "CLAIM_SQL", "DatasetRow", "LayerRow", "MIGRATIONS", "PROCESSING_DATE_TAG", "RecordRow",
    "STATUSES", "SceneRow", "SceneTileRow", "Store", "TileRow", "WaitingJob", "dumps", "host_name", "monotonic_now",
    "now_text", "pid_alive", "scene_data", "scene_from_row", "store_error", "tile_data", "tile_from_data",
]
