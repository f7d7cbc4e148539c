"""Scenes that exercise every branch of the scenes/tiles writer (tiles or none, links, metadata of every
JSON type, non-ASCII text, a footprint across ±180°, an unreadable footprint, legacy extra keys), and the
file `tests/data/files/written-by-old-writer.json` that the writer of before streaming made of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingester.scenes import Scene, Tile, TileRef

GOLDEN = "files/written-by-old-writer.json"  # under tests/data
EXTRA = {"zeta": {"b": 1, "a": [3, {"y": None, "x": "é"}]}, "alpha": "premier"}  # top-level properties


def writer_scenes() -> list[Scene]:
    start = datetime(2023, 1, 8, 13, 52, 49, tzinfo=UTC)
    scenes: list[Scene] = []
    for d in range(3):
        date = start + timedelta(days=12 * d)
        sid = f"S1A_IW_SLC__1SDV_{date:%Y%m%dT%H%M%S}_{date:%Y%m%dT%H%M%S}_0466{d:02d}_0598D3_BA7{d}"
        tiles = []
        for k in range(2):
            name = f"071_15122{7 + k}_IW2"
            prev = TileRef(scenes[-1].date, scenes[-1].source_id, name) if d else None
            ref = TileRef(scenes[0].date, scenes[0].source_id, name) if d else None
            tiles.append(Tile(source_id=name, scene_id=sid, date=date, anx_time=24048 + 28 * k, swath_id="IW2",
                              tile_nr=1 + k, graph_name="S1BackscatterCoherence", is_retriable=True,
                              burst_id=151227 + k, absolute_burst_id=100291920 + k, previous=prev, reference=ref,
                              wkt=f"POLYGON((-117.{28 + k}0617 34.078497, -117.333126 34.086463, -117.3 34.2, "
                                  f"-117.{28 + k}0617 34.078497))", extra={"note": "données", "z": [1, 2.5]}))
        scenes.append(Scene(
            source_id=sid, aoi="LosAngelesS1", date=date,
            wkt="POLYGON ((-118 33.5, -116.5 33.7, -116.4 35, -118.1 34.9, -118 33.5))",
            tags={"relativeOrbit": "71", "zone": "Zürich ☃", "constellation": "SENTINEL1"},
            graph_name="S1Preprocessing", graph_config={"snap_cpu_parallelism": "2"}, is_retriable=bool(d % 2),
            metadata={"uuid": f"2b17b57d-fff4-4645-b539-91f305c27c6{d}", "size": 123456789 + d, "online": d != 1,
                      "checksums": {"MD5": "0" * 32}, "ratio": 0.125, "nested": {"b": [1, None], "a": True}},
            instances_id={"sigma0_VV": "7"} if d == 2 else {}, tiles=tiles,
        ))
    scenes.append(Scene(source_id="S2A_MSIL1C_20230104T103431_N0510_R108_T01UAA_20230104T123431", aoi="Fiji",
                        date=start, wkt="MULTIPOLYGON (((179.5 -17, 180 -17, 180 -16, 179.5 -16, 179.5 -17)), "
                                        "((-180 -17, -179.5 -17, -179.5 -16, -180 -16, -180 -17)))",
                        tags={"cloudCoverPercentage": "12.5"}, storage_uri="s3://bucket/prefix"))
    scenes.append(Scene(source_id="S2B_MSIL1C_20230106T102329_N0510_R065_T32UNG_20230106T123431", aoi="Broken",
                        date=start, wkt="POLYGON ((not a footprint", record_id="12",
                        tiles=[Tile("S2B_MSIL1C_20230106T102329_N0510_R065_T32UNG_20230106T123431",
                                    "S2B_MSIL1C_20230106T102329_N0510_R065_T32UNG_20230106T123431", start,
                                    "POLYGON((1 1, 2 1, 2 2, 1 1))")]))
    return scenes
