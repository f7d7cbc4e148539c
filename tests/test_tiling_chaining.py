"""Previous/reference chaining: unit rules, then the inventory on fixtures shifted by 12-day cycles."""

from __future__ import annotations

import random
import re
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from ingester.config import Settings
from ingester.errors import TilingWarning
from ingester.payload import load_payload
from ingester.scenes import Tile, TileRef
from ingester.tiling import make_tiles
from ingester.tiling.chaining import chain_tiles
from ingester.tiling.inventory import NO_ANNOTATION, NO_BURST, burst_inventory
from tests.fakes.cdse_nodes import IW2_2022, IW2_2023, make_product, product_scene

T0 = datetime(2023, 1, 8, 13, 52, 49, tzinfo=UTC)
WKT = "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"


def tile(cycle: int, source_id: str = "071_151228_IW2", **kw) -> Tile:
    return Tile(source_id=source_id, scene_id=f"S{cycle:02d}", date=T0 + timedelta(days=12 * cycle), wkt=WKT, **kw)


def links(tiles):
    return {t.scene_id: (t.previous and t.previous.scene_id, t.reference and t.reference.scene_id) for t in tiles}


def test_earliest_is_the_root_and_each_tile_chains_to_the_one_before():
    tiles = [tile(2), tile(0), tile(1)]
    result = chain_tiles(tiles)
    assert links(tiles) == {"S00": (None, None), "S01": ("S00", "S00"), "S02": ("S01", "S00")}
    assert result.messages == []
    assert tiles[0].previous == TileRef(T0 + timedelta(days=12), "S01", "071_151228_IW2")


def test_different_bursts_are_separate_chains():
    tiles = [tile(0), tile(1), tile(0, "071_151229_IW2"), tile(1, "064_151228_IW2")]
    chain_tiles(tiles)
    assert [(t.previous and t.previous.source_id, t.reference and t.reference.source_id) for t in tiles] == [
        (None, None), ("071_151228_IW2", "071_151228_IW2"), (None, None), (None, None)]


def test_a_missing_date_is_chained_over_with_a_warning():
    tiles = [tile(0), tile(2)]
    result = chain_tiles(tiles)
    assert links(tiles)["S02"] == ("S00", "S00")
    assert len(result.messages) == 1
    assert "24 days between S00 and S02" in result.messages[0] and "may be missing" in result.messages[0]


def test_new_acquisition_is_appended_to_the_existing_chain_which_is_left_untouched():
    old0 = tile(0)
    old1 = tile(1, previous=old0.ref, reference=old0.ref)
    new = [tile(2), tile(3)]
    chain_tiles(new, existing=[old0, old1])
    assert links(new) == {"S02": ("S01", "S00"), "S03": ("S02", "S00")}
    assert links([old0, old1]) == {"S00": (None, None), "S01": ("S00", "S00")}


def test_existing_leaf_only_passes_on_its_reference():
    reference = TileRef(T0 - timedelta(days=120), "S_REF", "071_151228_IW2")
    leaf = tile(0, previous=TileRef(T0 - timedelta(days=12), "S_PREV", "071_151228_IW2"), reference=reference)
    new = [tile(1)]
    chain_tiles(new, existing=[leaf])
    assert new[0].previous == leaf.ref and new[0].reference == reference


def test_back_filled_older_dates_join_the_existing_chain_without_a_second_root():
    root = tile(4)
    leaf = tile(5, previous=root.ref, reference=root.ref)
    new = [tile(1), tile(2), tile(6)]
    chain_tiles(new, existing=[root, leaf])
    assert links(new) == {"S01": ("S02", "S04"), "S02": ("S04", "S04"), "S06": ("S05", "S04")}
    assert all(t.reference is not None for t in new)  # no new root


def test_date_between_existing_tiles_chains_to_the_one_before_it():
    root, leaf = tile(0), tile(2)
    leaf.previous = leaf.reference = root.ref
    new = [tile(1)]
    chain_tiles(new, existing=[root, leaf])
    assert links(new) == {"S01": ("S00", "S00")}


