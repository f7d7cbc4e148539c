"""`ingester map … -o map.png`, `ingester timeline` and `ingester status --map`: the PNGs are read back as
pixels (with Pillow) and checked where the footprints, the AOI, the labels, the scale and the gaps are."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyproj import Geod
from shapely.geometry import box

from ingester.scenes import Scene, write_scenes
from ingester.views.colors import FILE_COLOR, GAP_COLOR, STATUS_COLORS
from ingester.views.model import from_file, from_store
from ingester.views.png import FILL_ALPHA, blend, render_map_png
from ingester.views.timeline import render_timeline_png
from tests import pixels
from tests.conftest import PYTHON, subprocess_env
from tests.fakes.aoi_data import S2_IDS, s2_scene
from tests.fakes.views_data import AOI_BOX, BOXES, WIDE_BOX, box_payload, write_grid_scenes

W = "tests.fakes.workers"
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]  # matplotlib's first four cycle colours, oldest day first


@pytest.fixture
def scenes(tmp_path) -> Path:
    return write_grid_scenes(tmp_path / "scenes.json")


@pytest.fixture
def payload(tmp_path, repo) -> Path:
    return box_payload(repo, tmp_path / "payload.json")


def inside(img, image, mask):
    """The mask restricted to the map's frame (the legend repeats the colours)."""
    left, top, right, bottom = image.axes
    out = mask.copy()
    out[:top + 2, :] = False
    out[bottom - 2:, :] = False
    out[:, :left + 2] = False
    out[:, right - 2:] = False
    return out


def fill_regions(img, image, color: str) -> list[tuple[int, tuple[float, float]]]:
    """Regions filled with `color` (bridging the AOI line and labels drawn across them)."""
    mask = inside(img, image, pixels.mask_of(img, pixels.rgb255(blend(color, FILL_ALPHA)), tol=6))
    return pixels.regions(pixels.dilate(mask, 3), min_size=300)


def assert_aoi_outline_drawn(img, image, bounds) -> None:
    x0, y0, x1, y1 = bounds
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        for lon, lat in ((x0 + t * (x1 - x0), y0), (x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0)),
                         (x1, y0 + t * (y1 - y0))):
            c, r = image.pixel(lon, lat)
            window = img[int(r) - 2:int(r) + 3, int(c) - 2:int(c) + 3].reshape(-1, 3)
            assert min(max(p) for p in window) <= 40, (lon, lat)  # black, not the fill


def test_file_map_png_draws_the_aoi_and_each_footprint_in_its_day_colour(cli, scenes, payload, tmp_path):
    from ingester.payload import load_payload

    image = render_map_png(from_file(scenes, load_payload(payload).aoi), tmp_path / "lib.png", "date")
    img = pixels.load(tmp_path / "lib.png")
    assert img.shape[1] == 1200 and (image.width, image.height) == (1200, img.shape[0])
    assert image.footprints == 4
    assert_aoi_outline_drawn(img, image, AOI_BOX)
    found = 0
    for b, color in zip(BOXES, TAB10, strict=True):
        c = box(*b).centroid
        column, row = image.pixel(c.x, c.y)
        assert pixels.close_to(pixels.mode_near(img, column, row), pixels.rgb255(blend(color, FILL_ALPHA)), tol=6)
        (region,) = fill_regions(img, image, color)  # exactly one polygon of this colour, around this place
        assert abs(region[1][0] - column) < 6 and abs(region[1][1] - row) < 6
        found += 1
    assert found == 4
    # between the footprints, inside the AOI: nothing but the white background
    column, row = image.pixel(10.35, 55.45)
    assert pixels.mode_near(img, column, row) == (255, 255, 255)
    # the legend repeats each day's colour, right of the map
    for color in TAB10:
        swatch = pixels.mask_of(img, pixels.rgb255(blend(color, FILL_ALPHA)), tol=6)
        swatch[:, :image.axes[2] + 5] = False
        assert swatch.sum() > 40

    r = cli("map", scenes, "--payload", payload, "-o", tmp_path / "cli.png")
    assert r.exit_code == 0, r.stderr
    assert "map of DenmarkDemoS2: 4 footprints of 4 scenes, coloured by date" in r.stderr
    assert (pixels.load(tmp_path / "cli.png") == img).all()  # the command draws what the library draws


