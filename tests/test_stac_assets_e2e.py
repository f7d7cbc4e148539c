"""Sentinel-2 L2A from Earth Search end to end: `ingester aoi` searches the fake STAC API, `stac-assets`
fetches only the assets of the bands the payload asks for (B04, B08), verified by size and
`file:checksum`, ExtractS2Bands copies the band that already is a COG in its format and re-encodes the
other, `ingester stac` exports them; an item without a needed asset fails clearly; Planetary Computer
hrefs are signed with the planetary-computer package (token API faked) and the token never shows.
Window mode: with COGs on the AOI's tile, only the AOI's window of each band is read (range requests),
the outputs cover that window, the STAC geometry is the window inside the footprint, and another AOI
on the same scene reads its own window."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import box, mapping, shape

from ingester.store import Store
from tests.fakes.cogs import T32UNG, cog_bytes, real_pixels
from tests.fakes.graph_jobs import S2_ID
from tests.fakes.stac_api import DENMARK_FOOTPRINT, FakeStacApi, earth_search_item

ITEM = "S2A_32UNG_20220104_0_L2A"
AOI = "DenmarkEarthSearchS2"
JP2 = f"s2/{S2_ID}.SAFE/GRANULE/L1C_T31TDH_A013204_20180101T105435/IMG_DATA/T31TDH_20180101T105441_B01.jp2"


def band_files(testdata: Path, tmp_path: Path) -> tuple[bytes, bytes, np.ndarray]:
    """B04 as a COG (uint16, no-data 0) and B08 as a plain GeoTIFF without no-data, from real S2 pixels."""
    with rasterio.open(testdata / JP2) as src:
        dn = src.read(1, window=Window(600, 600, 256, 256)) + 1000  # baseline ≥ 04.00 pixels carry +1000
        profile = {"driver": "GTiff", "height": 256, "width": 256, "count": 1, "dtype": "uint16", "crs": src.crs,
                   "transform": src.window_transform(Window(600, 600, 256, 256))}
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(dn, 1)
    with rasterio.open(tmp_path / "nd.tif", "w", **profile, nodata=0) as dst:
        dst.write(dn, 1)
    cog_translate(str(tmp_path / "nd.tif"), str(tmp_path / "cog.tif"), cog_profiles.get("deflate"), quiet=True)
    return (tmp_path / "cog.tif").read_bytes(), plain.read_bytes(), dn


@pytest.fixture
def es(testdata, repo, tmp_path, monkeypatch):
    cog, plain, dn = band_files(testdata, tmp_path)
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2-earth-search.json", tmp_path / "es.json"))
    with FakeStacApi([], files={f"{ITEM}/B04.tif": cog, f"{ITEM}/B08.tif": plain}) as fake:
        fake.items = [earth_search_item(
            ITEM, geometry=DENMARK_FOOTPRINT, datetime_="2022-01-04T10:34:31.024000Z", cloud=50.9, baseline="04.00",
            href=lambda item_id, band: fake.file_url(f"{item_id}/{band}.tif"),
            checksums={"B04": "1220" + hashlib.sha256(cog).hexdigest()}, sizes={"B04": len(cog), "B08": len(plain)})]
        monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"earth-search={fake.url}")
        monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
        yield fake, payload, cog, dn


def test_aoi_on_an_earth_search_payload_fetches_two_assets_and_ends_with_cogs_and_stac(cli, es, tmp_path):
    fake, payload, cog, dn = es
    r = cli("aoi", payload, "--workers", "1", "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    fetched = sorted({q["path"].rsplit("/", 1)[-1] for q in fake.requests if "/data/" in q["path"]})
    assert fetched == ["B04.tif", "B08.tif"]  # only the assets of the bands asked for
    tile = tmp_path / "outputs" / "storage" / AOI / ITEM / "tiles" / ITEM
    b04, b08 = tile / f"20220104_{ITEM}_B04.tif", tile / f"20220104_{ITEM}_B08.tif"
    assert b04.read_bytes() == cog  # already a COG in the stored format: copied, not re-encoded
    assert cog_validate(str(b08))[0]
    with rasterio.open(b08) as out:
        assert (out.read(1) == dn).all() and out.nodata == 0  # v = DN for baseline ≥ 04.00
    rows = {row["layer"]: row for row in json.loads(cli("datasets", AOI, "--json").stdout)}
    assert set(rows) == {"B04", "B08"}
    out = cli("stac", AOI, "-o", tmp_path / "stac")
    assert out.exit_code == 0, out.stderr
    (item,) = pystac.Collection.from_file(out.stdout.strip()).get_items()
    assert item.assets["B08"].extra_fields["raster:bands"][0]["offset"] == -0.1
    again = cli("aoi", payload, "--workers", "1", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["ingested"]["scenes"] == 0


def test_an_item_without_a_needed_asset_fails_the_scene_with_a_clear_message(cli, es, tmp_path):
    fake, payload, _cog, _dn = es
    del fake.items[0]["assets"]["nir"]
    r = cli("aoi", payload, "--workers", "1", "--create-layers")
    assert r.exit_code == 4
    with Store("outputs/ingester.db") as st:
        message = st.one("SELECT message FROM scene")
        assert st.one("SELECT status FROM scene") == "RETRY"
    assert f"stac-assets: item {ITEM} (sentinel-2-l2a) lacks what graph ExtractS2Bands reads: no asset for B08 " \
           "(looked for B08, nir)" in message
    assert not list((tmp_path / "outputs" / "storage").rglob("*.tif"))


def test_a_corrupt_asset_is_refused_by_its_checksum_and_fetched_again(cli, es, tmp_path):
    fake, payload, cog, _dn = es
    good = fake.files[f"{ITEM}/B04.tif"]
    fake.files[f"{ITEM}/B04.tif"] = bytes(len(good))  # same size, wrong bytes
    r = cli("aoi", payload, "--workers", "1", "--create-layers")
    assert r.exit_code in (0, 4)
    with Store("outputs/ingester.db") as st:
        messages = [m for (m,) in st.execute("SELECT message FROM job_attempt WHERE kind = 'scene'")]
    assert any("SHA256 checksum mismatch" in m for m in messages)
    fake.files[f"{ITEM}/B04.tif"] = good
    assert cli("retry", AOI, "--workers", "1", "--force").exit_code == 0
    tile = tmp_path / "outputs" / "storage" / AOI / ITEM / "tiles" / ITEM
    assert (tile / f"20220104_{ITEM}_B04.tif").read_bytes() == cog


def test_planetary_computer_hrefs_are_signed_and_the_token_never_reaches_a_file(cli, es, tmp_path, monkeypatch):
    """The PC token API (GET <sas>/<account>/<container>) is faked; blob hosts are reached through an
    HTTP proxy on 127.0.0.1 that serves the fake's files (requests honours HTTP_PROXY)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    fake, payload, cog, _dn = es
    token = "st=2022-01-01&se=2099-01-01&sp=rl&sig=SECRETSIGNATURE"
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.path)
            if self.path.startswith("/api/sas/v1/token/"):
                body = json.dumps({"msft:expiry": "2099-01-01T00:00:00Z", "token": token}).encode()
            elif "blob.core.windows.net" in self.path and token in self.path:
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                body = fake.files[f"{ITEM}/{name}"]
            else:
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    item = fake.items[0]
    for asset in item["assets"].values():
        asset["href"] = asset["href"].replace(fake.url + "/data", "http://sentinel2l2a01.blob.core.windows.net/"
                                                                  "sentinel2-l2")
    monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"planetary-computer={fake.url}")
    monkeypatch.setenv("INGESTER_PC_SAS_URL", f"http://127.0.0.1:{port}/api/sas/v1/token")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    doc = json.loads(payload.read_text())
    doc["scene_type"]["catalogue"] = "planetary-computer"
    payload.write_text(json.dumps(doc))
    try:
        r = cli("aoi", payload, "--workers", "1", "--create-layers")
    finally:
        server.shutdown()
    assert r.exit_code == 0, r.stderr
    assert any(p.startswith("/api/sas/v1/token/sentinel2l2a01/sentinel2-l2") for p in seen)
    tile = tmp_path / "outputs" / "storage" / AOI / ITEM / "tiles" / ITEM
    assert (tile / f"20220104_{ITEM}_B04.tif").read_bytes() == cog
    text = r.stdout + r.stderr
    for path in (tmp_path / "outputs").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".db", "-wal"):
            text += path.read_bytes().decode("latin-1")
    assert "SECRETSIGNATURE" not in text


