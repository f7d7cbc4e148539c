"""Records, layers (variables and instances) and datasets: the part of the store that stands in for
the Geocube (docs/indexing.md). The rules (reuse of records, layer formats) are `ingester.records`'."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ingester.store.base import StoreBase
from ingester.store.rows import DatasetRow, LayerRow, RecordRow, dumps


class RecordStore(StoreBase):
    # -- records -----------------------------------------------------------------------------------
    def records(self, aoi: str | None = None) -> list[RecordRow]:
        """Records with their tags; with `aoi`, only the records of that AOI's scenes."""
        if aoi is None:
            rows = self.rows("SELECT id, name, time, tags FROM record ORDER BY time_key, id")
        else:
            rows = self.rows("SELECT DISTINCT r.id, r.name, r.time, r.tags FROM record r JOIN scene s "
                             "ON s.record_id = r.id JOIN aoi a ON a.id = s.aoi_id WHERE a.name = ? "
                             "ORDER BY r.time_key, r.id", (aoi,))
        return [RecordRow.from_row(r) for r in rows]

    def record(self, record_id: int) -> RecordRow | None:
        r = self.row("SELECT id, name, time, tags FROM record WHERE id = ?", (record_id,))
        return RecordRow.from_row(r) if r else None

    def find_record(self, name: str, time: str, match_tags: str) -> int | None:
        return self.one("SELECT id FROM record WHERE name = ? AND time = ? AND match_tags = ?",
                        (name, time, match_tags))

    def insert_record(self, name: str, time: str, tags: dict[str, str], match_tags: str, aoi_wkt: str,
                      now: str) -> int:
        cur = self.execute("INSERT INTO record (name, time, tags, match_tags, aoi_wkt, created_at) "
                           "VALUES (?,?,?,?,?,?)", (name, time, dumps(tags), match_tags, aoi_wkt, now))
        return int(cur.lastrowid or 0)

    def set_record_tag(self, record_id: int, key: str, value: str) -> None:
        tags = json.loads(self.one("SELECT tags FROM record WHERE id = ?", (record_id,)))
        tags[key] = value
        self.execute("UPDATE record SET tags = ? WHERE id = ?", (dumps(tags), record_id))

    # -- layers --------------------------------------------------------------------------------------
    def layers(self) -> list[LayerRow]:
        return [LayerRow.from_row(r) for r in self.rows(
            "SELECT v.id AS variable_id, v.name AS variable, i.id AS instance_id, i.name AS instance, v.unit, "
            "v.dtype, v.nodata, v.min_value, v.max_value, v.bands FROM variable v "
            "LEFT JOIN instance i ON i.variable_id = v.id ORDER BY v.name, i.name")]

    def instance_id(self, variable: str, instance: str) -> int | None:
        return self.one("SELECT i.id FROM instance i JOIN variable v ON v.id = i.variable_id "
                        "WHERE v.name = ? AND i.name = ?", (variable, instance))

    def instance_names(self, instance_id: int | str) -> tuple[str, str] | None:
        """(variable, instance) of an instance id."""
        r = self.row("SELECT v.name AS variable, i.name AS instance FROM instance i JOIN variable v "
                     "ON v.id = i.variable_id WHERE i.id = ?", (instance_id,))
        return None if r is None else (r["variable"], r["instance"])

    def variable_format(self, name: str
                        ) -> tuple[int, tuple[str, float | None, float, float], str, list[str]] | None:
        """(variable id, (dtype, nodata, min, max), unit, bands) of a variable (a NaN no-data reads None)."""
        r = self.row("SELECT id, dtype, nodata, min_value, max_value, unit, bands FROM variable WHERE name = ?",
                     (name,))
        return None if r is None else (r["id"], (r["dtype"], r["nodata"], r["min_value"], r["max_value"]),
                                       r["unit"], json.loads(r["bands"] or "[]"))

    def insert_variable(self, name: str, unit: str, dtype: str, nodata: float, min_value: float, max_value: float,
                        bands: Sequence[str], now: str) -> int:
        cur = self.execute("INSERT INTO variable (name, unit, dtype, nodata, min_value, max_value, bands, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (name, unit, dtype, nodata, min_value, max_value, json.dumps(list(bands)), now))
        return int(cur.lastrowid or 0)

    def instance_of(self, variable_id: int, name: str) -> int | None:
        return self.one("SELECT id FROM instance WHERE variable_id = ? AND name = ?", (variable_id, name))

    def insert_instance(self, variable_id: int, name: str) -> int:
        cur = self.execute("INSERT INTO instance (variable_id, name) VALUES (?, ?)", (variable_id, name))
        return int(cur.lastrowid or 0)

    # -- datasets --------------------------------------------------------------------------------------
    def datasets(self, aoi: str | None = None, record_id: int | None = None,
                 tile_id: int | None = None) -> list[DatasetRow]:
        """Indexed outputs, filtered by AOI name, record and/or tile (for `ingester datasets` and STAC)."""
        sql = ("SELECT d.id, d.record_id, r.name AS record_name, r.time AS record_time, d.instance_id, "
               "v.name AS variable, i.name AS instance, a.name AS aoi, d.tile_id, d.layer, d.uri, d.bands, d.dtype, "
               "d.nodata, d.min_value, d.max_value, d.real_min, d.real_max, d.exponent, d.extra FROM dataset d "
               "JOIN record r ON r.id = d.record_id JOIN instance i ON i.id = d.instance_id "
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
        return [DatasetRow.from_row(r) for r in self.rows(sql + " ORDER BY r.time_key, d.id", params)]

    def tile_record(self, tile_id: int) -> tuple[int | None, int] | None:
        """(the record of the tile's scene, the tile's AOI id)."""
        r = self.row("SELECT s.record_id AS record_id, t.aoi_id AS aoi_id FROM tile t JOIN scene s "
                     "ON s.id = t.scene_id WHERE t.id = ?", (tile_id,))
        return None if r is None else (r["record_id"], r["aoi_id"])

    def upsert_dataset(self, record_id: int, instance_id: int, aoi_id: int, tile_id: int, layer: str, uri: str,
                       bands: Sequence[int], dtype: str, nodata: float, min_value: float, max_value: float,
                       real_min: float, real_max: float, exponent: float, extra: dict[str, Any], now: str) -> None:
        """One indexed output; the same (record, instance, URI) indexed again is updated in place."""
        self.execute(
            "INSERT INTO dataset (record_id, instance_id, aoi_id, tile_id, layer, uri, bands, dtype, nodata, "
            "min_value, max_value, real_min, real_max, exponent, extra, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (record_id, instance_id, uri) DO UPDATE SET "
            "tile_id = excluded.tile_id, bands = excluded.bands, dtype = excluded.dtype, nodata = excluded.nodata, "
            "min_value = excluded.min_value, max_value = excluded.max_value, real_min = excluded.real_min, "
            "real_max = excluded.real_max, exponent = excluded.exponent, extra = excluded.extra",
            (record_id, instance_id, aoi_id, tile_id, layer, uri, json.dumps(list(bands)), dtype, nodata, min_value,
             max_value, real_min, real_max, exponent, dumps(extra), now))