def test_scale_bar_has_the_geodesic_length_it_says(scenes, payload, tmp_path):
    from ingester.payload import load_payload

    image = render_map_png(from_file(scenes, load_payload(payload).aoi), tmp_path / "m.png", "date")
    img = pixels.load(tmp_path / "m.png")
    left, top, right, bottom = image.axes
    a, b, c, d = image.transform
    lat_mid = ((top + bottom) / 2 - d) / c
    metres_per_degree = Geod(ellps="WGS84").inv(10.0, lat_mid, 11.0, lat_mid)[2]
    expected = image.scale_km * 1000 / metres_per_degree * a
    run = pixels.longest_dark_run(img, (bottom - 60, bottom), (right + 5, image.width))  # right of the map
    assert expected > 60 and abs(run - expected) <= 3


def test_tiles_map_labels_each_burst_id_once(cli, testdata, repo, tmp_path):
    from ingester.payload import load_payload

    view = from_file(testdata / "views" / "losangeles-s1-tiles.json",
                     load_payload(repo / "payloads" / "losangeles-s1.json").aoi)
    image = render_map_png(view, tmp_path / "la.png", "date")
    img = pixels.load(tmp_path / "la.png")
    assert image.footprints == 6 and image.labels == 4
    for scene in view.scenes:
        for tile in scene.bursts:  # a label (dark text) over each burst
            p = tile.geometry.representative_point()
            column, row = image.pixel(p.x, p.y)
            window = img[int(row) - 6:int(row) + 7, int(column) - 40:int(column) + 41].reshape(-1, 3)
            assert sum(1 for px in window if max(px) < 90) > 25, tile.name
    assert_aoi_outline_drawn(img, image, (-117.65, 34.07, -117.55, 34.13))


@pytest.fixture
def status_aoi(cli, tmp_path, repo, monkeypatch) -> str:
    """Four S2 scenes of the grid ingested: the 1st and 4th DONE, the 2nd FAILED (its download), the 3rd
    with its tile RETRY."""
    payload = box_payload(repo, tmp_path / "aoi.json", WIDE_BOX)
    scenes = write_grid_scenes(tmp_path / "grid.json")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({S2_IDS[1]: ["fatal"], f"{S2_IDS[2]}/{S2_IDS[2]}": ["error"]}))
    monkeypatch.setenv("FAKE_WORKER_SCRIPT", str(script))
    monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
    r = cli("aoi", payload, "--scenes", scenes, "--create-layers", "--workers", "1", "--scene-worker",
            f"{W}:scripted", "--tile-worker", f"{W}:scripted")
    assert r.exit_code == 4, r.stderr
    return "DenmarkDemoS2"


def test_status_map_colours_each_footprint_by_the_status_of_its_work(cli, status_aoi, tmp_path):
    from ingester.store import Store

    with Store("outputs/ingester.db") as store:
        view = from_store(store, status_aoi)
    assert [s.status for s in view.scenes] == ["DONE", "FAILED", "RETRY", "DONE"]
    image = render_map_png(view, tmp_path / "lib.png", "status")
    img = pixels.load(tmp_path / "lib.png")
    assert_aoi_outline_drawn(img, image, WIDE_BOX)  # the outline stored with the AOI
    expected = ["DONE", "FAILED", "RETRY", "DONE"]
    for b, status in zip(BOXES, expected, strict=True):
        c = box(*b).centroid
        column, row = image.pixel(c.x, c.y)
        color = pixels.rgb255(blend(STATUS_COLORS[status], FILL_ALPHA))
        assert pixels.close_to(pixels.mode_near(img, column, row), color, tol=6), status
    assert len(fill_regions(img, image, STATUS_COLORS["DONE"])) == 2
    assert len(fill_regions(img, image, STATUS_COLORS["FAILED"])) == 1
    assert len(fill_regions(img, image, STATUS_COLORS["RETRY"])) == 1
    assert not fill_regions(img, image, STATUS_COLORS["PENDING"])

    r = cli("map", status_aoi, "-o", tmp_path / "cli.png")
    assert r.exit_code == 0 and "coloured by status" in r.stderr
    assert (pixels.load(tmp_path / "cli.png") == img).all()
    r = cli("status", status_aoi, "--map", tmp_path / "beside.png")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"AOI {status_aoi} (") and "Scenes:" in r.stdout  # the text is kept
    assert (pixels.load(tmp_path / "beside.png") == img).all()


