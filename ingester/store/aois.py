"""AOIs: their rows, the payload settings they keep, and the lock columns (the policy of the lock, who
may take it and when it is stale, is `ingester.locks`)."""

from __future__ import annotations

from typing import Any

from ingester.errors import InputError
from ingester.store.base import StoreBase
from ingester.store.rows import AoiRow, dumps


class AoiStore(StoreBase):
    def aoi(self, name: str) -> AoiRow | None:
        row = self.row(f"SELECT {AoiRow.COLUMNS} FROM aoi WHERE name = ?", (name,))
        return None if row is None else AoiRow.from_row(row)

    def require_aoi(self, name: str) -> AoiRow:
        row = self.aoi(name)
        if row is None:
            known = self.aoi_names()
            raise InputError(f"{self.path}: no AOI named {name!r}"
                             + (f" (known: {', '.join(known)})" if known else " (the store has no AOI yet)"))
        return row

    def aoi_names(self) -> list[str]:
        return self.column("SELECT name FROM aoi ORDER BY name")

    def aoi_name_of(self, aoi_id: int) -> str:
        return self.one("SELECT name FROM aoi WHERE id = ?", (aoi_id,))

    def create_aoi(self, name: str, now: str) -> int:
        """The AOI's id, its row created when new (with empty settings: `set_aoi_settings` fills them)."""
        self.execute("INSERT INTO aoi (name, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                     (name, now, now))
        return self.one("SELECT id FROM aoi WHERE name = ?", (name,))

    def set_aoi_settings(self, name: str, settings: dict[str, Any], now: str) -> None:
        self.execute("UPDATE aoi SET settings = ?, updated_at = ? WHERE name = ?", (dumps(settings), now, name))

    def aoi_overview(self) -> list[dict[str, Any]]:
        """Every AOI with its lock and its number of scenes and tiles (`ingester aois`)."""
        rows = self.rows(f"SELECT {AoiRow.COLUMNS}, (SELECT count(*) FROM scene s WHERE s.aoi_id = aoi.id) AS scenes, "
                         "(SELECT count(*) FROM tile t WHERE t.aoi_id = aoi.id) AS tiles FROM aoi ORDER BY name")
        return [{"aoi": AoiRow.from_row(r), "scenes": r["scenes"], "tiles": r["tiles"]} for r in rows]

    # -- the lock columns ---------------------------------------------------------------------------
    def set_lock(self, aoi_id: int, run_id: str, pid: int, host: str, started: str, heartbeat: float) -> None:
        self.execute("UPDATE aoi SET lock_run = ?, lock_pid = ?, lock_host = ?, lock_started = ?, lock_heartbeat = ? "
                     "WHERE id = ?", (run_id, pid, host, started, heartbeat, aoi_id))

    def clear_lock(self, name: str, run_id: str) -> None:
        """Release the AOI's lock if `run_id` holds it (another run's lock is left alone)."""
        self.execute("UPDATE aoi SET lock_run = NULL, lock_pid = NULL, lock_host = NULL, lock_started = NULL, "
                     "lock_heartbeat = NULL WHERE name = ? AND lock_run = ?", (name, run_id))

    def beat(self, aoi_id: int, run_id: str, now: float, lease_seconds: float) -> None:
        """The run's heartbeat: its lock and the leases of its jobs renewed."""
        self.execute("UPDATE aoi SET lock_heartbeat = ? WHERE id = ? AND lock_run = ?", (now, aoi_id, run_id))
        for kind in ("scene", "tile"):
            self.execute(f"UPDATE {kind} SET lease_expires = ? WHERE aoi_id = ? AND lease_run = ?",
                         (now + lease_seconds, aoi_id, run_id))
