"""The SQLite store: schema, migrations, transactions, and the read APIs the other stages use.

One file (`--db`, `INGESTER_DB`, default `outputs/ingester.db`) in WAL mode with foreign keys on.
The schema version is `PRAGMA user_version`; `MIGRATIONS[i]` brings version i to i + 1.
Every state change goes through `Store.transaction()` (one `BEGIN IMMEDIATE` … `COMMIT`).

Dates are stored as written (`format_time`: RFC 3339 with a trimmed fraction, so `…24.37Z` sorts
before `…24.3Z` as text); every ORDER BY uses the generated fixed-width column `date_key`
(`record.time_key`), whose fraction is padded to nine digits.

A scene row keeps the scene's full attributes (`data`, `tags`, `wkt`, `date`) and a tile row the
tile's (`data`), so a job description can be rebuilt from the store alone. A tile's previous and
reference are the `prev` / `ref` columns (tile ids), never the copies in `data`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ingester.errors import InputError, StoreError
from ingester.times import format_time, parse_time

if TYPE_CHECKING:  # the models (and shapely behind them) load only when a command needs them
    from ingester.scenes import Scene, Tile, TileRef

STATUSES = ("NEW", "PENDING", "DONE", "RETRY", "FAILED")
PROCESSING_DATE_TAG = "processingDate"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE aoi (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL DEFAULT '{}',      -- payload snapshot: layers, retry_count, storage_uri, …
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        lock_run TEXT, lock_pid INTEGER, lock_host TEXT, lock_started TEXT, lock_heartbeat REAL
    );
    CREATE TABLE record (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        time TEXT NOT NULL,
        time_key TEXT GENERATED ALWAYS AS (
            substr(time, 1, 19) || substr(CASE WHEN substr(time, 20, 1) = '.'
            THEN substr(time, 20, length(time) - 20) ELSE '.' END || '000000000', 1, 10)) VIRTUAL,
        tags TEXT NOT NULL,                       -- JSON object, keys sorted
        match_tags TEXT NOT NULL,                 -- the same without processingDate: the reuse key
        aoi_wkt TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (name, time, match_tags)
    );
    CREATE TABLE scene (
        id INTEGER PRIMARY KEY,
        aoi_id INTEGER NOT NULL REFERENCES aoi(id) ON DELETE CASCADE,
        source_id TEXT NOT NULL,
        date TEXT NOT NULL,                       -- RFC 3339, UTC
        date_key TEXT GENERATED ALWAYS AS (
            substr(date, 1, 19) || substr(CASE WHEN substr(date, 20, 1) = '.'
            THEN substr(date, 20, length(date) - 20) ELSE '.' END || '000000000', 1, 10)) VIRTUAL,  -- sortable
        status TEXT NOT NULL CHECK (status IN ('NEW','PENDING','DONE','RETRY','FAILED')),
        message TEXT NOT NULL DEFAULT '',
        retry_countdown INTEGER NOT NULL DEFAULT 0,
        temporary_count INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        lease_run TEXT, lease_expires REAL,
        record_id INTEGER REFERENCES record(id),
        data TEXT NOT NULL, tags TEXT NOT NULL, wkt TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (aoi_id, source_id)
    );
    CREATE INDEX scene_aoi_status ON scene (aoi_id, status);
    CREATE INDEX record_time ON record (time_key);
    CREATE TABLE tile (
        id INTEGER PRIMARY KEY,
        scene_id INTEGER NOT NULL REFERENCES scene(id) ON DELETE CASCADE,
        aoi_id INTEGER NOT NULL REFERENCES aoi(id) ON DELETE CASCADE,
        source_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('NEW','PENDING','DONE','RETRY','FAILED')),
        message TEXT NOT NULL DEFAULT '',
        retry_countdown INTEGER NOT NULL DEFAULT 0,
        temporary_count INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        lease_run TEXT, lease_expires REAL,
        prev INTEGER REFERENCES tile(id),
        ref INTEGER REFERENCES tile(id),
        failed_prev INTEGER REFERENCES tile(id),  -- prev/ref before the fail cascade (forced retry restores them)
        failed_ref INTEGER REFERENCES tile(id),
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (scene_id, source_id)
    );
    CREATE INDEX tile_scene ON tile (scene_id);
    CREATE INDEX tile_aoi_status ON tile (aoi_id, status);
    CREATE INDEX tile_prev ON tile (prev);
    CREATE INDEX tile_ref ON tile (ref);
    CREATE TABLE variable (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        unit TEXT NOT NULL DEFAULT '',
        dtype TEXT NOT NULL DEFAULT 'float32',
        nodata REAL DEFAULT 0,                    -- NULL: NaN (SQLite stores NaN as NULL)
        min_value REAL NOT NULL DEFAULT 0,
        max_value REAL NOT NULL DEFAULT 1,
        bands TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    );
    CREATE TABLE instance (
        id INTEGER PRIMARY KEY,
        variable_id INTEGER NOT NULL REFERENCES variable(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        UNIQUE (variable_id, name)
    );
    CREATE TABLE dataset (
        id INTEGER PRIMARY KEY,
        record_id INTEGER NOT NULL REFERENCES record(id),
        instance_id INTEGER NOT NULL REFERENCES instance(id),
        aoi_id INTEGER REFERENCES aoi(id) ON DELETE SET NULL,
        tile_id INTEGER REFERENCES tile(id) ON DELETE SET NULL,
        layer TEXT NOT NULL,
        uri TEXT NOT NULL,
        bands TEXT NOT NULL,
        dtype TEXT NOT NULL, nodata REAL, min_value REAL NOT NULL, max_value REAL NOT NULL,
        real_min REAL NOT NULL, real_max REAL NOT NULL, exponent REAL NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        UNIQUE (record_id, instance_id, uri)
    );
    CREATE INDEX dataset_aoi ON dataset (aoi_id);
    CREATE INDEX dataset_tile ON dataset (tile_id);
    CREATE TABLE job_attempt (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('scene','tile')),
        job_id INTEGER NOT NULL,
        aoi_id INTEGER NOT NULL REFERENCES aoi(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL, pid INTEGER NOT NULL,
        worker TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT,                             -- done, temporary, fatal, error, abandoned, manual
        status TEXT,                              -- the job's status after this attempt
        message TEXT NOT NULL DEFAULT '',
        log_path TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX job_attempt_job ON job_attempt (kind, job_id);
    CREATE INDEX job_attempt_aoi ON job_attempt (aoi_id);
    """,
    # 2: indexes for the monitoring summary (root tiles, first/last dates) on large AOIs
    """
    CREATE INDEX scene_aoi_date ON scene (aoi_id, date_key);
    CREATE INDEX tile_aoi_links ON tile (aoi_id, prev, ref);
    """,
    # 3: deferred jobs (PENDING, waiting for something outside until not_before): when the current
    # deferral began, to bound it by INGESTER_DEFER_DEADLINE; NULL when the job is not deferred
    """
    ALTER TABLE scene ADD COLUMN deferred_since REAL;
    ALTER TABLE tile ADD COLUMN deferred_since REAL;
    """,
    # 4: which executor worker ran an attempt (a Dask worker's address; '' for the local pool)
    """
    ALTER TABLE job_attempt ADD COLUMN ran_on TEXT NOT NULL DEFAULT '';
    """,
)


