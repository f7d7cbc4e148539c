"""The SQLite store: pragmas, migrations, uniqueness in the schema, transactions, model round trips."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from ingester.config import Settings
from ingester.coordinator import release_lock
from ingester.errors import InputError, StoreError
from ingester.ingest import commit, prepare
from ingester.jobs import IndexedOutput
from ingester.payload import load_payload
from ingester.records import index_outputs
from ingester.store import MIGRATIONS, Store
from tests.fakes.aoi_data import s1_chain, write_s1_tiles

AOI = "DenmarkDemoS1"


@pytest.fixture
def store(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s1.json")
    st = Store(tmp_path / "db" / "ingester.db")
    tiles = write_s1_tiles(tmp_path / "tiles.json", s1_chain(AOI, 3, 2))
    commit(st, prepare(st, payload, Settings(), tiles_file=str(tiles), create_layers=True), "r1", create_layers=True)
    release_lock(st, AOI, "r1")
    yield st
    st.close()


def test_a_new_store_is_wal_with_foreign_keys_and_the_latest_schema(tmp_path):
    with Store(tmp_path / "new" / "x.db") as st:
        assert st.one("PRAGMA journal_mode") == "wal"
        assert st.one("PRAGMA foreign_keys") == 1
        assert st.version == len(MIGRATIONS)
        assert {"aoi", "scene", "tile", "record", "variable", "instance", "dataset", "job_attempt"} <= set(
            r[0] for r in st.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def test_reopening_keeps_the_data_and_a_newer_schema_is_refused(tmp_path, store):
    path = store.path
    counts = store.counts()
    store.close()
    with Store(path) as again:
        assert again.counts() == counts
        again.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this ingester"):
        Store(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(bad)


def test_uniqueness_is_enforced_by_the_schema(store):
    scene = store.execute("SELECT aoi_id, source_id, date, data, tags, wkt FROM scene LIMIT 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO scene (aoi_id, source_id, date, status, data, tags, wkt, updated_at) "
                      "VALUES (?, ?, ?, 'PENDING', ?, ?, ?, '')", (scene[0], scene[1], scene[2], *scene[3:]))
    tile = store.execute("SELECT scene_id, aoi_id, source_id, data FROM tile LIMIT 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO tile (scene_id, aoi_id, source_id, status, data, updated_at) "
                      "VALUES (?, ?, ?, 'NEW', ?, '')", tile)
    rec = store.execute("SELECT name, time, tags, match_tags FROM record LIMIT 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO record (name, time, tags, match_tags, created_at) VALUES (?, ?, ?, ?, '')", rec)
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on
        store.execute("INSERT INTO tile (scene_id, aoi_id, source_id, status, data, updated_at) "
                      "VALUES (9999, 1, 'x', 'NEW', '{}', '')")


def test_a_failing_transaction_leaves_nothing_behind(store):
    before = store.counts()
    with pytest.raises(RuntimeError), store.transaction():
        store.execute("DELETE FROM tile")
        raise RuntimeError("boom")
    assert store.counts() == before


def test_scenes_and_tiles_are_rebuilt_from_the_store_alone(tmp_path, store):
    original = s1_chain(AOI, 3, 2)[2]
    sid = store.one("SELECT id FROM scene WHERE source_id = ?", (original.source_id,))
    scene = store.scene(sid, with_tiles=True)
    assert (scene.source_id, scene.aoi, scene.date, scene.wkt, scene.graph_name, scene.is_retriable) == (
        original.source_id, AOI, original.date, original.wkt, original.graph_name, original.is_retriable)
    assert scene.tags == original.tags
    assert scene.record_id and set(scene.instances_id) == {"sigma0_VV", "sigma0_VH", "coh_VV", "coh_VH"}
    by_name = {t.source_id: t for t in scene.tiles}
    for tile in original.tiles:
        got = by_name[tile.source_id]
        assert dataclasses.replace(got, extra={}) == tile


def test_aoi_tiles_give_previous_and_reference_for_chaining(store):
    tiles = store.aoi_tiles(AOI)
    assert len(tiles) == 6
    assert [t.date for t in tiles] == sorted(t.date for t in tiles)
    roots = [t for t in tiles if t.previous is None]
    assert len(roots) == 2 and all(t.reference is None for t in roots)
    last = tiles[-1]
    assert last.previous.scene_id == tiles[2].scene_id and last.reference.scene_id == tiles[0].scene_id
    assert store.aoi_tiles("unknown") == []


def test_datasets_are_listed_per_aoi_record_and_tile(store):
    tile_id = store.one("SELECT min(id) FROM tile")
    instances = {k: str(v) for k, v in {
        "sigma0_VV": store.instance_id("BackscatterSigma0VV", "RNKell")}.items()}
    with store.transaction():
        index_outputs(store, tile_id, [IndexedOutput("sigma0_VV", "s3://b/x_VV.tif", "A44_IW1_8951", dtype="int16",
                                                     nodata=-1, min_value=0, max_value=1000, real_max=1.5)],
                      instances)
    (ds,) = store.datasets(aoi=AOI)
    assert (ds.variable, ds.instance, ds.uri, ds.dtype, ds.max_value, ds.real_max, ds.bands) == (
        "BackscatterSigma0VV", "RNKell", "s3://b/x_VV.tif", "int16", 1000, 1.5, (1,))
    assert store.datasets(record_id=ds.record_id) == [ds] == store.datasets(tile_id=tile_id)
    assert store.datasets(tile_id=tile_id + 1) == []
    assert "processingDate" in store.record(ds.record_id).tags


def test_nan_nodata_is_kept_for_datasets_and_layers(store, cli, tmp_path):
    """The original's S2 graph indexes `uint16,NaN,0,32767`: NaN must survive SQLite (which stores it as NULL)."""
    import math

    tile_id = store.one("SELECT min(id) FROM tile")
    instances = {"sigma0_VV": str(store.instance_id("BackscatterSigma0VV", "RNKell"))}
    with store.transaction():
        index_outputs(store, tile_id, [IndexedOutput("sigma0_VV", "s3://b/nan.tif", "A44_IW1_8951", dtype="uint16",
                                                     nodata=float("nan"), min_value=0, max_value=32767)], instances)
    (ds,) = store.datasets(aoi=AOI)
    assert math.isnan(ds.nodata)
    db = tmp_path / "layers.db"
    # (an integer type has no NaN: `uint16,NaN,…`, which the original's S2 graph indexed, is refused)
    assert cli("layers", "add", "B01", "raw", "--dformat", "uint16,NaN,0,32767", "--db", db).exit_code == 2
    assert cli("layers", "add", "B01", "raw", "--dformat", "float32,NaN,0,32767", "--db", db).exit_code == 0
    listed = cli("layers", "list", "--json", "--db", db)
    assert listed.exit_code == 0
    (layer,) = json.loads(listed.stdout)
    assert layer["dformat"]["nodata"] == "NaN"  # strict JSON has no NaN: written as the string, as STAC does


