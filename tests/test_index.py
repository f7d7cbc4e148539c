"""`ingester datasets` / `ingester stac`: reading the store's datasets into listings and STAC Items."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingester.errors import InputError
from ingester.index import dataset_listing, stac_tiles_from_store
from ingester.scenes import Tile, TileRef
from tests.fakes.graph_jobs import WKT


@dataclasses.dataclass
class Row:
    id: int
    record_id: int
    record_name: str
    record_time: str
    instance_id: int
    variable: str
    instance: str
    aoi: str
    tile_id: int
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


@dataclasses.dataclass
class TileRowFake:
    id: int
    source_id: str
    scene_source_id: str
    date: str


class FakeStore:
    """The read API of ingester.store.Store that index.py uses (require_aoi, datasets, tile_row, tile, record)."""

    def __init__(self) -> None:
        d1, d2 = datetime(2022, 1, 11, tzinfo=UTC), datetime(2022, 1, 23, tzinfo=UTC)
        self.tiles = {
            1: (TileRowFake(1, "A44_IW1_8951", "S1A_1", "2022-01-11T00:00:00Z"),
                Tile("A44_IW1_8951", "S1A_1", d1, WKT, graph_name="S1BackscatterCoherence")),
            2: (TileRowFake(2, "A44_IW1_8951", "S1A_2", "2022-01-23T00:00:00Z"),
                Tile("A44_IW1_8951", "S1A_2", d2, WKT, graph_name="S1BackscatterCoherence",
                     previous=TileRef(d1, "S1A_1", "A44_IW1_8951"), reference=TileRef(d1, "S1A_1", "A44_IW1_8951"))),
        }
        self.rows = [
            Row(1, 10, "S1A_1", "2022-01-11T00:00:00Z", 5, "sigma0_VV", "raw", "aoi", 1, "sigma0_VV", "/s/1.tif",
                (1,), "float32", 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, {}),
            Row(2, 20, "S1A_2", "2022-01-23T00:00:00Z", 5, "sigma0_VV", "raw", "aoi", 2, "sigma0_VV", "/s/2.tif",
                (1,), "float32", 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, {}),
            Row(3, 20, "S1A_2", "2022-01-23T00:00:00Z", 6, "coh_VV", "raw", "aoi", 2, "coh_VV", "/s/2c.tif",
                (1,), "int16", -32768, 0, 1000, 0.0, 1.0, 1.0, {}),
        ]

    def require_aoi(self, name: str):
        if name != "aoi":
            raise InputError(f"no AOI named {name!r}")
        return object()

    def datasets(self, aoi: str | None = None, record_id: int | None = None, tile_id: int | None = None):
        return list(self.rows)

    def tile_row(self, tile_id: int):
        return self.tiles[tile_id][0]

    def tile(self, tile_id: int):
        return self.tiles[tile_id][1]

    def record(self, record_id: int):
        return type("R", (), {"tags": {"constellation": "SENTINEL1", "processingDate": "2022-02-01 10:00:00",
                                       "record": str(record_id)}})()


def test_store_datasets_group_into_one_stac_tile_per_tile():
    tiles = stac_tiles_from_store(FakeStore(), "aoi")
    assert [t.item_id for t in tiles] == ["20220111_A44_IW1_8951", "20220123_A44_IW1_8951"]
    assert [sorted(d.layer for d in t.datasets) for t in tiles] == [["sigma0_VV"], ["coh_VV", "sigma0_VV"]]
    assert tiles[1].tags["record"] == "20" and tiles[1].previous[:2] == ("S1A_1", "A44_IW1_8951")
    assert tiles[1].graph_name == "S1BackscatterCoherence"


def test_dataset_listing_has_record_layer_tile_and_format():
    rows = dataset_listing(FakeStore(), "aoi")
    assert rows[2] == {"record": "S1A_2", "time": "2022-01-23T00:00:00Z", "layer": "coh_VV", "variable": "coh_VV",
                       "instance": "raw", "tile": "A44_IW1_8951", "uri": "/s/2c.tif", "bands": [1],
                       "dformat": {"dtype": "int16", "nodata": -32768, "min": 0, "max": 1000},
                       "real_min": 0.0, "real_max": 1.0, "exponent": 1.0, "missing": False}
    json.dumps(rows)
    assert dataset_listing(FakeStore(), "aoi", {"/s/2c.tif"})[2]["missing"] is True


def test_unknown_aoi_is_an_input_error():
    with pytest.raises(InputError, match="no AOI named 'other'"):
        stac_tiles_from_store(FakeStore(), "other")


@pytest.mark.parametrize("command", ["datasets", "stac"])
def test_commands_without_a_store_exit_2_and_create_nothing(cli, tmp_path, command):
    result = cli(command, "aoi", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 2
    assert "none.db: no store here" in result.stderr
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "outputs").exists()