def now_text() -> str:
    return format_time(datetime.now(UTC))


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


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


_SCENE_COLS = "id, aoi_id, source_id, date, status, message, retry_countdown, attempts, record_id"
_TILE_COLS = ("t.id, t.scene_id, t.aoi_id, t.source_id, s.source_id, s.date, t.status, t.message, "
              "t.retry_countdown, t.attempts, t.prev, t.ref")


# --- (de)serialising the models -------------------------------------------------------------------

def scene_data(scene: Scene) -> str:
    data = scene.data_dict()
    data.pop("tiles", None)
    return dumps(data)


def scene_from_row(source_id: str, aoi: str, date: str, data: str, tags: str, wkt: str) -> Scene:
    from ingester.scenes import Scene

    d = json.loads(data)
    return Scene(
        source_id=source_id, aoi=aoi, date=parse_time(date), wkt=wkt, tags=json.loads(tags),
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
        source_id=source_id, scene_id=scene_id, date=parse_time(d["date"]), wkt=d.get("wkt", ""),
        anx_time=int(d.get("anx_time") or 0), graph_name=d.get("graph_name", ""),
        is_retriable=bool(d.get("is_retriable", False)), swath_id=d.get("swath_id", ""),
        tile_nr=int(d.get("tile_nr") or 0), burst_id=d.get("burst_id"), absolute_burst_id=d.get("absolute_burst_id"),
        previous=previous, reference=reference, extra={k: v for k, v in d.items() if k not in _TILE_KNOWN},
    )