# --- window mode: only the AOI's window of each COG asset ------------------------------------------------

EAST_OF_995 = mapping(box(9.95, 54.88733, 10.76096, 55.89489))  # an orbit edge through the AOI: data east of 9.95°


@pytest.fixture
def es_window(repo, tmp_path, monkeypatch):
    """Earth Search serving B04 (a COG with no-data 0: copied by ExtractS2Bands) and B08 (a COG without
    no-data: re-encoded), both 1830 × 1830 real pixels on tile 32UNG's 60 m grid, 256-pixel tiles."""
    b04, b08 = cog_bytes(), cog_bytes(nodata=None)
    payload = Path(shutil.copy(repo / "payloads" / "denmark-s2-earth-search.json", tmp_path / "es.json"))
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04, f"{ITEM}/B08.tif": b08}) as fake:
        fake.items = [earth_search_item(
            ITEM, geometry=EAST_OF_995, datetime_="2022-01-04T10:34:31.024000Z", cloud=50.9, baseline="04.00",
            href=lambda item_id, band: fake.file_url(f"{item_id}/{band}.tif"),
            checksums={"B04": "1220" + hashlib.sha256(b04).hexdigest()}, sizes={"B04": len(b04), "B08": len(b08)})]
        monkeypatch.setenv("INGESTER_STAC_CATALOGUES", f"earth-search={fake.url}")
        monkeypatch.setenv("INGESTER_RETRY_BACKOFF", "0")
        yield fake, payload, b04, b08