def test_tile_already_in_the_store_keeps_its_links():
    root = tile(0)
    stored = tile(1, previous=root.ref, reference=root.ref)
    again = tile(1)
    chain_tiles([again], existing=[root, stored])
    assert (again.previous, again.reference) == (root.ref, root.ref)


def test_same_burst_in_overlapping_slices_of_one_pass_is_kept_once():
    first = tile(0)
    twin = Tile(source_id=first.source_id, scene_id="S00b", date=first.date + timedelta(seconds=25), wkt=WKT)
    later = tile(1)
    result = chain_tiles([twin, first, later])
    assert result.duplicates == [twin]
    assert links([first, later]) == {"S00": (None, None), "S01": ("S00", "S00")}
    assert "same pass" in result.messages[0]


def test_chaining_does_not_depend_on_input_order():
    def run(order):
        tiles = [tile(c, s) for c in order for s in ("A", "B")]
        chain_tiles(tiles)
        return sorted((t.source_id, t.scene_id, str(t.previous), str(t.reference)) for t in tiles)

    cycles = list(range(8))
    expected = run(cycles)
    for seed in range(5):
        random.Random(seed).shuffle(cycles)
        assert run(cycles) == expected


# --- the inventory on derived products -----------------------------------------------------------

class MemorySource:
    """An annotation source over in-memory products (what a test of the chaining needs)."""

    name = "memory"

    def __init__(self, products):
        self.products = {p.scene_id: p for p in products}

    def fetch(self, scene):
        product = self.products.get(scene.source_id)
        return list(product.annotations.items()) if product else None


@pytest.fixture
def payload(repo):
    return load_payload(repo / "payloads" / "losangeles-s1.json")


def test_inventory_chains_a_stack_with_a_missing_date(testdata, payload):
    products = [make_product(testdata, IW2_2023, c) for c in (3, 0, 1)]  # cycle 2 missing
    scenes = [product_scene(p, payload.name) for p in products]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = burst_inventory(payload, scenes, Settings(), sources=[MemorySource(products)])
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, TilingWarning))
    assert len(messages) == 1  # one for the pair of scenes, naming every burst
    assert re.match(r"24 days between \S*20230120\S* and \S*20230213\S* \(more than the 12-day repeat cycle\) "
                    r"for bursts 071_151227_IW2, 071_151228_IW2: an acquisition may be missing", messages[0])
    assert [s.source_id for s in result.scenes] == [p.scene_id for p in products]  # input order
    by_scene = {s.source_id[17:25]: s.tiles for s in result.scenes}
    assert [t.source_id for t in by_scene["20230108"]] == ["071_151227_IW2", "071_151228_IW2"]
    second = {d: next(t for t in tiles if t.tile_nr == 2) for d, tiles in by_scene.items()}
    assert second["20230108"].previous is None and second["20230108"].reference is None
    assert second["20230120"].previous.scene_id == products[1].scene_id
    assert second["20230120"].reference.scene_id == products[1].scene_id
    assert second["20230213"].previous.scene_id == products[2].scene_id
    assert second["20230213"].reference.scene_id == products[1].scene_id
    assert [second[d].absolute_burst_id for d in ("20230108", "20230120", "20230213")] == [
        100291921, 100291921 + 375887, 100291921 + 1127662]  # 525 orbits × T_orb / T_beam = 1127661.9
    assert {t.anx_time for t in second.values()} == {24075}
    assert {(t.graph_name, t.is_retriable, t.swath_id, t.burst_id) for t in second.values()} == {
        ("S1BackscatterCoherence", True, "IW2", 151228)}


def test_inventory_appends_a_new_acquisition_to_tiles_already_in_the_store(testdata, payload):
    old = [make_product(testdata, IW2_2023, c) for c in (0, 1)]
    first = burst_inventory(payload, [product_scene(p) for p in old], Settings(), sources=[MemorySource(old)])
    existing = [t for s in first.scenes for t in s.tiles]
    new = make_product(testdata, IW2_2023, 2)
    result = burst_inventory(payload, [product_scene(new)], Settings(), existing=existing,
                             sources=[MemorySource([new])])
    tiles = {t.source_id: t for t in result.scenes[0].tiles}
    assert tiles["071_151228_IW2"].previous.scene_id == old[1].scene_id
    assert tiles["071_151228_IW2"].reference.scene_id == old[0].scene_id