def test_map_options_and_targets_are_checked_first(cli, scenes, tmp_path, status_aoi):
    r = cli("map", scenes, "-o", tmp_path / "map.jpg")
    assert r.exit_code == 2 and "writes .png or .html or .htm files" in r.stderr
    r = cli("map", scenes, "-o", tmp_path / "m.png", "--color-by", "status")
    assert r.exit_code == 2 and "have no status yet" in r.stderr
    r = cli("map", "Atlantis", "-o", tmp_path / "m.png")
    assert r.exit_code == 2 and "Atlantis: no such file, and no AOI of that name" in r.stderr
    assert "known: DenmarkDemoS2" in r.stderr
    r = cli("map", "Atlantis", "-o", tmp_path / "m.png", "--db", tmp_path / "none.db")
    assert r.exit_code == 2 and "no store at" in r.stderr and not (tmp_path / "none.db").exists()
    r = cli("status", "--map", tmp_path / "m.png")
    assert r.exit_code == 2 and "--map needs an AOI" in r.stderr
    r = cli("timeline", scenes, "-o", tmp_path / "t.html")
    assert r.exit_code == 2 and "writes .png files" in r.stderr
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("t.*"))


@pytest.mark.parametrize("command", [["map", "{scenes}", "-o", "m.png"], ["map", "{scenes}", "-o", "m.html"],
                                     ["timeline", "{scenes}", "-o", "t.png"]])