# --- the store -----------------------------------------------------------------------------------

def _nan(value: float | None) -> float:
    """A nodata read back: SQLite stores NaN as NULL."""
    return float("nan") if value is None else value


class Store:
    """One connection to the SQLite file. Not shared across processes (workers never open it)."""

    def __init__(self, path: str | Path, timeout: float = 30.0, create: bool = True, readonly: bool = False):
        """Open (with `create`, create) the store. Without `create` a missing file is an InputError
        (exit 2) naming the path and how to choose another: read commands never create a store.

        `readonly` (the commands that only read: status, list, history, …) opens the file read-only,
        so that they work where it cannot be written (permissions, a read-only file system, an
        immutable file). Otherwise the file must be writable and its pages are checked first
        (`PRAGMA quick_check`), so that a damaged store is a clear error before anything is written."""
        self.path = str(path)
        self.readonly = readonly
        memory = self.path == ":memory:"
        exists = not memory and Path(self.path).is_file()
        if not memory:
            if (readonly or not create) and not exists:
                raise InputError(f"{self.path}: no store here (run `ingester aoi` first, or choose the store "
                                 "with --db or INGESTER_DB)")
            if create and not exists:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn: sqlite3.Connection | None = None
        try:
            if readonly:
                conn = _connect_readonly(self.path, timeout)
            else:
                if exists:
                    _check_writable(self.path)
                conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.conn = conn
            self._depth = 0
            if readonly:
                self._check_version(timeout)
            else:
                if exists:
                    self._quick_check()
                self.migrate()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise store_error(self.path, exc) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _quick_check(self) -> None:
        """Refuse a store with damaged pages before writing into it (what `status` reads may be intact
        while an index a run writes is not)."""
        problems = [r[0] for r in self.conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise StoreError(f"{self.path}: the store is damaged (PRAGMA quick_check: {'; '.join(problems)}); "
                             f"{_DAMAGED_HINT.format(path=self.path)}")

    def _check_version(self, timeout: float) -> None:
        """A read-only store of an older schema is upgraded by a writable open when possible."""
        current = self.version
        if current == len(MIGRATIONS):
            return
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {current} is newer than this ingester "
                             f"({len(MIGRATIONS)}); upgrade ingester")
        self.conn.close()
        try:
            Store(self.path, timeout).close()
        except StoreError as exc:
            raise StoreError(f"{self.path}: the store was written by an older ingester (schema {current}, this one "
                             f"reads {len(MIGRATIONS)}) and cannot be upgraded here: {exc}") from None
        self.conn = _connect_readonly(self.path, timeout)
        self.conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {current} is newer than this ingester "
                             f"({len(MIGRATIONS)}); upgrade ingester")
        for version in range(current, len(MIGRATIONS)):
            with self.transaction():
                if self.version > version:  # another process migrated it meanwhile
                    continue
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={version + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error); nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except BaseException:  # a full disk fails the commit: the transaction must not stay open
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back what is open, keeping the error that caused it: SQLite has already rolled back
        after a full disk or an I/O error, and a second failure must not hide the first."""
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def savepoint(self, name: str = "sp") -> Iterator[sqlite3.Connection]:
        """A nested unit inside a transaction: rolled back alone on error (the error propagates)."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        """Row counts per table (tests compare them to prove 'store unchanged')."""
        return {t: self.one(f"SELECT count(*) FROM {t}") for t in
                ("aoi", "record", "scene", "tile", "variable", "instance", "dataset", "job_attempt")}

    # -- aoi ------------------------------------------------------------------------------------
    def aoi(self, name: str) -> AoiRow | None:
        row = self.conn.execute(
            "SELECT id, name, settings, lock_run, lock_pid, lock_host, lock_started, lock_heartbeat "
            "FROM aoi WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return AoiRow(row[0], row[1], json.loads(row[2]), *row[3:])

    def require_aoi(self, name: str) -> AoiRow:
        row = self.aoi(name)
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT name FROM aoi ORDER BY name")]
            raise InputError(f"{self.path}: no AOI named {name!r}"
                             + (f" (known: {', '.join(known)})" if known else " (the store has no AOI yet)"))
        return row

    def aoi_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM aoi ORDER BY name")]

    def aoi_name_of(self, aoi_id: int) -> str:
        return self.one("SELECT name FROM aoi WHERE id = ?", (aoi_id,))

    # -- scenes and tiles ----------------------------------------------------------------------
    def scene_rows(self, aoi_id: int, status: str | None = None) -> list[SceneRow]:
        sql = f"SELECT {_SCENE_COLS} FROM scene WHERE aoi_id = ?"
        params: list[Any] = [aoi_id]
        if status:
            sql += " AND status = ?"
            params.append(status)
        return [SceneRow(*r) for r in self.conn.execute(sql + " ORDER BY date_key, id", params)]

    def scene_row(self, scene_id: int) -> SceneRow | None:
        row = self.conn.execute(f"SELECT {_SCENE_COLS} FROM scene WHERE id = ?", (scene_id,)).fetchone()
        return SceneRow(*row) if row else None

    def tile_rows(self, aoi_id: int, status: str | None = None, scene_id: int | None = None) -> list[TileRow]:
        sql = f"SELECT {_TILE_COLS} FROM tile t JOIN scene s ON s.id = t.scene_id WHERE t.aoi_id = ?"
        params: list[Any] = [aoi_id]
        if status:
            sql += " AND t.status = ?"
            params.append(status)
        if scene_id is not None:
            sql += " AND t.scene_id = ?"
            params.append(scene_id)
        return [TileRow(*r) for r in self.conn.execute(sql + " ORDER BY s.date_key, t.scene_id, t.id", params)]

    def tile_row(self, tile_id: int) -> TileRow | None:
        row = self.conn.execute(f"SELECT {_TILE_COLS} FROM tile t JOIN scene s ON s.id = t.scene_id "
                                "WHERE t.id = ?", (tile_id,)).fetchone()
        return TileRow(*row) if row else None

    def scene_tile_rows(self, aoi_id: int) -> list[SceneTileRow]:
        """Every scene of the AOI with each of its tiles, oldest scene first (one query)."""
        scene_cols = ", ".join(f"s.{c.strip()}" for c in _SCENE_COLS.split(","))
        rows = self.conn.execute(
            f"SELECT {scene_cols}, s.tags, s.data, s.wkt, {_TILE_COLS}, t.data FROM scene s "
            "LEFT JOIN tile t ON t.scene_id = s.id WHERE s.aoi_id = ? ORDER BY s.date_key, s.id, t.id", (aoi_id,))
        n = len(_SCENE_COLS.split(","))
        m = len(_TILE_COLS.split(","))
        out = []
        for r in rows:
            tile = TileRow(*r[n + 3:n + 3 + m]) if r[n + 3] is not None else None
            out.append(SceneTileRow(SceneRow(*r[:n]), json.loads(r[n]), json.loads(r[n + 1]), r[n + 2], tile,
                                    json.loads(r[n + 3 + m]) if tile else {}))
        return out

    def scene(self, scene_id: int, with_tiles: bool = False) -> Scene:
        """The `Scene` model of a stored scene (tiles with their current previous/reference)."""
        row = self.conn.execute(
            "SELECT s.source_id, a.name, s.date, s.data, s.tags, s.wkt FROM scene s JOIN aoi a ON a.id = s.aoi_id "
            "WHERE s.id = ?", (scene_id,)).fetchone()
        if row is None:
            raise StoreError(f"no scene with id {scene_id}")
        scene = scene_from_row(*row)
        if with_tiles:
            ids = [r[0] for r in self.conn.execute("SELECT id FROM tile WHERE scene_id = ? ORDER BY id", (scene_id,))]
            scene.tiles = [self.tile(i) for i in ids]
        return scene

    def _ref(self, tile_id: int | None) -> TileRef | None:
        from ingester.scenes import TileRef

        if tile_id is None:
            return None
        row = self.conn.execute("SELECT s.date, s.source_id, t.source_id FROM tile t JOIN scene s "
                                "ON s.id = t.scene_id WHERE t.id = ?", (tile_id,)).fetchone()
        return TileRef(parse_time(row[0]), row[1], row[2]) if row else None

    def tile(self, tile_id: int) -> Tile:
        """The `Tile` model of a stored tile, previous/reference from the current links."""
        row = self.conn.execute("SELECT t.source_id, s.source_id, t.data, t.prev, t.ref FROM tile t "
                                "JOIN scene s ON s.id = t.scene_id WHERE t.id = ?", (tile_id,)).fetchone()
        if row is None:
            raise StoreError(f"no tile with id {tile_id}")
        return tile_from_data(row[0], row[1], row[2], self._ref(row[3]), self._ref(row[4]))

    def aoi_tiles(self, aoi: str, include_failed: bool = False) -> list[Tile]:
        """The AOI's tiles as `Tile` models with previous/reference, oldest first: what the tile
        inventory needs to chain new acquisitions onto (`make_tiles(..., existing=...)`)."""
        row = self.aoi(aoi)
        if row is None:
            return []
        sql = ("SELECT t.id, t.source_id, s.source_id, s.date, t.data, t.prev, t.ref FROM tile t "
               "JOIN scene s ON s.id = t.scene_id WHERE t.aoi_id = ?")
        if not include_failed:
            sql += " AND t.status != 'FAILED'"
        rows = self.conn.execute(sql + " ORDER BY s.date_key, t.id", (row.id,)).fetchall()
        from ingester.scenes import TileRef

        refs = {r[0]: TileRef(parse_time(r[3]), r[2], r[1]) for r in rows}
        def link(tile_id: int | None) -> TileRef | None:
            return None if tile_id is None else refs.get(tile_id) or self._ref(tile_id)

        return [tile_from_data(source_id, scene_sid, data, link(prev), link(ref))
                for _tid, source_id, scene_sid, _date, data, prev, ref in rows]

    def scene_ids_in_aoi(self, aoi: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT s.source_id FROM scene s JOIN aoi a ON a.id = s.aoi_id WHERE a.name = ?", (aoi,))}

    def tile_status_by_key(self, aoi: str) -> dict[tuple[str, str], tuple[int, str]]:
        """(scene source id, tile source id) → (tile id, status) for every tile of the AOI."""
        return {(r[0], r[1]): (r[2], r[3]) for r in self.conn.execute(
            "SELECT s.source_id, t.source_id, t.id, t.status FROM tile t JOIN scene s ON s.id = t.scene_id "
            "JOIN aoi a ON a.id = t.aoi_id WHERE a.name = ?", (aoi,))}

    # -- records -----------------------------------------------------------------------------------
    def records(self, aoi: str | None = None) -> list[RecordRow]:
        """Records with their tags; with `aoi`, only the records of that AOI's scenes."""
        if aoi is None:
            rows = self.conn.execute("SELECT id, name, time, tags FROM record ORDER BY time_key, id")
        else:
            rows = self.conn.execute(
                "SELECT DISTINCT r.id, r.name, r.time, r.tags FROM record r JOIN scene s ON s.record_id = r.id "
                "JOIN aoi a ON a.id = s.aoi_id WHERE a.name = ? ORDER BY r.time_key, r.id", (aoi,))
        return [RecordRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def record(self, record_id: int) -> RecordRow | None:
        r = self.conn.execute("SELECT id, name, time, tags FROM record WHERE id = ?", (record_id,)).fetchone()
        return RecordRow(r[0], r[1], r[2], json.loads(r[3])) if r else None

    # -- layers --------------------------------------------------------------------------------
    def layers(self) -> list[LayerRow]:
        rows = self.conn.execute(
            "SELECT v.id, v.name, i.id, i.name, v.unit, v.dtype, v.nodata, v.min_value, v.max_value, v.bands "
            "FROM variable v LEFT JOIN instance i ON i.variable_id = v.id ORDER BY v.name, i.name")
        return [LayerRow(*r[:6], _nan(r[6]), *r[7:9], json.loads(r[9])) for r in rows]

    def instance_id(self, variable: str, instance: str) -> int | None:
        return self.one("SELECT i.id FROM instance i JOIN variable v ON v.id = i.variable_id "
                        "WHERE v.name = ? AND i.name = ?", (variable, instance))

    # -- datasets --------------------------------------------------------------------------------
    def datasets(self, aoi: str | None = None, record_id: int | None = None,
                 tile_id: int | None = None) -> list[DatasetRow]:
        """Indexed outputs, filtered by AOI name, record and/or tile (for `ingester datasets` and STAC)."""
        sql = ("SELECT d.id, d.record_id, r.name, r.time, d.instance_id, v.name, i.name, a.name, d.tile_id, d.layer, "
               "d.uri, d.bands, d.dtype, d.nodata, d.min_value, d.max_value, d.real_min, d.real_max, d.exponent, "
               "d.extra FROM dataset d JOIN record r ON r.id = d.record_id JOIN instance i ON i.id = d.instance_id "
               "JOIN variable v ON v.id = i.variable_id LEFT JOIN aoi a ON a.id = d.aoi_id WHERE 1=1")
        params: list[Any] = []
        if aoi is not None:
            sql += " AND a.name = ?"
            params.append(aoi)
        if record_id is not None:
            sql += " AND d.record_id = ?"
            params.append(record_id)
        if tile_id is not None:
            sql += " AND d.tile_id = ?"
            params.append(tile_id)
        out = []
        for r in self.conn.execute(sql + " ORDER BY r.time_key, d.id", params):
            out.append(DatasetRow(*r[:11], tuple(json.loads(r[11])), r[12], _nan(r[13]), *r[14:19], json.loads(r[19])))
        return out

    # -- job attempts -------------------------------------------------------------------------------
    def attempts(self, kind: str, job_id: int) -> list[dict[str, Any]]:
        """The error history of a job: every attempt, oldest first."""
        cur = self.conn.execute(
            "SELECT attempt, run_id, host, pid, worker, ran_on, started_at, finished_at, outcome, status, message, "
            "log_path "
            "FROM job_attempt WHERE kind = ? AND job_id = ? ORDER BY id", (kind, job_id))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]