def test_ascending_and_descending_stacks_do_not_mix(testdata, payload):
    products = [make_product(testdata, IW2_2023), make_product(testdata, IW2_2022),
                make_product(testdata, IW2_2022, 1)]
    result = burst_inventory(payload, [product_scene(p) for p in products], Settings(),
                             sources=[MemorySource(products)])
    ids = [[t.source_id for t in s.tiles] for s in result.scenes]
    assert ids == [["071_151227_IW2", "071_151228_IW2"], ["064_135518_IW2", "064_135519_IW2"],
                   ["064_135518_IW2", "064_135519_IW2"]]
    asc_later = result.scenes[2].tiles[1]
    assert asc_later.reference.scene_id == products[1].scene_id
    assert all(t.previous is None for t in result.scenes[0].tiles)


def test_scene_without_annotation_is_skipped_and_reported(testdata, payload):
    found, lost = make_product(testdata, IW2_2023), make_product(testdata, IW2_2023, 1)
    with pytest.warns(TilingWarning, match=rf"{lost.scene_id}: {NO_ANNOTATION} \(memory: not found\)"):
        result = burst_inventory(payload, [product_scene(found), product_scene(lost)], Settings(),
                                 sources=[MemorySource([found])])
    assert [s.source_id for s in result.scenes] == [found.scene_id]
    assert result.skipped == [(lost.scene_id, f"{NO_ANNOTATION} (memory: not found)")]


def test_scene_with_no_burst_over_the_aoi_is_dropped(testdata, payload):
    product = make_product(testdata, IW2_2023)
    far = payload.__class__(**{**payload.__dict__, "aoi": payload.aoi.__class__(
        [p.__class__([(x + 3, y) for x, y in p.exterior.coords]) for p in payload.aoi.geoms])})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TilingWarning)
        result = burst_inventory(far, [product_scene(product)], Settings(), sources=[MemorySource([product])])
    assert result.scenes == [] and result.skipped == [(product.scene_id, NO_BURST)]


def test_buffer_setting_changes_which_bursts_are_kept(testdata, payload):
    product = make_product(testdata, IW2_2023)
    point = payload.__class__(**{**payload.__dict__, "aoi": payload.aoi.__class__(
        [payload.aoi.geoms[0].__class__([(-117.601, 34.099), (-117.599, 34.099), (-117.599, 34.101),
                                         (-117.601, 34.101)])])})
    narrow = burst_inventory(point, [product_scene(product)], Settings(aoi_buffer="0"),
                             sources=[MemorySource([product])])
    wide = burst_inventory(point, [product_scene(product)], Settings(aoi_buffer="0.3deg"),
                           sources=[MemorySource([product])])
    metres = {buffer: burst_inventory(point, [product_scene(product)], Settings(aoi_buffer=buffer),
                                      sources=[MemorySource([product])]) for buffer in ("1000", "15km", "33km")}
    assert [t.tile_nr for t in narrow.scenes[0].tiles] == [2]
    assert [t.tile_nr for t in wide.scenes[0].tiles] == [1, 2, 3]
    assert {b: [t.tile_nr for t in r.scenes[0].tiles] for b, r in metres.items()} == {
        "1000": [2], "15km": [1, 2], "33km": [1, 2, 3]}


def test_copy_product_graph_gives_one_tile_per_scene(testdata, payload):
    copy = payload.__class__(**{**payload.__dict__, "scene_graph_name": "CopyProductToStorage"})
    scene = product_scene(make_product(testdata, IW2_2023))
    result = make_tiles(copy, [scene], Settings())
    [only] = result.scenes[0].tiles
    assert (only.source_id, only.scene_id, only.wkt, only.previous, only.reference) == (
        scene.source_id, scene.source_id, scene.wkt, None, None)


def test_non_sentinel1_scene_in_a_burst_payload_is_skipped_with_a_warning(testdata, payload):
    import dataclasses

    product = make_product(testdata, IW2_2023)
    s2_id = "S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858"
    s2 = dataclasses.replace(product_scene(product), source_id=s2_id)
    with pytest.warns(TilingWarning, match=r"S2A_MSIL1C_\S+: not a Sentinel-1 product, skipped"):
        result = burst_inventory(payload, [s2, product_scene(product)], Settings(), sources=[MemorySource([product])])
    assert [s.source_id for s in result.scenes] == [product.scene_id]
    assert result.skipped == [(s2.source_id, "not a Sentinel-1 product")]


