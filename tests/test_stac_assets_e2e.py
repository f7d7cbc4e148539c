"""Sentinel-2 L2A from Earth Search end to end: `ingester aoi` searches the fake STAC API, `stac-assets`
fetches only the assets of the bands the payload asks for (B04, B08), verified by size and
`file:checksum`, ExtractS2Bands copies the band that already is a COG in its format and re-encodes the
other, `ingester stac` exports them; an item without a needed asset fails clearly; Planetary Computer
hrefs are signed with the planetary-computer package (token API faked) and the token never shows."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from ingester.store import Store
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