def _window_of(path: Path) -> tuple[Window, rasterio.Affine]:
    with rasterio.open(path) as src:
        col, row = ~T32UNG * (src.transform.c, src.transform.f)
        return Window(round(col), round(row), src.width, src.height), src.transform


def test_aoi_on_an_earth_search_payload_reads_only_the_aoi_window_of_each_band(cli, es_window, tmp_path):
    fake, payload, b04, b08 = es_window
    r = cli("aoi", payload, "--workers", "1", "--create-layers", "--json")
    assert r.exit_code == 0, r.stderr
    for name, data in (("B04", b04), ("B08", b08)):
        assert 0 < fake.bytes_served(f"{ITEM}/{name}.tif") < 0.05 * len(data), name  # a window, not the file
    tile = tmp_path / "outputs" / "storage" / AOI / ITEM / "tiles" / ITEM
    pixels = real_pixels()
    for layer in ("B04", "B08"):
        out = tile / f"20220104_{ITEM}_{layer}.tif"
        assert cog_validate(str(out))[0], layer
        window, transform = _window_of(out)
        assert window.col_off % 256 == 0 and window.row_off % 256 == 0 and window.width < 1830, layer
        assert transform == rasterio.windows.transform(window, T32UNG)
        with rasterio.open(out) as dst:
            values = dst.read(1)
            assert dst.nodata == 0 and dst.dtypes[0] == "uint16"
        expected = pixels[window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width]
        assert np.array_equal(values, expected), layer  # v = DN: the source window's values, unchanged
    with Store("outputs/ingester.db") as st:
        (tile_id,) = [i for (i,) in st.execute("SELECT id FROM tile")]
        log = Path(st.attempts("tile", tile_id)[-1]["log_path"]).read_text()
    assert "B04: B04.tif → " in log and "(copied; " in log and "window " in log and " of the 1830×1830 asset" in log
    out = cli("stac", AOI, "-o", tmp_path / "stac")
    assert out.exit_code == 0, out.stderr
    (item,) = pystac.Collection.from_file(out.stdout.strip()).get_items()
    with rasterio.open(tile / f"20220104_{ITEM}_B04.tif") as dst:
        window_box = box(*rasterio.warp.transform_bounds(dst.crs, "EPSG:4326", *dst.bounds, densify_pts=21))
    geometry = shape(item.geometry)
    assert geometry.equals_exact(window_box.intersection(shape(EAST_OF_995)), 1e-6)  # the window ∩ footprint
    assert item.bbox[0] == pytest.approx(9.95) and window_box.bounds[0] < 9.95


def test_a_second_aoi_on_the_same_scene_reads_its_own_larger_window(cli, es_window, tmp_path, monkeypatch):
    fake, payload, b04, _b08 = es_window
    monkeypatch.setenv("INGESTER_TILE_WORKER", "tests.fakes.workers:noop")  # keep AOI 1's stored product
    assert cli("aoi", payload, "--workers", "1", "--create-layers").exit_code == 0
    stored = tmp_path / "outputs" / "storage" / AOI / ITEM / "tiles" / ITEM / f"{ITEM}.zip"
    with zipfile.ZipFile(stored) as zf:
        manifest = json.loads(zf.read(f"{ITEM}/stac-assets.json"))
    assert manifest["window_extract"] is True and manifest["aoi_bbox"][0] == pytest.approx(9.95)
    small = manifest["assets"]["red"]["window"]
    assert manifest["assets"]["red"]["fetched"] == "window" and "file:checksum" in small["not_verified"]
    assert manifest["window_bbox"][0] <= manifest["aoi_bbox"][0]
    served = fake.bytes_served(f"{ITEM}/B04.tif")

    monkeypatch.delenv("INGESTER_TILE_WORKER")
    doc = json.loads(payload.read_text())
    doc["name"] = "DenmarkEarthSearchS2Wider"
    doc["geometry"] = mapping(box(10.0, 54.95, 10.6, 55.3))
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps(doc))
    assert cli("aoi", wider, "--workers", "1", "--create-layers").exit_code == 0
    assert fake.bytes_served(f"{ITEM}/B04.tif") > served  # read again, not taken from AOI 1
    out = tmp_path / "outputs" / "storage" / "DenmarkEarthSearchS2Wider" / ITEM / "tiles" / ITEM
    window, _transform = _window_of(out / f"20220104_{ITEM}_B04.tif")
    assert window.width * window.height > small["width"] * small["height"]
    assert window.col_off + window.width > small["col_off"] + small["width"]