def test_scenes_are_fetched_concurrently(testdata, payload):
    import threading

    products = [make_product(testdata, IW2_2023, c) for c in range(3)]
    barrier = threading.Barrier(3, timeout=10)

    class Meeting(MemorySource):
        def fetch(self, scene):
            barrier.wait()  # passes only when three fetches run at the same time
            return super().fetch(scene)

    result = burst_inventory(payload, [product_scene(p) for p in products], Settings(annotation_concurrency=3),
                             sources=[Meeting(products)])
    assert len(result.scenes) == 3 and result.skipped == []


def test_an_unexpected_source_exception_moves_on_to_the_next_source(testdata, payload):
    product = make_product(testdata, IW2_2023)

    class Broken:
        name = "broken"

        def fetch(self, scene):
            raise KeyError("credentials")

    result = burst_inventory(payload, [product_scene(product)], Settings(),
                             sources=[Broken(), MemorySource([product])])
    assert [s.source_id for s in result.scenes] == [product.scene_id]


def test_burst_across_the_antimeridian_is_written_as_a_multipolygon_and_reads_back(testdata, tmp_path):
    import re as _re

    from ingester.payload import parse_payload
    from ingester.scenes import read_scenes, write_scenes
    from tests.fakes.cdse_nodes import EW1_2021, Product

    def move(m):
        return b"<longitude>%.12e</longitude>" % ((float(m.group(1)) + 245.0 + 180) % 360 - 180)

    product = make_product(testdata, EW1_2021)
    moved = {name: _re.sub(rb"<longitude>([^<]+)</longitude>", move, data)
             for name, data in product.annotations.items()}
    product = Product(product.scene_id, product.uuid, moved, product.date, product.tags)
    payload = parse_payload({
        "name": "Dateline", "type": "MultiPolygon", "coordinates": [
            [[[179.0, 79.0], [180.0, 79.0], [180.0, 79.6], [179.0, 79.6], [179.0, 79.0]]],
            [[[-180.0, 79.0], [-179.0, 79.0], [-179.0, 79.6], [-180.0, 79.6], [-180.0, 79.0]]]],
        "start_time": "2021-01-01T00:00:00Z", "end_time": "2022-01-01T00:00:00Z",
        "scene_type": {"constellation": "sentinel1", "parameters": {}},
        "scene_graph_name": "S1Preprocessing", "tile_graph_name": "S1BackscatterCoherence",
    }, "dateline.json")
    scene = product_scene(product, wkt="POLYGON ((170 78, 180 78, 180 81, 170 81, 170 78))")
    result = burst_inventory(payload, [scene], Settings(aoi_buffer="0"), sources=[MemorySource([product])])
    tiles = result.scenes[0].tiles
    assert tiles and tiles[0].tile_nr == 1 and tiles[0].wkt.startswith("MULTIPOLYGON(((")
    assert tiles[0].source_id == "114_220876_EW1"
    write_scenes(tmp_path / "tiles.json", result.scenes)
    back = read_scenes(tmp_path / "tiles.json").scenes[0].tiles
    assert [t.wkt for t in back] == [t.wkt for t in tiles]


def test_annotations_are_fetched_at_most_a_pool_ahead_of_the_scene_being_tiled():
    """The inventory holds the parsed annotations of the scenes in flight only, not of every scene."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ingester.tiling.inventory import ordered_map

    lock = threading.Lock()
    started: list[int] = []
    consumed: list[int] = []
    ahead: list[int] = []

    def fetch(i: int) -> int:
        with lock:
            started.append(i)
            ahead.append(len(started) - len(consumed))
        return i * i

    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, value in enumerate(ordered_map(pool, fetch, list(range(200)), ahead=4)):
            assert value == i * i
            with lock:
                consumed.append(i)
    assert consumed == list(range(200))
    assert max(ahead) <= 5  # the 4 in flight, and the one being consumed
