"""Jobs (scenes and tiles): their workflow columns, releases, the fail cascade's links, claims and
leases, attempts. The rules are `ingester.workflow`'s and `ingester.coordinator`'s; these are the
statements they run.

Claims walk the partial indexes `scene_claim` / `tile_claim` (migration 4): the ready jobs only, in
claim order (oldest scene first, then id), so that a claim costs the same at 1,000 and at 200,000 jobs.
`CLAIM_SQL` is what `tests/test_store_plans.py` checks with EXPLAIN QUERY PLAN.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ingester.errors import StoreError
from ingester.store.base import StoreBase

KINDS = ("scene", "tile")
# the columns a workflow change may set (update_job refuses any other name)
JOB_COLUMNS = frozenset({"status", "message", "retry_countdown", "temporary_count", "attempts", "not_before",
                         "lease_run", "lease_expires", "prev", "ref", "failed_prev", "failed_ref", "deferred_since",
                         "updated_at"})

# a NEW tile whose scene is DONE and whose previous and reference are null (or itself) or DONE
READY = ("status = 'NEW' AND (SELECT status FROM scene WHERE scene.id = tile.scene_id) = 'DONE' "
         "AND (prev IS NULL OR (SELECT p.status FROM tile p WHERE p.id = tile.prev) = 'DONE') "
         "AND (ref IS NULL OR ref = id OR (SELECT r.status FROM tile r WHERE r.id = tile.ref) = 'DONE')")

# ready jobs, oldest scene first: tiles and scenes alike keep their scene's date key
CLAIM_SQL = {kind: f"SELECT id, attempts FROM {kind} WHERE aoi_id = ? AND status = 'PENDING' AND lease_run IS NULL "
                   "AND not_before <= ? ORDER BY date_key, id LIMIT ?" for kind in KINDS}


def table(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(kind)
    return kind


class JobStore(StoreBase):
    # -- one job ----------------------------------------------------------------------------------
    def job(self, kind: str, job_id: int) -> dict[str, Any]:
        """Every column of a job, by name."""
        row = self.row(f"SELECT * FROM {table(kind)} WHERE id = ?", (job_id,))
        if row is None:
            raise StoreError(f"no {kind} with id {job_id}")
        return dict(row)

    def job_status(self, kind: str, job_id: int) -> str | None:
        return self.one(f"SELECT status FROM {table(kind)} WHERE id = ?", (job_id,))

    def job_data(self, kind: str, job_id: int) -> dict[str, Any]:
        """The job's stored attributes (`data`), {} when it has none."""
        data = self.one(f"SELECT data FROM {table(kind)} WHERE id = ?", (job_id,))
        return json.loads(data) if data else {}

    def job_attempts(self, kind: str, job_id: int) -> int:
        return self.one(f"SELECT attempts FROM {table(kind)} WHERE id = ?", (job_id,))

    def job_statuses(self, aoi_id: int) -> dict[tuple[str, int], str]:
        """(kind, id) → status of every scene and tile of an AOI."""
        return {(r["kind"], r["id"]): r["status"] for r in self.rows(
            "SELECT 'scene' AS kind, id, status FROM scene WHERE aoi_id = ?1 "
            "UNION ALL SELECT 'tile' AS kind, id, status FROM tile WHERE aoi_id = ?1", (aoi_id,))}

    def update_job(self, kind: str, job_id: int, values: dict[str, Any]) -> None:
        """Set workflow columns of one job."""
        unknown = set(values) - JOB_COLUMNS
        if unknown:
            raise ValueError(f"not a job column: {', '.join(sorted(unknown))}")
        cols = ", ".join(f"{k} = ?" for k in values)
        self.execute(f"UPDATE {table(kind)} SET {cols} WHERE id = ?", (*values.values(), job_id))

    def job_names(self, kind: str, job_id: int) -> tuple[str, str]:
        """(scene source id, tile source id; '' for a scene) of a job."""
        if kind == "tile":
            row = self.row("SELECT s.source_id AS scene, t.source_id AS tile FROM tile t JOIN scene s "
                           "ON s.id = t.scene_id WHERE t.id = ?", (job_id,))
            return (row["scene"], row["tile"]) if row else ("", "")
        return self.one("SELECT source_id FROM scene WHERE id = ?", (job_id,)) or "", ""

    # -- releases --------------------------------------------------------------------------------
    def release_tiles(self, tile_ids: Iterable[int], now: str) -> list[int]:
        """NEW → PENDING for those of the given tiles that are ready; returns them."""
        released = []
        for tid in tile_ids:
            if self.execute(f"UPDATE tile SET status = 'PENDING', not_before = 0, updated_at = ? WHERE id = ? "
                            f"AND {READY}", (now, tid)).rowcount:
                released.append(tid)
        return released

    def release_ready_tiles(self, aoi_id: int, now: str) -> int:
        """Every ready NEW tile of the AOI released, in one statement; returns how many."""
        return self.execute(f"UPDATE tile SET status = 'PENDING', not_before = 0, updated_at = ? WHERE aoi_id = ? "
                            f"AND {READY}", (now, aoi_id)).rowcount

    def new_tiles_linked_to(self, tile_id: int) -> list[int]:
        """NEW tiles whose previous or reference is this tile."""
        return self.column("SELECT id FROM tile WHERE (prev = ?1 OR ref = ?1) AND status = 'NEW'", (tile_id,))

    def new_tiles_of_scene(self, scene_id: int) -> list[int]:
        return self.column("SELECT id FROM tile WHERE scene_id = ? AND status = 'NEW' ORDER BY id", (scene_id,))

    def release_linked(self, tile_ids: Sequence[int], now: str) -> list[int]:
        """The ready NEW tiles whose previous or reference is one of these tiles, released in one statement."""
        marks = ",".join("?" * len(tile_ids))
        return sorted(self.column(f"UPDATE tile SET status = 'PENDING', not_before = 0, updated_at = ? "
                                  f"WHERE (prev IN ({marks}) OR ref IN ({marks})) AND {READY} RETURNING id",
                                  (now, *tile_ids, *tile_ids)))

    def release_scene_tiles(self, scene_ids: Sequence[int], now: str) -> list[int]:
        """The ready NEW tiles of these scenes, released in one statement."""
        return sorted(self.column(f"UPDATE tile SET status = 'PENDING', not_before = 0, updated_at = ? "
                                  f"WHERE scene_id IN ({','.join('?' * len(scene_ids))}) AND {READY} RETURNING id",
                                  (now, *scene_ids)))

    def statuses(self, kind: str, job_ids: Sequence[int]) -> dict[int, str]:
        return {r["id"]: r["status"] for r in self.rows(
            f"SELECT id, status FROM {table(kind)} WHERE id IN ({','.join('?' * len(job_ids))})", tuple(job_ids))}

    def finish_jobs(self, kind: str, job_ids: Sequence[int], now: str) -> None:
        """PENDING → DONE for these jobs in one statement: message, backoff, temporary count, lease and
        deferral cleared."""
        self.execute(f"UPDATE {table(kind)} SET status = 'DONE', message = '', not_before = 0, temporary_count = 0, "
                     "lease_run = NULL, lease_expires = NULL, deferred_since = NULL, updated_at = ? "
                     f"WHERE id IN ({','.join('?' * len(job_ids))}) AND status = 'PENDING'", (now, *job_ids))

    def hold_dependents(self, tile_id: int, now: str) -> None:
        """The PENDING (not running) tiles that take this tile as previous or reference wait for it again."""
        self.execute("UPDATE tile SET status = 'NEW', updated_at = ?1 WHERE (prev = ?2 OR ref = ?2) AND id != ?2 "
                     "AND status = 'PENDING' AND lease_run IS NULL", (now, tile_id))

    # -- the fail cascade's links ----------------------------------------------------------------------
    def tile_and_scene_status(self, tile_id: int) -> tuple[str, str] | None:
        row = self.row("SELECT t.status AS tile, s.status AS scene FROM tile t JOIN scene s ON s.id = t.scene_id "
                       "WHERE t.id = ?", (tile_id,))
        return None if row is None else (row["tile"], row["scene"])

    def children(self, tile_id: int) -> list[int]:
        """Tiles whose previous is this one, earliest scene first (then id)."""
        return self.column("SELECT t.id FROM tile t JOIN scene s ON s.id = t.scene_id WHERE t.prev = ? "
                           "ORDER BY s.date_key, t.id", (tile_id,))

    def tiles_of_scene(self, scene_id: int, statuses: Sequence[str] = ()) -> list[tuple[int, str]]:
        """(id, status) of the scene's tiles (in the given statuses), by id."""
        where = f" AND status IN ({','.join('?' * len(statuses))})" if statuses else ""
        return [(r["id"], r["status"]) for r in self.rows(
            f"SELECT id, status FROM tile WHERE scene_id = ?{where} ORDER BY id", (scene_id, *statuses))]

    def set_links(self, tile_id: int, prev: int | None, ref: int | None, now: str) -> None:
        self.execute("UPDATE tile SET prev = ?, ref = ?, updated_at = ? WHERE id = ?", (prev, ref, now, tile_id))

    def set_prev(self, tile_id: int, prev: int | None, now: str) -> None:
        self.execute("UPDATE tile SET prev = ?, updated_at = ? WHERE id = ?", (prev, now, tile_id))

    def move_refs(self, old: int, new: int | None, now: str, keep: int | None = None) -> None:
        """Tiles referencing `old` reference `new` instead (except the tile `keep`)."""
        if keep is None:
            self.execute("UPDATE tile SET ref = ?, updated_at = ? WHERE ref = ?", (new, now, old))
        else:
            self.execute("UPDATE tile SET ref = ?, updated_at = ? WHERE ref = ? AND id != ?", (new, now, old, keep))

    def earlier_link(self, tile_id: int, column: str) -> tuple[str, int | None] | None:
        """(status, the tile's `failed_prev` or `failed_ref`): the link it had before its own cascade."""
        if column not in ("failed_prev", "failed_ref"):
            raise ValueError(column)
        row = self.row(f"SELECT status, {column} AS link FROM tile WHERE id = ?", (tile_id,))
        return None if row is None else (row["status"], row["link"])

    def root_of(self, tile_id: int) -> int | None:
        """The reference of a tile, or itself when it has none (the root of its chain)."""
        return self.one("SELECT coalesce(ref, id) FROM tile WHERE id = ?", (tile_id,))

    def jobs_in_status(self, kind: str, aoi_id: int, statuses: Sequence[str], by: str = "id") -> list[int]:
        """Ids of the AOI's jobs in the given statuses, by id or by (scene date, id)."""
        marks = ",".join("?" * len(statuses))
        if by == "id":
            return self.column(f"SELECT id FROM {table(kind)} WHERE aoi_id = ? AND status IN ({marks}) ORDER BY id",
                               (aoi_id, *statuses))
        if kind == "scene":
            return self.column(f"SELECT id FROM scene WHERE aoi_id = ? AND status IN ({marks}) "
                               "ORDER BY date_key, id", (aoi_id, *statuses))
        return self.column(f"SELECT t.id FROM tile t JOIN scene s ON s.id = t.scene_id WHERE t.aoi_id = ? "
                           f"AND t.status IN ({marks}) ORDER BY s.date_key, t.id", (aoi_id, *statuses))

    def make_due(self, kind: str, now: float, now_text: str, job_id: int | None = None,
                 aoi_id: int | None = None) -> int:
        """PENDING jobs (not running) waiting past `now` become due: one job, or every job of an AOI."""
        where, param = ("id = ?", job_id) if job_id is not None else ("aoi_id = ?", aoi_id)
        return self.execute(f"UPDATE {table(kind)} SET not_before = 0, updated_at = ? WHERE {where} "
                            "AND status = 'PENDING' AND lease_run IS NULL AND not_before > ?",
                            (now_text, param, now)).rowcount

    # -- runs: claims, leases, attempts --------------------------------------------------------------
    def claim(self, kind: str, aoi_id: int, run_id: str, limit: int, now: float, expires: float, host: str,
              pid: int, worker: str, started: str) -> list[tuple[int, int, int]]:
        """Lease up to `limit` ready jobs of one kind (call inside a transaction): each gets its next
        attempt number and an open `job_attempt` row. Returns (job id, attempt, attempt row id)."""
        ids = [r[0] for r in self.conn.execute(CLAIM_SQL[table(kind)], (aoi_id, now, limit))]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        self.execute(f"UPDATE {kind} SET lease_run = ?, lease_expires = ?, attempts = attempts + 1 "
                     f"WHERE id IN ({marks})", (run_id, expires, *ids))
        rows = self.conn.execute(
            f"INSERT INTO job_attempt (kind, job_id, aoi_id, attempt, run_id, host, pid, worker, started_at) "
            f"SELECT ?, id, aoi_id, attempts, ?, ?, ?, ?, ? FROM {kind} WHERE id IN ({marks}) "
            "RETURNING id, job_id, attempt", (kind, run_id, host, pid, worker, started, *ids)).fetchall()
        made = {job_id: (job_id, attempt, row_id) for row_id, job_id, attempt in rows}
        return [made[job_id] for job_id in ids]

    def finish_attempt(self, attempt_row: int, started_at: str | None, finished_at: str, outcome: str,
                       status: str | None, message: str, log_path: str) -> None:
        self.finish_attempts([(started_at, finished_at, outcome, status, message, log_path, attempt_row)])

    def finish_attempts(self, rows: Sequence[tuple[str | None, str, str, str | None, str, str, int]]) -> None:
        """Close attempts: (started_at or None to keep it, finished_at, outcome, status, message, log path,
        attempt row id) each."""
        self.conn.executemany("UPDATE job_attempt SET started_at = coalesce(?, started_at), finished_at = ?, "
                              "outcome = ?, status = ?, message = ?, log_path = ? WHERE id = ?", rows)

    def add_attempt(self, kind: str, job_id: int, aoi_id: int, attempt: int, run_id: str, host: str, pid: int,
                    at: str, outcome: str, status: str, message: str) -> None:
        """A finished attempt row for a change made by hand (`fail`, `retry`, `verify`: outcome `manual`)."""
        self.execute("INSERT INTO job_attempt (kind, job_id, aoi_id, attempt, run_id, host, pid, worker, started_at, "
                     "finished_at, outcome, status, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (kind, job_id, aoi_id, attempt, run_id, host, pid, "", at, at, outcome, status, message))

    def requeue_abandoned(self, aoi_id: int, run_id: str, now: str) -> int:
        """Jobs leased by another (dead) run go back to the queue; their open attempts end `abandoned`."""
        n = 0
        for kind in KINDS:
            n += self.execute(f"UPDATE {kind} SET lease_run = NULL, lease_expires = NULL WHERE aoi_id = ? "
                              "AND lease_run IS NOT NULL AND lease_run != ?", (aoi_id, run_id)).rowcount
        self.execute("UPDATE job_attempt SET finished_at = ?, outcome = 'abandoned', status = 'PENDING', "
                     "message = 'the run was interrupted; job re-queued' WHERE aoi_id = ? AND finished_at IS NULL "
                     "AND run_id != ?", (now, aoi_id, run_id))
        return n

    def next_try(self, aoi_id: int, leased: bool = False) -> float | None:
        """The earliest `not_before` of the AOI's PENDING jobs that are not running (with `leased`, of
        all its PENDING jobs); None when there is none."""
        lease = "" if leased else " AND lease_run IS NULL"
        return self.one(f"SELECT min(nb) FROM (SELECT min(not_before) AS nb FROM scene WHERE aoi_id = ?1 "
                        f"AND status = 'PENDING'{lease} UNION ALL SELECT min(not_before) FROM tile WHERE aoi_id = ?1 "
                        f"AND status = 'PENDING'{lease})", (aoi_id,))

    def runnable_jobs(self, aoi_id: int) -> int:
        """PENDING scenes and tiles and NEW tiles: the jobs a run may still run."""
        return self.one("SELECT (SELECT count(*) FROM scene WHERE aoi_id = ?1 AND status = 'PENDING') + "
                        "(SELECT count(*) FROM tile WHERE aoi_id = ?1 AND status IN ('PENDING', 'NEW'))", (aoi_id,))

    # -- ingestion ------------------------------------------------------------------------------------
    def insert_scene(self, aoi_id: int, source_id: str, date: str, status: str, retry_countdown: int,
                     record_id: int, data: str, tags: str, wkt: str, now: str) -> int:
        cur = self.execute("INSERT INTO scene (aoi_id, source_id, date, status, retry_countdown, record_id, data, "
                           "tags, wkt, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (aoi_id, source_id, date, status, retry_countdown, record_id, data, tags, wkt, now))
        return int(cur.lastrowid or 0)

    def next_tile_id(self) -> int:
        """The id the next tile gets (call inside the transaction that inserts it)."""
        return int(self.one("SELECT coalesce(max(id), 0) + 1 FROM tile"))

    def insert_tiles(self, rows: Sequence[tuple[int, int, int, str, str, int, str, str, int | None, int | None]]
                     ) -> None:
        """Tiles of stored scenes with their ids and links: (id, scene id, AOI id, source id, status, retry
        countdown, data, updated_at, prev, ref) each, in one prepared statement (call inside a
        transaction: the links are checked when it commits, so a tile may link to one inserted after
        it). Each keeps its scene's date key (the claim order). sqlite-utils' `insert_all` was measured
        about 4x slower for this (README, "Development": bench.bulk_insert)."""
        self.execute("PRAGMA defer_foreign_keys = ON")
        self.conn.executemany("INSERT INTO tile (id, scene_id, aoi_id, source_id, status, retry_countdown, data, "
                              "updated_at, prev, ref, date_key) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                              "(SELECT date_key FROM scene WHERE id = ?2))", rows)

    def insert_tile(self, scene_id: int, aoi_id: int, source_id: str, status: str, retry_countdown: int,
                    data: str, now: str) -> int:
        """A tile of a stored scene; it keeps its scene's date key (the claim order)."""
        cur = self.execute("INSERT INTO tile (scene_id, aoi_id, source_id, status, retry_countdown, data, updated_at, "
                           "date_key) VALUES (?,?,?,?,?,?,?,(SELECT date_key FROM scene WHERE id = ?))",
                           (scene_id, aoi_id, source_id, status, retry_countdown, data, now, scene_id))
        return int(cur.lastrowid or 0)

    # -- repairs of a scene (ingester refresh, remove) ------------------------------------------------------
    def set_scene_data(self, scene_id: int, data: dict[str, Any], now: str) -> None:
        from ingester.store.rows import dumps

        self.execute("UPDATE scene SET data = ?, updated_at = ? WHERE id = ?", (dumps(data), now, scene_id))

    def tile_links(self, aoi_id: int, except_scene: int) -> dict[int, tuple[int | None, int | None]]:
        """prev/ref of the AOI's tiles outside a scene."""
        return {r["id"]: (r["prev"], r["ref"]) for r in self.rows(
            "SELECT id, prev, ref FROM tile WHERE aoi_id = ? AND scene_id != ?", (aoi_id, except_scene))}

    def delete_scene(self, scene_id: int, tile_ids: Sequence[int]) -> None:
        """The scene, its tiles and the attempts of both deleted; links of other tiles to its tiles cleared."""
        marks = ",".join("?" * len(tile_ids))
        if tile_ids:
            for column in ("prev", "ref", "failed_prev", "failed_ref"):
                self.execute(f"UPDATE tile SET {column} = NULL WHERE {column} IN ({marks}) AND scene_id != ?",
                             (*tile_ids, scene_id))
            self.execute(f"DELETE FROM job_attempt WHERE kind = 'tile' AND job_id IN ({marks})", tuple(tile_ids))
        self.execute("DELETE FROM job_attempt WHERE kind = 'scene' AND job_id = ?", (scene_id,))
        self.execute("DELETE FROM tile WHERE scene_id = ?", (scene_id,))
        self.execute("DELETE FROM scene WHERE id = ?", (scene_id,))
