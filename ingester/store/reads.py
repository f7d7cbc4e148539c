"""Reads: scenes and tiles as rows (listings stream them) and as models (job descriptions, the tile
inventory), the monitoring counts, the jobs waiting for a later try, the history of a job."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ingester.errors import StoreError
from ingester.store.base import StoreBase
from ingester.store.jobs import table
from ingester.store.rows import (
    AttemptRow,
    SceneRow,
    SceneTileRow,
    TileRow,
    WaitingJob,
    scene_from_row,
    stored_time,
    tile_from_data,
)
from ingester.store.schema import STATUSES

if TYPE_CHECKING:
    from ingester.scenes import Scene, Tile, TileRef


_TILE_FROM = "FROM tile t JOIN scene s ON s.id = t.scene_id"
# what a Tile model needs: its own row, its scene's source id, and its links
_MODEL_COLS = ("t.id, t.source_id, t.scene_id, s.source_id AS scene_source_id, s.date AS scene_date, t.data, t.prev, "
               "t.ref")


@dataclasses.dataclass(frozen=True)
class JobTiles:
    """What a tile job needs: its previous and reference (ids), and the `Tile` models and scene ids of
    the three."""

    prev: int | None
    ref: int | None
    tiles: dict[int, Tile]
    scene_ids: dict[int, int]
    links: dict[int, tuple[int | None, int | None]] = dataclasses.field(default_factory=dict)  # several tiles


class ReadStore(StoreBase):
    # -- rows -------------------------------------------------------------------------------------
    def scene_rows(self, aoi_id: int, status: str | None = None) -> list[SceneRow]:
        return list(self.iter_scene_rows(aoi_id, status))

    def iter_scene_rows(self, aoi_id: int, status: str | None = None) -> Iterator[SceneRow]:
        sql = f"SELECT {SceneRow.columns()} FROM scene WHERE aoi_id = ?"
        params: list[Any] = [aoi_id]
        if status:
            sql += " AND status = ?"
            params.append(status)
        for r in self.iter_rows(sql + " ORDER BY date_key, id", params):
            yield SceneRow.from_row(r)

    def scene_row(self, scene_id: int) -> SceneRow | None:
        r = self.row(f"SELECT {SceneRow.columns()} FROM scene WHERE id = ?", (scene_id,))
        return SceneRow.from_row(r) if r else None

    def tile_rows(self, aoi_id: int, status: str | None = None, scene_id: int | None = None) -> list[TileRow]:
        return [row for row, _wkt in self.iter_tile_rows(aoi_id, status, scene_id)]

    def iter_tile_rows(self, aoi_id: int, status: str | None = None, scene_id: int | None = None,
                       with_wkt: bool = False) -> Iterator[tuple[TileRow, str]]:
        """The AOI's tiles, oldest scene first, one by one (with `with_wkt`, each one's footprint; else '')."""
        extra = ", t.data AS data" if with_wkt else ""
        sql = f"SELECT {TileRow.columns()}{extra} {_TILE_FROM} WHERE t.aoi_id = ?"
        params: list[Any] = [aoi_id]
        if status:
            sql += " AND t.status = ?"
            params.append(status)
        if scene_id is not None:
            sql += " AND t.scene_id = ?"
            params.append(scene_id)
        for r in self.iter_rows(sql + " ORDER BY s.date_key, t.scene_id, t.id", params):
            yield TileRow.from_row(r), (json.loads(r["data"]).get("wkt", "") if with_wkt else "")

    def tile_row(self, tile_id: int) -> TileRow | None:
        r = self.row(f"SELECT {TileRow.columns()} {_TILE_FROM} WHERE t.id = ?", (tile_id,))
        return TileRow.from_row(r) if r else None

    def scene_tile_rows(self, aoi_id: int) -> list[SceneTileRow]:
        """Every scene of the AOI with each of its tiles, oldest scene first (one query)."""
        rows = self.rows(
            f"SELECT {SceneRow.columns('s', 's_')}, s.tags AS s_tags, s.data AS s_data, s.wkt AS s_wkt, "
            f"{TileRow.columns('t', 's', 't_')}, t.data AS t_data FROM scene s LEFT JOIN tile t ON t.scene_id = s.id "
            "WHERE s.aoi_id = ? ORDER BY s.date_key, s.id, t.id", (aoi_id,))
        out = []
        for r in rows:
            tile = TileRow.from_row(r, "t_") if r["t_id"] is not None else None
            out.append(SceneTileRow(SceneRow.from_row(r, "s_"), json.loads(r["s_tags"]), json.loads(r["s_data"]),
                                    r["s_wkt"], tile, json.loads(r["t_data"]) if tile else {}))
        return out

    # -- models ------------------------------------------------------------------------------------
    def scene(self, scene_id: int, with_tiles: bool = False) -> Scene:
        """The `Scene` model of a stored scene (tiles with their current previous/reference)."""
        found = self.scene_models([scene_id], with_tiles)
        if scene_id not in found:
            raise StoreError(f"no scene with id {scene_id}")
        return found[scene_id]

    def scene_models(self, scene_ids: Sequence[int], with_tiles: bool = False) -> dict[int, Scene]:
        """Scene id → `Scene` model of the stored scenes among `scene_ids` (with their tiles: a query or
        two more, whatever the number of scenes)."""
        ids = list(dict.fromkeys(scene_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        scenes = {r["id"]: scene_from_row(r["source_id"], r["aoi"], r["date"], r["data"], r["tags"], r["wkt"])
                  for r in self.rows("SELECT s.id, s.source_id, a.name AS aoi, s.date, s.data, s.tags, s.wkt "
                                     f"FROM scene s JOIN aoi a ON a.id = s.aoi_id WHERE s.id IN ({marks})", ids)}
        if with_tiles:
            rows = self.rows(f"SELECT {_MODEL_COLS} {_TILE_FROM} WHERE t.scene_id IN ({marks}) ORDER BY t.id", ids)
            for row, tile in zip(rows, self._tile_models(rows), strict=True):
                scenes[row["scene_id"]].tiles.append(tile)
        return scenes

    def tile(self, tile_id: int) -> Tile:
        """The `Tile` model of a stored tile, previous/reference from the current links."""
        return self.tile_models([tile_id])[tile_id]

    def tile_models(self, tile_ids: Iterable[int]) -> dict[int, Tile]:
        """Tile id → `Tile` model (previous/reference from the current links), in two queries."""
        ids = list(dict.fromkeys(tile_ids))
        if not ids:
            return {}
        rows = self.rows(f"SELECT {_MODEL_COLS} {_TILE_FROM} WHERE t.id IN ({','.join('?' * len(ids))})", ids)
        models = dict(zip([r["id"] for r in rows], self._tile_models(rows), strict=True))
        missing = [i for i in ids if i not in models]
        if missing:
            raise StoreError(f"no tile with id {missing[0]}")
        return models

    def job_tiles(self, tile_id: int, known: Container[int] = ()) -> JobTiles:
        """A tile with its current previous and reference, as models, in one query (two when the
        links of a previous or reference are needed). The models of the tiles in `known` (the caller
        has them) are not built."""
        rows = self.rows(f"SELECT {_MODEL_COLS} {_TILE_FROM} WHERE t.id IN (?1, (SELECT prev FROM tile WHERE id = ?1), "
                         "(SELECT ref FROM tile WHERE id = ?1))", (tile_id,))
        own = next((r for r in rows if r["id"] == tile_id), None)
        if own is None:
            raise StoreError(f"no tile with id {tile_id}")
        build = [r for r in rows if r["id"] == tile_id or r["id"] not in known]
        models = dict(zip([r["id"] for r in build], self._tile_models(build, rows), strict=True))
        return JobTiles(own["prev"], own["ref"], models, {r["id"]: r["scene_id"] for r in rows})

    def jobs_tiles(self, tile_ids: Sequence[int], known: Container[int] = ()) -> JobTiles:
        """`job_tiles` of several tiles at once (two or three queries): their links, and the models of
        them and of their previous and reference tiles (those in `known` left out)."""
        ids = list(dict.fromkeys(tile_ids))
        if not ids:
            return JobTiles(None, None, {}, {}, {})
        marks = ",".join("?" * len(ids))
        links = {r["id"]: (r["prev"], r["ref"]) for r in self.rows(
            f"SELECT id, prev, ref FROM tile WHERE id IN ({marks})", ids)}
        wanted = set(ids) | {x for pair in links.values() for x in pair if x is not None}
        rows = self.rows(f"SELECT {_MODEL_COLS} {_TILE_FROM} WHERE t.id IN ({','.join('?' * len(wanted))})",
                         tuple(wanted))
        own = set(ids)
        build = [r for r in rows if r["id"] in own or r["id"] not in known]
        models = dict(zip([r["id"] for r in build], self._tile_models(build, rows), strict=True))
        return JobTiles(None, None, models, {r["id"]: r["scene_id"] for r in rows}, links)

    def _tile_models(self, rows: Sequence[Any], fetched: Sequence[Any] = ()) -> list[Tile]:
        """`Tile` models of rows of `_MODEL_COLS`; their links (unless among `fetched` rows) are looked up
        in one more query."""
        from ingester.scenes import TileRef

        refs: dict[int, TileRef] = {r["id"]: TileRef(stored_time(r["scene_date"]), r["scene_source_id"], r["source_id"])
                                    for r in (*rows, *fetched)}
        links = {x for r in rows for x in (r["prev"], r["ref"]) if x is not None and x not in refs}
        refs.update(self._refs(links))
        return [tile_from_data(r["source_id"], r["scene_source_id"], r["data"],
                               None if r["prev"] is None else refs.get(r["prev"]),
                               None if r["ref"] is None else refs.get(r["ref"])) for r in rows]

    def _refs(self, tile_ids: Iterable[int]) -> dict[int, TileRef]:
        from ingester.scenes import TileRef

        ids = list(tile_ids)
        if not ids:
            return {}
        return {r["id"]: TileRef(stored_time(r["date"]), r["scene"], r["tile"]) for r in self.rows(
            f"SELECT t.id, s.date, s.source_id AS scene, t.source_id AS tile {_TILE_FROM} "
            f"WHERE t.id IN ({','.join('?' * len(ids))})", ids)}

    def aoi_tiles(self, aoi: str, include_failed: bool = False) -> list[Tile]:
        """The AOI's tiles as `Tile` models with previous/reference, oldest first: what the tile
        inventory needs to chain new acquisitions onto (`make_tiles(..., existing=...)`)."""
        aoi_id = self.one("SELECT id FROM aoi WHERE name = ?", (aoi,))
        if aoi_id is None:
            return []
        failed = "" if include_failed else " AND t.status != 'FAILED'"
        rows = self.rows(f"SELECT {_MODEL_COLS} {_TILE_FROM} WHERE t.aoi_id = ?{failed} ORDER BY s.date_key, t.id",
                         (aoi_id,))
        return self._tile_models(rows)

    def scene_ids_in_aoi(self, aoi: str) -> set[str]:
        return set(self.column("SELECT s.source_id FROM scene s JOIN aoi a ON a.id = s.aoi_id WHERE a.name = ?",
                               (aoi,)))

    def tile_status_by_key(self, aoi: str) -> dict[tuple[str, str], tuple[int, str]]:
        """(scene source id, tile source id) → (tile id, status) for every tile of the AOI."""
        return {(r["scene"], r["tile"]): (r["id"], r["status"]) for r in self.rows(
            f"SELECT s.source_id AS scene, t.source_id AS tile, t.id, t.status {_TILE_FROM} "
            "JOIN aoi a ON a.id = t.aoi_id WHERE a.name = ?", (aoi,))}

    def scenes_in_aoi(self, aoi: str) -> list[tuple[str, int, str, float]]:
        """(source id, id, status, not_before) of every scene of the AOI."""
        return [(r["source_id"], r["id"], r["status"], r["not_before"]) for r in self.rows(
            "SELECT s.source_id, s.id, s.status, s.not_before FROM scene s JOIN aoi a ON a.id = s.aoi_id "
            "WHERE a.name = ?", (aoi,))]

    def scene_ids(self, aoi_id: int, statuses: Sequence[str], due_by: float) -> list[int]:
        """The AOI's scenes in the given statuses, oldest first, the PENDING ones only when due by `due_by`."""
        marks = ",".join("?" * len(statuses))
        return self.column(f"SELECT id FROM scene WHERE aoi_id = ? AND status IN ({marks}) AND (status != 'PENDING' "
                           "OR not_before <= ?) ORDER BY date_key, id", (aoi_id, *statuses, due_by))

    def tile_graph_names(self, aoi_id: int) -> dict[int, str]:
        """tile id → the name of its tile graph ('' when it has none), for every tile of an AOI."""
        return {r["id"]: r["graph_name"] or "" for r in self.rows(
            "SELECT id, json_extract(data, '$.graph_name') AS graph_name FROM tile WHERE aoi_id = ?", (aoi_id,))}

    def tile_graphs(self, aoi_id: int, statuses: Sequence[str]) -> dict[str, int]:
        """Tile graph name → number of the AOI's tiles in the given statuses."""
        marks = ",".join("?" * len(statuses))
        return {r["graph"] or "": r["n"] for r in self.rows(
            f"SELECT json_extract(data, '$.graph_name') AS graph, count(*) AS n FROM tile WHERE aoi_id = ? "
            f"AND status IN ({marks}) GROUP BY 1", (aoi_id, *statuses))}

    # -- monitoring ------------------------------------------------------------------------------
    def status_counts(self, kind: str, aoi_id: int, done_scenes_only: bool = False) -> dict[str, int]:
        """Status → number of the AOI's jobs (every status present; with `done_scenes_only`, the tiles
        of DONE scenes)."""
        counts = dict.fromkeys(STATUSES, 0)
        if done_scenes_only:
            rows = self.rows(f"SELECT t.status, count(*) AS n {_TILE_FROM} WHERE t.aoi_id = ? AND s.status = 'DONE' "
                             "GROUP BY t.status", (aoi_id,))
        else:
            rows = self.rows(f"SELECT status, count(*) AS n FROM {table(kind)} WHERE aoi_id = ? GROUP BY status",
                             (aoi_id,))
        for r in rows:
            counts[r["status"]] = r["n"]
        return counts

    def count_jobs(self, kind: str, aoi_id: int, status: str) -> int:
        return self.one(f"SELECT count(*) FROM {table(kind)} WHERE aoi_id = ? AND status = ?", (aoi_id, status))

    def root_tiles(self, aoi_id: int) -> int:
        """Tiles that are not FAILED and have neither previous nor reference."""
        return self.one("SELECT count(*) FROM tile WHERE aoi_id = ? AND prev IS NULL AND ref IS NULL "
                        "AND status != 'FAILED'", (aoi_id,))

    def first_root_date(self, aoi_id: int) -> str | None:
        """The date of the earliest scene with a root tile."""
        return self.one("SELECT s.date FROM scene s WHERE s.aoi_id = ? AND EXISTS (SELECT 1 FROM tile t "
                        "WHERE t.scene_id = s.id AND t.prev IS NULL AND t.ref IS NULL AND t.status != 'FAILED') "
                        "ORDER BY s.date_key LIMIT 1", (aoi_id,))

    def last_leaf_date(self, aoi_id: int) -> str | None:
        """The date of the latest scene with a leaf tile (one that no tile has as previous)."""
        return self.one("SELECT s.date FROM scene s WHERE s.aoi_id = ? AND EXISTS (SELECT 1 FROM tile t "
                        "WHERE t.scene_id = s.id AND t.status != 'FAILED' AND NOT EXISTS (SELECT 1 FROM tile c "
                        "WHERE c.prev = t.id)) ORDER BY s.date_key DESC LIMIT 1", (aoi_id,))

    def waiting_count(self, kind: str, aoi_id: int, now: float) -> int:
        """PENDING jobs, not running, whose next try is after `now`."""
        return self.one(f"SELECT count(*) FROM {table(kind)} WHERE aoi_id = ? AND status = 'PENDING' "
                        "AND lease_run IS NULL AND not_before > ?", (aoi_id, now))

    def waiting_jobs(self, aoi_id: int, now: float, limit: int) -> list[WaitingJob]:
        """Up to `limit` of those jobs, soonest next try first."""
        return [WaitingJob(r["kind"], r["id"], r["source_id"], r["scene_source_id"], r["not_before"],
                           r["deferred_since"], r["message"]) for r in self.rows(
            "SELECT 'scene' AS kind, id, source_id, '' AS scene_source_id, not_before, deferred_since, message "
            "FROM scene WHERE aoi_id = ?1 AND status = 'PENDING' AND lease_run IS NULL AND not_before > ?2 UNION ALL "
            "SELECT 'tile', t.id, t.source_id, s.source_id, t.not_before, t.deferred_since, t.message "
            f"{_TILE_FROM} WHERE t.aoi_id = ?1 AND t.status = 'PENDING' AND t.lease_run IS NULL "
            "AND t.not_before > ?2 ORDER BY 5, 1, 2 LIMIT ?3", (aoi_id, now, limit))]

    def new_tiles(self, aoi_id: int) -> list[tuple[int, str, int | None, int | None]]:
        """(id, its scene's status, prev, ref) of the AOI's NEW tiles."""
        return [(r["id"], r["scene_status"], r["prev"], r["ref"]) for r in self.rows(
            f"SELECT t.id, s.status AS scene_status, t.prev, t.ref {_TILE_FROM} WHERE t.aoi_id = ? "
            "AND t.status = 'NEW'", (aoi_id,))]

    def tile_statuses(self, tile_ids: Iterable[int]) -> dict[int, str]:
        ids = list(tile_ids)
        if not ids:
            return {}
        return {r["id"]: r["status"] for r in self.rows(
            f"SELECT id, status FROM tile WHERE id IN ({','.join('?' * len(ids))})", ids)}

    def dot_rows(self, aoi_id: int) -> tuple[list[tuple[int, str, str]], list[tuple[int, int, str, str, int | None]]]:
        """(scenes: (id, source id, status) by id; tiles: (id, scene id, source id, status, prev) by scene, id)."""
        scenes = [(r["id"], r["source_id"], r["status"]) for r in self.rows(
            "SELECT id, source_id, status FROM scene WHERE aoi_id = ? ORDER BY id", (aoi_id,))]
        tiles = [(r["id"], r["scene_id"], r["source_id"], r["status"], r["prev"]) for r in self.rows(
            "SELECT id, scene_id, source_id, status, prev FROM tile WHERE aoi_id = ? ORDER BY scene_id, id",
            (aoi_id,))]
        return scenes, tiles

    # -- history ----------------------------------------------------------------------------------
    def attempts(self, kind: str, job_id: int) -> list[dict[str, Any]]:
        """The error history of a job: every attempt, oldest first."""
        return [dict(r) for r in self.rows(f"SELECT {AttemptRow.COLUMNS} FROM job_attempt WHERE kind = ? "
                                           "AND job_id = ? ORDER BY id", (kind, job_id))]