def test_many_openers_of_a_new_file_migrate_it_once(tmp_path):
    import threading

    path = tmp_path / "race.db"
    barrier = threading.Barrier(8)
    errors = []

    def open_it():
        barrier.wait()
        try:
            Store(path).close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as st:
        assert st.version == len(MIGRATIONS)


def test_a_store_of_an_older_schema_is_migrated_keeping_its_data(store):
    path = store.path
    counts = store.counts()
    store.execute("DROP INDEX scene_aoi_date")
    store.execute("DROP INDEX tile_aoi_links")
    store.execute("ALTER TABLE scene DROP COLUMN deferred_since")
    store.execute("ALTER TABLE tile DROP COLUMN deferred_since")
    for index in ("tile_claim", "scene_claim", "job_attempt_open"):
        store.execute(f"DROP INDEX {index}")
    store.execute("DROP TRIGGER tile_date_key")
    store.execute("ALTER TABLE tile DROP COLUMN date_key")
    store.execute("PRAGMA user_version=1")
    store.close()
    with Store(path) as again:
        assert again.version == len(MIGRATIONS) == 4
        assert {"scene_aoi_date", "tile_aoi_links", "tile_claim", "scene_claim", "job_attempt_open"} <= {
            r[0] for r in again.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        for table in ("scene", "tile"):  # 3: deferred jobs
            assert "deferred_since" in {r[1] for r in again.execute(f"PRAGMA table_info({table})")}
        # 4: every tile keeps its scene's date key (the claim order)
        assert again.one("SELECT count(*) FROM tile t JOIN scene s ON s.id = t.scene_id "
                         "WHERE t.date_key != s.date_key") == 0
        assert again.one("SELECT count(*) FROM tile WHERE date_key = ''") == 0
        assert again.counts() == counts


@pytest.mark.parametrize("case", ["not a database", "newer schema"])
def test_a_store_that_cannot_be_opened_leaves_no_connection_open(tmp_path, monkeypatch, case):
    path = tmp_path / "x.db"
    if case == "not a database":
        path.write_bytes(b"this is not SQLite" * 100)
    else:
        with Store(path) as st:
            st.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    opened = []
    real_connect = sqlite3.connect

    def tracking_connect(*args, **kwargs):
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", tracking_connect)
    with pytest.raises(StoreError, match="x.db"):
        Store(path)
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


def test_opening_without_create_a_missing_store_is_input_error_and_creates_nothing(tmp_path):
    with pytest.raises(InputError, match="no store here.*--db or INGESTER_DB"):
        Store(tmp_path / "sub" / "typo.db", create=False)
    assert not (tmp_path / "sub").exists()


def test_an_ingestion_stores_its_tiles_with_their_links_and_their_scenes_date_keys(tmp_path, repo):
    payload = load_payload(repo / "payloads" / "denmark-s1.json")
    with Store(tmp_path / "x.db") as st:
        tiles = write_s1_tiles(tmp_path / "tiles.json", s1_chain(AOI, 3, 2))
        commit(st, prepare(st, payload, Settings(), tiles_file=str(tiles), create_layers=True), "r1",
               create_layers=True)
        release_lock(st, AOI, "r1")
        rows = st.execute("SELECT t.id, t.scene_id, t.source_id, t.status, t.retry_countdown, t.prev, t.ref, "
                          "t.date_key = s.date_key, t.data FROM tile t JOIN scene s ON s.id = t.scene_id "
                          "ORDER BY t.id").fetchall()
    assert len(rows) == 6 and all(r[7] == 1 for r in rows)  # each tile keeps its scene's date key
    assert [r[3] for r in rows] == ["NEW"] * 6
    assert [(r[5] is None, r[6] is None) for r in rows] == [(True, True)] * 2 + [(False, False)] * 4
    assert all(r[0] > r[5] for r in rows if r[5] is not None)  # a later acquisition chains onto an earlier one
