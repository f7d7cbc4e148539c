"""The store's schema: `MIGRATIONS[i]` brings schema version i to i + 1 (`PRAGMA user_version`).

A migration is a script of SQL statements run in one transaction by `Store.migrate`; a new one takes
the next free number (append it, never edit a released one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

STATUSES = ("NEW", "PENDING", "DONE", "RETRY", "FAILED")

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
    # 4: claims that scale (docs/workflow.md, "Leases and locks"). A tile keeps its scene's date key
    # (`date_key`, set when it is inserted; a trigger fills it for rows written by hand), so that the
    # claim walks a partial index of the ready jobs in claim order instead of sorting every PENDING
    # tile on a correlated subquery; the scene claim walks its own partial index instead of the
    # finished scenes. The open attempts of an AOI (re-queued when a run takes over) get theirs too.
    """
    ALTER TABLE tile ADD COLUMN date_key TEXT NOT NULL DEFAULT '';
    UPDATE tile SET date_key = (SELECT s.date_key FROM scene s WHERE s.id = tile.scene_id);
    CREATE TRIGGER tile_date_key AFTER INSERT ON tile WHEN NEW.date_key = '' BEGIN
        UPDATE tile SET date_key = (SELECT s.date_key FROM scene s WHERE s.id = NEW.scene_id) WHERE id = NEW.id;
    END;
    CREATE INDEX tile_claim ON tile (aoi_id, date_key, id) WHERE status = 'PENDING' AND lease_run IS NULL;
    CREATE INDEX scene_claim ON scene (aoi_id, date_key, id) WHERE status = 'PENDING' AND lease_run IS NULL;
    CREATE INDEX job_attempt_open ON job_attempt (aoi_id) WHERE finished_at IS NULL;
    """,
)


def statements(script: str) -> Iterator[str]:
    """The statements of a migration script, split where SQLite says a statement is complete (a
    trigger's body holds semicolons of its own)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
