"""The scenes/tiles writer streams feature by feature and writes the very bytes the whole-document writer
wrote (files made by that writer are kept in tests/data/files and tests/data/views)."""

from __future__ import annotations

import dataclasses
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingester.scenes import Scene, dumps_scenes, read_scenes, scenes_to_geojson, write_scenes
from tests.fakes.writer_data import EXTRA, GOLDEN, writer_scenes


def test_the_written_file_has_the_bytes_of_the_old_writer(tmp_path, testdata):
    write_scenes(tmp_path / "tiles.json", writer_scenes(), next_=True, extra=EXTRA)
    assert (tmp_path / "tiles.json").read_bytes() == (testdata / GOLDEN).read_bytes()


def test_a_file_without_envelope_properties_has_the_bytes_of_the_old_writer(tmp_path, testdata):
    write_scenes(tmp_path / "one.json", writer_scenes()[:1])
    assert (tmp_path / "one.json").read_bytes() == (testdata / "files" / "one-scene-by-old-writer.json").read_bytes()


def test_an_empty_file_has_the_bytes_of_the_old_writer(tmp_path):
    write_scenes(tmp_path / "empty.json", iter(()))
    assert (tmp_path / "empty.json").read_bytes() == b'{"type": "FeatureCollection", "features": [\n\n]}\n'


def test_a_tiles_file_of_the_old_writer_is_written_back_byte_for_byte(tmp_path, testdata):
    original = testdata / "views" / "losangeles-s1-tiles.json"
    loaded = read_scenes(original)
    write_scenes(tmp_path / "again.json", loaded.scenes, next_=loaded.next, extra=loaded.extra_properties)
    assert (tmp_path / "again.json").read_bytes() == original.read_bytes()


def test_the_streamed_text_is_the_text_of_the_whole_document(tmp_path):
    scenes = writer_scenes()
    write_scenes(tmp_path / "a.json", iter(scenes), next_=False, extra=EXTRA)
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == dumps_scenes(scenes_to_geojson(scenes, False, EXTRA))


def _many(count: int) -> Iterator[Scene]:
    start = datetime(2022, 1, 1, tzinfo=UTC)
    for i in range(count):
        date = start + timedelta(hours=i)
        yield Scene(source_id=f"S2A_MSIL1C_{date:%Y%m%dT%H%M%S}_N0510_R108_T32UNG_{i:015d}", aoi="Big", date=date,
                    wkt="POLYGON ((8.9 55.8, 10.7 55.8, 10.7 54.8, 8.9 54.9, 8.9 55.8))",
                    tags={f"tag{k}": "x" * 40 for k in range(10)}, metadata={"uuid": str(uuid.UUID(int=i)), "size": i})


def test_writing_holds_one_scene_at_a_time_not_the_document(tmp_path):
    """5,000 scenes make a 5 MB file; the writer's own allocations stay far below it (the whole-document
    writer held every feature, their lines and the joined text: several times the file)."""
    tracemalloc.start()
    try:
        write_scenes(tmp_path / "big.json", _many(5000), next_=False)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (tmp_path / "big.json").stat().st_size
    assert size > 5_000_000
    assert peak < size / 10
    assert len(read_scenes(tmp_path / "big.json").scenes) == 5000


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out" / "scenes.json"
    target.parent.mkdir()
    target.write_text("the old file")

    def failing() -> Iterator[Scene]:
        yield from _many(3)
        raise RuntimeError("catalogue gone")

    with pytest.raises(RuntimeError, match="catalogue gone"):
        write_scenes(target, failing())
    assert target.read_text() == "the old file"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scenes.json"]


def test_a_scene_that_cannot_be_encoded_leaves_the_old_file(tmp_path):
    target = tmp_path / "out" / "scenes.json"
    target.parent.mkdir()
    target.write_text("the old file")
    bad = dataclasses.replace(next(_many(1)), metadata={"when": datetime(2022, 1, 1)})  # not JSON
    with pytest.raises(TypeError):
        write_scenes(target, [*_many(2), bad])
    assert target.read_text() == "the old file"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scenes.json"]