def test_without_the_maps_extra_drawing_is_exit_2_naming_the_install_command(cli, scenes, tmp_path, monkeypatch,
                                                                              command):
    for name in ("matplotlib", "folium", "xstatic.pkg.leaflet"):
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib` now raises ImportError
    r = cli(*[c.format(scenes=scenes) for c in command])
    assert r.exit_code == 2
    assert "needs the optional plotting libraries" in r.stderr and "pip install 'ingester[maps]'" in r.stderr
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("t.*"))


def test_status_map_without_the_extra_is_exit_2_before_printing(cli, status_aoi, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = cli("status", status_aoi, "--map", tmp_path / "s.png")
    assert r.exit_code == 2 and "pip install 'ingester[maps]'" in r.stderr and r.stdout == ""
    assert cli("status", status_aoi).exit_code == 0


def test_the_rest_of_the_command_line_never_imports_the_plotting_libraries(cli, scenes, tmp_path, status_aoi):
    probe = ("import json, sys\nfrom ingester.cli import app\n"
             "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(json.dumps({'exit': code, 'loaded': [m for m in ('matplotlib', 'folium', 'branca', 'PIL')"
             " if m in sys.modules]}))")
    runs = [["status"], ["status", status_aoi], ["status", "--help"], ["--help"], ["list", "tiles", status_aoi],
            ["show", str(scenes)], ["filter", str(scenes), "--max-cloud", "50", "-o", str(tmp_path / "f.json")],
            ["map", "--help"]]
    for args in runs:
        out = subprocess.run([PYTHON, "-c", probe, *args], capture_output=True, text=True, env=subprocess_env(),
                             cwd=tmp_path, timeout=120)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {"exit": 0, "loaded": []}, (args, out.stderr)
    out = subprocess.run([PYTHON, "-c", probe, "map", str(scenes), "-o", str(tmp_path / "m.png")],
                         capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=120)
    assert "matplotlib" in json.loads(out.stdout.strip().splitlines()[-1])["loaded"]  # the probe sees imports


# --- timeline ---------------------------------------------------------------------------------------

def s2_on(day: datetime, tile: str = "32UNG", orbit: str = "108") -> Scene:
    sid = f"S2A_MSIL1C_{day:%Y%m%dT%H%M%S}_N0510_R{orbit}_T{tile}_{day:%Y%m%dT%H%M%S}"
    return s2_scene(sid, relativeOrbit=orbit)


def test_timeline_puts_acquisitions_on_their_track_and_shows_the_gap(cli, tmp_path):
    start = datetime(2022, 3, 1, 10, 30, tzinfo=UTC)
    days = [0, 5, 10, 25, 30, 35]  # every 5 days, but 15 days between the 10th and the 25th: 2 missing
    scenes = [s2_on(start + timedelta(days=d)) for d in days]
    scenes += [s2_on(start + timedelta(days=d), tile="32UNF") for d in (2, 7, 12)]
    path = tmp_path / "s.json"
    write_scenes(path, scenes)
    image = render_timeline_png(from_file(path), tmp_path / "t.png")
    img = pixels.load(tmp_path / "t.png")
    assert image.rows == ("32UNG", "32UNF")
    (gap,) = image.gaps
    assert (gap.stack, gap.missing, round(gap.days)) == ("32UNG", 2, 15)
    marker = pixels.rgb255(FILE_COLOR)
    for d in days:
        column, row = image.pixel(start + timedelta(days=d), "32UNG")
        assert pixels.close_to(pixels.mode_near(img, column, row, 2), marker, tol=10), d
    for d in (2, 7, 12):
        column, row = image.pixel(start + timedelta(days=d), "32UNF")
        assert pixels.close_to(pixels.mode_near(img, column, row, 2), marker, tol=10), d
    band = pixels.rgb255(blend(GAP_COLOR, 0.18))
    for d in (14, 17.5, 21):  # inside the gap: the red band
        column, row = image.pixel(start + timedelta(days=d), "32UNG")
        assert pixels.close_to(pixels.mode_near(img, column, row + 8, 2), band, tol=10), d
    for d in (2.5, 7.5, 32.5):  # between regular acquisitions: no band
        column, row = image.pixel(start + timedelta(days=d), "32UNG")
        assert not pixels.close_to(pixels.mode_near(img, column, row + 8, 2), band, tol=10), d
    column, row = image.pixel(start + timedelta(days=17.5), "32UNF")  # the other track has no gap there
    assert not pixels.close_to(pixels.mode_near(img, column, row + 8, 2), band, tol=10)

    r = cli("timeline", path, "-o", tmp_path / "cli.png")
    assert r.exit_code == 0 and "9 acquisitions on 2 tracks, 1 gaps" in r.stderr
    assert (pixels.load(tmp_path / "cli.png") == img).all()


def test_timeline_of_a_tiles_file_links_each_acquisition_to_its_previous(testdata, tmp_path):
    view = from_file(testdata / "views" / "losangeles-s1-tiles.json")
    image = render_timeline_png(view, tmp_path / "t.png")
    img = pixels.load(tmp_path / "t.png")
    assert image.rows == ("A64", "D71") and image.gaps == ()
    first, later = sorted(s.date for s in view.scenes if s.stack == "D71")
    middle = first + (later - first) / 2
    column, row = image.pixel(middle, "D71")
    assert pixels.close_to(pixels.mode_near(img, column, row, 1), (0x88, 0x88, 0x88), tol=12)  # the link
    column, row = image.pixel(middle, "A64")
    assert not pixels.close_to(pixels.mode_near(img, column, row, 1), (0x88, 0x88, 0x88), tol=12)


def test_timeline_of_an_aoi_colours_acquisitions_by_status(cli, status_aoi, tmp_path):
    r = cli("timeline", status_aoi, "-o", tmp_path / "t.png")
    assert r.exit_code == 0, r.stderr
    from ingester.store import Store

    with Store("outputs/ingester.db") as store:
        view = from_store(store, status_aoi)
    image = render_timeline_png(view, tmp_path / "lib.png")
    img = pixels.load(tmp_path / "t.png")
    assert (pixels.load(tmp_path / "lib.png") == img).all()
    for scene in view.scenes:
        column, row = image.pixel(scene.date, scene.stack)
        color = pixels.rgb255(STATUS_COLORS[scene.status])
        if scene.online is False:  # hollow marker: the outline carries the colour
            continue
        assert pixels.close_to(pixels.mode_near(img, column, row, 2), color, tol=10), scene.status


def test_a_file_without_scenes_draws_the_aoi_alone_or_is_refused_without_one(cli, payload, tmp_path):
    write_scenes(tmp_path / "empty.json", [], next_=False)
    r = cli("map", tmp_path / "empty.json", "--payload", payload, "-o", tmp_path / "aoi.png")
    assert r.exit_code == 0, r.stderr
    assert pixels.load(tmp_path / "aoi.png").shape[1] == 1200
    r = cli("map", tmp_path / "empty.json", "-o", tmp_path / "none.png")
    assert r.exit_code == 2 and "nothing to draw" in r.stderr and not (tmp_path / "none.png").exists()
    r = cli("timeline", tmp_path / "empty.json", "-o", tmp_path / "none.png")
    assert r.exit_code == 2 and "no scene" in r.stderr and not (tmp_path / "none.png").exists()
