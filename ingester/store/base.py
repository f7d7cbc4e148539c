"""The store's connection: opening (read-only, writable, created), the schema version, transactions.

One file (`--db`, `INGESTER_DB`, default `outputs/ingester.db`) in WAL mode with foreign keys on.
The schema version is `PRAGMA user_version`; `schema.MIGRATIONS[i]` brings version i to i + 1.
Every state change goes through `transaction()` (one `BEGIN IMMEDIATE` … `COMMIT`).

Every SQL statement of the tool lives in this package, behind named methods of `Store` (the mixins of
`aois`, `jobs`, `records` and `reads`); the other modules never write SQL. Rows are read by column
name (`sqlite3.Row`, through `rows()`, `row()` and `iter_rows()`). `execute()` and `one()` stay for
tests and hand repairs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ingester.errors import InputError, StoreError
from ingester.store.rows import dumps  # noqa: F401 - part of the store's helpers
from ingester.store.schema import MIGRATIONS, statements
from ingester.times import format_time

TABLES = ("aoi", "record", "scene", "tile", "variable", "instance", "dataset", "job_attempt")


def now_text() -> str:
    return format_time(datetime.now(UTC))


class StoreBase:
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
            type(self)(self.path, timeout).close()
        except StoreError as exc:
            raise StoreError(f"{self.path}: the store was written by an older ingester (schema {current}, this one "
                             f"reads {len(MIGRATIONS)}) and cannot be upgraded here: {exc}") from None
        self.conn = _connect_readonly(self.path, timeout)
        self.conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):  # noqa: ANN204 - the subclass
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
                for statement in statements(MIGRATIONS[version]):
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
        return {t: self.one(f"SELECT count(*) FROM {t}") for t in TABLES}

    # -- reading rows by column name --------------------------------------------------------------
    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    def row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return cur.fetchone()

    def iter_rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterator[sqlite3.Row]:
        """Rows one by one as SQLite produces them (a listing of 300,000 tiles is never held whole)."""
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        yield from cur

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The first column of every row."""
        return [r[0] for r in self.conn.execute(sql, params)]


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