_DAMAGED_HINT = ("restore it from a backup, or copy out what can still be read with "
                 "`sqlite3 {path} .recover | sqlite3 recovered.db` and use that file (--db)")


def store_error(path: str, exc: sqlite3.Error) -> StoreError:
    """What an SQLite error means for the user (exit 1), with what to do about it."""
    text = str(exc)
    lower = text.lower()
    if "disk is full" in lower or "disk full" in lower:
        return StoreError(f"{path}: the disk holding the store is full ({text}); the command stopped: what was "
                          "committed is kept and the rest was rolled back. Free some space and run the command "
                          "again (`ingester run AOI` resumes a run where it stopped)")
    if "readonly" in lower or "read-only" in lower:
        return StoreError(f"{path}: the store is read-only ({text}): its file, its folder or the file system cannot "
                          "be written; commands that change the store cannot run here, read-only commands "
                          "(status, list, …) still work")
    if "not a database" in lower:
        return StoreError(f"{path}: cannot open the store: the file is not an SQLite database ({text}); check the "
                          "path given with --db or INGESTER_DB")
    if "malformed" in lower or "corrupt" in lower:
        return StoreError(f"{path}: the store is damaged ({text}); {_DAMAGED_HINT.format(path=path)}")
    if "unable to open" in lower:
        return StoreError(f"{path}: cannot open the store ({text}): the file or its folder cannot be read, or (for "
                          "commands that change it) written")
    if "locked" in lower or "busy" in lower:
        return StoreError(f"{path}: the store stayed locked by another process ({text}); run the command again "
                          "once that process has finished")
    return StoreError(f"{path}: the store failed: {text}")


def _check_writable(path: str) -> None:
    """The store file and its folder (WAL: the -wal and -shm files live beside it) must be writable
    for a command that changes the store; otherwise say so before anything runs."""
    folder = os.path.dirname(os.path.abspath(path))
    for where in (path, folder):
        if not os.access(where, os.W_OK):
            raise StoreError(f"{path}: the store is read-only ({where} cannot be written: file permissions, an "
                             "immutable file or a read-only file system); commands that change the store cannot "
                             "run here, read-only commands (status, list, …) still work")


def _connect_readonly(path: str, timeout: float) -> sqlite3.Connection:
    """A read-only connection. On a read-only folder (a read-only file system, a folder the user cannot
    write) SQLite cannot create the WAL index beside the file, and opens it only as immutable: nobody
    can be writing it through that folder either."""
    uri = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc) or os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def host_name() -> str:
    return os.uname().nodename


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def monotonic_now() -> float:
    """Wall-clock seconds (leases and backoff are compared across processes and restarts)."""
    return time.time()
