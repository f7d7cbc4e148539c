"""What the store's reads return: row models built by column name, and the (de)serialising of the
`Scene`/`Tile` models a scene or tile row keeps.

A scene row keeps the scene's full attributes (`data`, `tags`, `wkt`, `date`) and a tile row the
tile's (`data`), so a job description can be rebuilt from the store alone. A tile's previous and
reference are the `prev` / `ref` columns (tile ids), never the copies in `data`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingester.times import format_time, parse_time

if TYPE_CHECKING:  # the models (and shapely behind them) load only when a command needs them
    from ingester.scenes import Scene, Tile, TileRef


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def nan(value: float | None) -> float:
    """A nodata read back: SQLite stores NaN as NULL."""
    return float("nan") if value is None else value


@functools.lru_cache(maxsize=65536)
def stored_time(text: str) -> datetime:
    """A stored date as a datetime; the tiles of a scene and the links to it share one parse."""
    return parse_time(text)


# --- row models ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AoiRow:
    id: int
    name: str
    settings: dict[str, Any]
    lock_run: str | None
    lock_pid: int | None
    lock_host: str | None
    lock_started: str | None
    lock_heartbeat: float | None

    COLUMNS = "id, name, settings, lock_run, lock_pid, lock_host, lock_started, lock_heartbeat"

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> AoiRow:
        return cls(id=r["id"], name=r["name"], settings=json.loads(r["settings"]), lock_run=r["lock_run"],
                   lock_pid=r["lock_pid"], lock_host=r["lock_host"], lock_started=r["lock_started"],
                   lock_heartbeat=r["lock_heartbeat"])


@dataclasses.dataclass(frozen=True)
class SceneRow:
    id: int
    aoi_id: int
    source_id: str
    date: str
    status: str
    message: str
    retry_countdown: int
    attempts: int
    record_id: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def columns(table: str = "scene", prefix: str = "") -> str:
        """The select list of a SceneRow (`prefix` on every alias, for a join)."""
        return ", ".join(f"{table}.{f.name} AS {prefix}{f.name}" for f in dataclasses.fields(SceneRow))

    @classmethod
    def from_row(cls, r: sqlite3.Row, prefix: str = "") -> SceneRow:
        return cls(**{f.name: r[prefix + f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class TileRow:
    id: int
    scene_id: int
    aoi_id: int
    source_id: str
    scene_source_id: str
    date: str
    status: str
    message: str
    retry_countdown: int
    attempts: int
    prev: int | None
    ref: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def columns(tile: str = "t", scene: str = "s", prefix: str = "") -> str:
        """The select list of a TileRow over `tile t JOIN scene s` (the scene gives its id and date)."""
        own = {"scene_source_id": f"{scene}.source_id", "date": f"{scene}.date"}
        return ", ".join(f"{own.get(f.name, f'{tile}.{f.name}')} AS {prefix}{f.name}"
                         for f in dataclasses.fields(TileRow))

    @classmethod
    def from_row(cls, r: sqlite3.Row, prefix: str = "") -> TileRow:
        return cls(**{f.name: r[prefix + f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class SceneTileRow:
    """A scene with one of its tiles (None: a scene without tiles) and what maps and timelines draw:
    the scene's tags, data and footprint, the tile's data (its polygon, burst id, …)."""

    scene: SceneRow
    tags: dict[str, str]
    data: dict[str, Any]
    wkt: str
    tile: TileRow | None
    tile_data: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RecordRow:
    id: int
    name: str
    time: str
    tags: dict[str, str]

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> RecordRow:
        return cls(id=r["id"], name=r["name"], time=r["time"], tags=json.loads(r["tags"]))


@dataclasses.dataclass(frozen=True)
class DatasetRow:
    id: int
    record_id: int
    record_name: str
    record_time: str
    instance_id: int
    variable: str
    instance: str
    aoi: str | None
    tile_id: int | None
    layer: str
    uri: str
    bands: tuple[int, ...]
    dtype: str
    nodata: float
    min_value: float
    max_value: float
    real_min: float
    real_max: float
    exponent: float
    extra: dict[str, Any]

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> DatasetRow:
        return cls(id=r["id"], record_id=r["record_id"], record_name=r["record_name"], record_time=r["record_time"],
                   instance_id=r["instance_id"], variable=r["variable"], instance=r["instance"], aoi=r["aoi"],
                   tile_id=r["tile_id"], layer=r["layer"], uri=r["uri"], bands=tuple(json.loads(r["bands"])),
                   dtype=r["dtype"], nodata=nan(r["nodata"]), min_value=r["min_value"], max_value=r["max_value"],
                   real_min=r["real_min"], real_max=r["real_max"], exponent=r["exponent"],
                   extra=json.loads(r["extra"]))


@dataclasses.dataclass(frozen=True)
class LayerRow:
    variable_id: int
    variable: str
    instance_id: int | None
    instance: str | None
    unit: str
    dtype: str
    nodata: float
    min_value: float
    max_value: float
    bands: list[str]

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> LayerRow:
        return cls(variable_id=r["variable_id"], variable=r["variable"], instance_id=r["instance_id"],
                   instance=r["instance"], unit=r["unit"], dtype=r["dtype"], nodata=nan(r["nodata"]),
                   min_value=r["min_value"], max_value=r["max_value"], bands=json.loads(r["bands"]))


@dataclasses.dataclass(frozen=True)
class AttemptRow:
    """One attempt of a job (`ingester history`)."""

    attempt: int
    run_id: str
    host: str
    pid: int
    worker: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    status: str | None
    message: str
    log_path: str

    COLUMNS = "attempt, run_id, host, pid, worker, started_at, finished_at, outcome, status, message, log_path"

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> AttemptRow:
        return cls(**{f.name: r[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class WaitingJob:
    """A PENDING job waiting for a later try (deferred, or backed off after a failure)."""

    kind: str
    id: int
    source_id: str
    scene_source_id: str
    not_before: float
    deferred_since: float | None
    message: str


# --- (de)serialising the models -------------------------------------------------------------------

def scene_data(scene: Scene) -> str:
    data = scene.data_dict()
    data.pop("tiles", None)
    return dumps(data)


def scene_from_row(source_id: str, aoi: str, date: str, data: str, tags: str, wkt: str) -> Scene:
    from ingester.scenes import Scene

    d = json.loads(data)
    return Scene(
        source_id=source_id, aoi=aoi, date=stored_time(date), wkt=wkt, tags=json.loads(tags),
        graph_name=d.get("graph_name", ""), graph_config=d.get("graph_config") or {},
        is_retriable=bool(d.get("is_retriable", False)), record_id=d.get("record_id", ""),
        storage_uri=d.get("storage_uri", ""), metadata=d.get("metadata") or {},
        instances_id=d.get("instances_id") or {},
    )


def tile_data(tile: Tile) -> str:
    return dumps({"date": format_time(tile.date), "wkt": tile.wkt, "anx_time": tile.anx_time,
                  **tile.data_dict()})


_TILE_KNOWN = {"date", "wkt", "anx_time", "graph_name", "is_retriable", "swath_id", "tile_nr", "burst_id",
               "absolute_burst_id"}


def tile_from_data(source_id: str, scene_id: str, data: str, previous: TileRef | None = None,
                   reference: TileRef | None = None) -> Tile:
    from ingester.scenes import Tile

    d = json.loads(data)
    return Tile(
        source_id=source_id, scene_id=scene_id, date=stored_time(d["date"]), wkt=d.get("wkt", ""),
        anx_time=int(d.get("anx_time") or 0), graph_name=d.get("graph_name", ""),
        is_retriable=bool(d.get("is_retriable", False)), swath_id=d.get("swath_id", ""),
        tile_nr=int(d.get("tile_nr") or 0), burst_id=d.get("burst_id"), absolute_burst_id=d.get("absolute_burst_id"),
        previous=previous, reference=reference, extra={k: v for k, v in d.items() if k not in _TILE_KNOWN},
    )
