"""Window mode of `stac-assets`: the AOI's window of a COG asset read with HTTP range requests through
GDAL (against the fake STAC API's file server, which answers ranges as S3 does, and a requester-pays
moto bucket), its pixels equal to the source window, whole-asset fetches when a window does not pay
or cannot be read, what is verified, and the reuse of a verified extract by a later attempt."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from rasterio.windows import Window as RasterWindow
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import Polygon, box

from ingester.config import load_settings
from ingester.errors import DownloadError, NotFound, Unavailable
from ingester.providers.cog_window import aoi_bbox
from ingester.providers.stac_assets import MANIFEST, StacAssetsProvider
from ingester.scenes import Scene, Tile
from tests.fakes.cogs import T32UNG, cog_bytes, real_pixels, striped_tiff_bytes
from tests.fakes.stac_api import DENMARK_FOOTPRINT, FakeStacApi

ITEM = "S2A_32UNG_20220104_0_L2A"
DENMARK_AOI = Polygon([(10.06, 54.88), (9.95, 54.87), (9.9, 55.1), (10.06, 54.88)])  # payloads/denmark-s2*.json
DATE = datetime(2022, 1, 4, 10, 34, 31, tzinfo=UTC)


def denmark_bbox() -> list[float]:
    from shapely import to_wkt
    from shapely.geometry import shape

    return aoi_bbox(DENMARK_AOI, to_wkt(shape(DENMARK_FOOTPRINT)))


def make_scene(assets: dict[str, dict], bbox: list[float] | None, *, aoi: str = "DenmarkEarthSearchS2",
               graph_config: dict[str, str] | None = None) -> Scene:
    tile = Tile(source_id=ITEM, scene_id=ITEM, date=DATE, wkt="POINT (10 55)", graph_name="ExtractS2Bands")
    metadata: dict = {"assets": assets, "catalogue": "earth-search", "collection": "sentinel-2-l2a",
                      "item_id": ITEM, "s2:processing_baseline": "04.00"}
    if bbox is not None:
        metadata["aoi_bbox"] = bbox
    return Scene(source_id=ITEM, aoi=aoi, date=DATE, wkt="POINT (10 55)", tiles=[tile],
                 graph_config=graph_config if graph_config is not None else {"bands": "B04"}, metadata=metadata)


def asset(url: str, data: bytes, **extra) -> dict:
    return {"href": url, "type": "image/tiff; application=geotiff; profile=cloud-optimized", "size": len(data),
            **extra}


def provider(tmp_path: Path, **settings) -> StacAssetsProvider:
    return StacAssetsProvider(load_settings({"workdir": str(tmp_path / "work"), **settings}))


def fetch(prov: StacAssetsProvider, scene: Scene, tmp_path: Path, name: str = "job") -> tuple[Path, dict]:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    product = prov.fetch(scene, workdir)
    return product, json.loads((product / MANIFEST).read_text())


def file_requests(fake: FakeStacApi, name: str) -> list[dict]:
    return [r for r in fake.requests if "/data/" in r["path"] and r["path"].endswith(f"/{name}")]


@pytest.fixture
def b04():
    return cog_bytes()


def test_the_file_server_answers_ranges_as_s3_does(b04):
    with FakeStacApi([], files={"f.tif": b04}) as fake:
        url, size = fake.file_url("f.tif"), len(b04)
        head = requests.head(url, timeout=5)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(size) and not head.content
        part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
        assert part.status_code == 206 and part.content == b04[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{size}"
        tail = requests.get(url, headers={"Range": "bytes=-4"}, timeout=5)
        assert (tail.status_code, tail.content, tail.headers["Content-Range"]) == \
            (206, b04[-4:], f"bytes {size - 4}-{size - 1}/{size}")
        rest = requests.get(url, headers={"Range": f"bytes={size - 3}-{size + 100}"}, timeout=5)
        assert rest.status_code == 206 and rest.content == b04[-3:]
        past = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=5)
        assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
        for ignored in ("bytes=0-1,5-6", "bytes=9-3", "items=0-1"):
            whole = requests.get(url, headers={"Range": ignored}, timeout=5)
            assert whole.status_code == 200 and whole.content == b04
        assert fake.bytes_served("f.tif") == 10 + 4 + 3 + 3 * size


def test_the_aoi_window_of_a_cog_is_read_with_ranges_and_equals_the_source_window(tmp_path, b04):
    bbox = denmark_bbox()
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        scene = make_scene({"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04)}, bbox)
        product, manifest = fetch(provider(tmp_path), scene, tmp_path)
        served = fake.bytes_served(f"{ITEM}/B04.tif")
        gets = [r for r in file_requests(fake, "B04.tif") if r["method"] == "GET"]
    assert served < 0.05 * len(b04)  # a few tiles and the header, not the 3.6 MB file
    assert gets and all(r["headers"].get("Range") for r in gets)  # never the whole file
    entry = manifest["assets"]["red"]
    assert entry["fetched"] == "window" and manifest["window_extract"] is True
    win = entry["window"]
    assert win["col_off"] % 256 == 0 and win["row_off"] % 256 == 0  # snapped to the COG's 256-pixel tiles
    assert win["width"] % 256 == 0 or win["col_off"] + win["width"] == 1830
    assert win["height"] % 256 == 0 or win["row_off"] + win["height"] == 1830
    assert 0 < win["share"] < 0.1 and manifest["aoi_bbox"] == bbox
    assert "checksum" in entry["window"]["not_verified"] or "file:checksum" in entry["window"]["not_verified"]
    assert any("= file:size" in v for v in entry["window"]["verified"])
    out = product / entry["file"]
    assert cog_validate(str(out))[0]
    rw = RasterWindow(win["col_off"], win["row_off"], win["width"], win["height"])
    with rasterio.open(out) as dst:
        assert (dst.width, dst.height) == (win["width"], win["height"])
        assert dst.transform == rasterio.windows.transform(rw, T32UNG)
        assert dst.crs.to_epsg() == 32632 and dst.nodata == 0 and dst.dtypes[0] == "uint16"
        got = dst.read(1)
    source = real_pixels()[rw.row_off:rw.row_off + rw.height, rw.col_off:rw.col_off + rw.width]
    assert got.dtype == source.dtype and np.array_equal(got, source)
    # the window covers the AOI inside the footprint, with the margin
    left, bottom, right, top = rasterio.warp.transform_bounds("EPSG:4326", "EPSG:32632", *bbox)
    wl, wb, wr, wt = win["bounds"]
    assert wl <= left - 100 and wr >= right + 100 and wt >= top + 100 and (wb <= bottom - 100 or wb == 6090240)
    assert not list((tmp_path / "work" / "downloads").rglob("*.window.*"))  # kept extracts gone once complete


def test_an_aoi_covering_most_of_the_asset_fetches_it_whole(tmp_path, b04):
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        scene = make_scene({"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04)}, [9.0, 54.9, 10.7, 55.85])
        product, manifest = fetch(provider(tmp_path), scene, tmp_path)
    entry = manifest["assets"]["red"]
    assert entry["fetched"] == "whole" and "INGESTER_STAC_WINDOW_MAX_SHARE" in entry["whole_because"]
    assert (product / entry["file"]).read_bytes() == b04 and manifest["window_extract"] is False


@pytest.mark.parametrize("how", ["graph_config", "setting"])
def test_window_reads_are_turned_off_by_graph_config_or_setting(tmp_path, b04, how):
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        config = {"bands": "B04", "assets_window": "off"} if how == "graph_config" else None
        scene = make_scene({"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04)}, denmark_bbox(),
                           graph_config=config)
        settings = {"stac_window_max_share": 0.0} if how == "setting" else {}
        product, manifest = fetch(provider(tmp_path, **settings), scene, tmp_path)
        assert [r["headers"].get("Range") for r in file_requests(fake, "B04.tif")] == [None]  # one plain GET
    assert manifest["assets"]["red"]["fetched"] == "whole" and (product / "B04.tif").read_bytes() == b04


def test_a_striped_tiff_and_a_server_ignoring_ranges_get_whole_downloads(tmp_path, b04):
    striped = striped_tiff_bytes()
    with FakeStacApi([], files={f"{ITEM}/B04.tif": striped, f"{ITEM}/B08.tif": b04}) as fake:
        scene = make_scene({"red": asset(fake.file_url(f"{ITEM}/B04.tif"), striped),
                            "nir": asset(fake.file_url(f"{ITEM}/B08.tif"), b04)}, denmark_bbox(),
                           graph_config={"bands": "B04,B08"})
        product, manifest = fetch(provider(tmp_path), scene, tmp_path)
        assert manifest["assets"]["red"]["whole_because"] == "the GeoTIFF is not tiled (strips)"
        assert (product / "B04.tif").read_bytes() == striped
        assert manifest["assets"]["nir"]["fetched"] == "window"
        fake.honour_ranges = False
        product, manifest = fetch(provider(tmp_path), scene, tmp_path, "again")
    assert manifest["assets"]["nir"]["whole_because"] == "the server answered 200 to a Range request (no byte ranges)"
    assert (product / "B08.tif").read_bytes() == b04


def test_an_asset_whose_size_differs_from_its_file_size_is_refused(tmp_path, b04):
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        scene = make_scene({"red": {**asset(fake.file_url(f"{ITEM}/B04.tif"), b04), "size": len(b04) + 1}},
                           denmark_bbox())
        with pytest.raises(DownloadError, match=rf"the server has {len(b04)} bytes, the item's file:size says "
                                                rf"{len(b04) + 1}"):
            fetch(provider(tmp_path), scene, tmp_path)


def test_gdal_retries_5xx_during_the_read_and_a_read_that_keeps_failing_is_temporary_without_the_token(
        tmp_path, b04, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="rasterio")  # GDAL's retry warnings name the URL it retries
    secret = "sig=SECRETSIGNATURE"
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        url = fake.file_url(f"{ITEM}/B04.tif") + "?" + secret
        scene = make_scene({"red": asset(url, b04)}, denmark_bbox())
        fake.fail_files = [None, None, None, 503, 429]  # the size probe and GDAL's HEADs pass, then two failures
        product, manifest = fetch(provider(tmp_path), scene, tmp_path)
        statuses = [r["status"] for r in file_requests(fake, "B04.tif")]
        assert statuses.count(503) == 1 and statuses.count(429) == 1
        assert manifest["assets"]["red"]["fetched"] == "window"
        assert secret not in (product / MANIFEST).read_text()
        fake.fail_files = [None, None, None] + [503] * 20
        with pytest.raises(Unavailable) as failed:
            fetch(provider(tmp_path), scene, tmp_path, "again")
    assert "503" in str(failed.value) and "SECRETSIGNATURE" not in str(failed.value)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("rasterio")]
    assert any("Retrying" in m for m in logged) and not any("SECRETSIGNATURE" in m for m in logged)


def test_a_missing_asset_is_not_found(tmp_path, b04):
    with FakeStacApi([], files={}) as fake:
        scene = make_scene({"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04)}, denmark_bbox())
        with pytest.raises(NotFound, match="404"):
            fetch(provider(tmp_path), scene, tmp_path)


def test_a_verified_extract_is_reused_by_a_later_attempt_but_never_for_a_larger_window(tmp_path, b04):
    b08 = cog_bytes(real_pixels() // 2 + 1)
    small = denmark_bbox()
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        assets = {"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04),
                  "nir": asset(fake.file_url(f"{ITEM}/B08.tif"), b08)}
        scene = make_scene(assets, small, graph_config={"bands": "B04,B08"})
        with pytest.raises(NotFound):  # B08 is not there yet: the attempt fails after B04
            fetch(provider(tmp_path), scene, tmp_path)
        kept = list((tmp_path / "work" / "downloads").rglob("*B04.tif.window.*"))
        assert sorted(p.suffix for p in kept) == [".json", ".tif"]
        first = fake.bytes_served(f"{ITEM}/B04.tif")

        fake.files[f"{ITEM}/B08.tif"] = b08
        product, manifest = fetch(provider(tmp_path), scene, tmp_path, "retry")
        assert fake.bytes_served(f"{ITEM}/B04.tif") == first  # B04 not read again
        assert manifest["assets"]["red"]["window"]["reused"]
        small_window = manifest["assets"]["red"]["window"]

        # the same AOI grown westwards (or another AOI): a kept smaller window is not good enough
        del fake.files[f"{ITEM}/B08.tif"]
        with pytest.raises(NotFound):
            fetch(provider(tmp_path), scene, tmp_path, "third")
        wider = make_scene(assets, [small[0] - 0.3, *small[1:]], graph_config={"bands": "B04,B08"})
        fake.files[f"{ITEM}/B08.tif"] = b08
        before = fake.bytes_served(f"{ITEM}/B04.tif")
        product, manifest = fetch(provider(tmp_path), wider, tmp_path, "wider")
        assert fake.bytes_served(f"{ITEM}/B04.tif") > before
    window = manifest["assets"]["red"]["window"]
    assert "reused" not in window and window["col_off"] < small_window["col_off"]
    with rasterio.open(product / "B04.tif") as dst:
        assert dst.width == window["width"]


def test_a_tampered_kept_extract_is_read_again(tmp_path, b04):
    with FakeStacApi([], files={f"{ITEM}/B04.tif": b04}) as fake:
        assets = {"red": asset(fake.file_url(f"{ITEM}/B04.tif"), b04),
                  "nir": asset(fake.file_url(f"{ITEM}/B08.tif"), b04)}
        scene = make_scene(assets, denmark_bbox(), graph_config={"bands": "B04,B08"})
        with pytest.raises(NotFound):
            fetch(provider(tmp_path), scene, tmp_path)
        (tif,) = (tmp_path / "work" / "downloads").rglob("*B04.tif.window.tif")
        data = bytearray(tif.read_bytes())
        data[-1] ^= 0xFF
        tif.write_bytes(bytes(data))
        fake.files[f"{ITEM}/B08.tif"] = b04
        before = fake.bytes_served(f"{ITEM}/B04.tif")
        product, manifest = fetch(provider(tmp_path), scene, tmp_path, "retry")
        assert fake.bytes_served(f"{ITEM}/B04.tif") > before and "reused" not in manifest["assets"]["red"]["window"]


def test_an_s3_asset_window_is_read_from_a_requester_pays_bucket(tmp_path, monkeypatch, b04):
    from tests.fakes.moto_s3 import make_bucket, requester_pays_s3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    import boto3

    with requester_pays_s3({"cogs"}) as (endpoint, seen):
        make_bucket(endpoint, "cogs", requester_pays=True)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
            Bucket="cogs", Key=f"{ITEM}/B04.tif", Body=b04, RequestPayer="requester")
        scene = make_scene({"red": asset(f"s3://cogs/{ITEM}/B04.tif", b04)}, denmark_bbox())
        monkeypatch.setattr("rasterio.session.boto3", None)  # an install without boto3 (not a dependency)
        product, manifest = fetch(provider(tmp_path, stac_s3_endpoint_url=endpoint), scene, tmp_path)
    reads = [s for s in seen if s["path"] == f"/cogs/{ITEM}/B04.tif" and s["method"] == "GET"]
    assert reads and all(s["payer"] and s["range"] for s in reads)  # billed to the requester, ranges only
    assert sum(s["bytes"] for s in reads) < 0.05 * len(b04)
    win = manifest["assets"]["red"]["window"]
    assert "S3 object" in win["verified"][0]
    with rasterio.open(product / "B04.tif") as dst:
        got = dst.read(1)
    source = real_pixels()[win["row_off"]:win["row_off"] + win["height"], win["col_off"]:win["col_off"] + win["width"]]
    assert np.array_equal(got, source)


def test_the_aoi_bounds_are_the_aoi_inside_the_footprint():
    bbox = aoi_bbox(DENMARK_AOI, box(9.95, 54.5, 11, 56).wkt)
    assert bbox[0] == pytest.approx(9.95) and bbox[2] == pytest.approx(10.06) and bbox[1] == pytest.approx(54.87)
    assert aoi_bbox(DENMARK_AOI, "not wkt") == [round(v, 7) for v in DENMARK_AOI.bounds]


def test_extract_landsat_bands_works_on_window_extracts_and_checks_their_grid(tmp_path, testdata):
    """A Landsat L2 item fetched by stac-assets in window mode (the MTL whole, SR_B4 as a window):
    ExtractLandsatBands writes the window, values unchanged, with the MTL's scale and offset; a file
    whose grid differs from its manifest's window is a fatal error."""
    import subprocess
    import sys

    l2 = "LC09_L2SP_196022_20220113_20220115_02_T1"
    band = cog_bytes()  # real pixels on 32UNG's grid, 256-pixel tiles, no-data 0
    mtl = (testdata / "landsat" / l2 / f"{l2}_MTL.txt").read_bytes()
    with FakeStacApi([], files={f"{l2}/{l2}_SR_B4.TIF": band, f"{l2}/{l2}_MTL.txt": mtl}) as fake:
        assets = {"red": asset(fake.file_url(f"{l2}/{l2}_SR_B4.TIF"), band),
                  "MTL.txt": {"href": fake.file_url(f"{l2}/{l2}_MTL.txt"), "type": "text/plain", "size": len(mtl)}}
        scene = Scene(source_id=l2, aoi="DenmarkLandsat", date=DATE, wkt="POINT (10 55)",
                      tiles=[Tile(l2, l2, DATE, "POINT (10 55)", graph_name="ExtractLandsatBands")],
                      graph_config={"bands": "B04"}, metadata={"assets": assets, "aoi_bbox": denmark_bbox()})
        product, manifest = fetch(provider(tmp_path), scene, tmp_path)
    assert manifest["assets"]["red"]["fetched"] == "window" and manifest["assets"]["MTL.txt"]["fetched"] == "whole"
    script = Path(__file__).resolve().parent.parent / "ingester" / "graph" / "scripts" / "extract_landsat.py"
    args = [sys.executable, str(script), "--workdir", str(product.parent), "--product", product.name,
            "--pattern-out", "T_*.tif", "--bands", "B04"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    win = manifest["assets"]["red"]["window"]
    assert f"window {win['width']}×{win['height']} px at column {win['col_off']}" in done.stdout
    with rasterio.open(product.parent / "T_B04.tif") as dst:
        got, transform = dst.read(1), dst.transform
    rw = RasterWindow(win["col_off"], win["row_off"], win["width"], win["height"])
    assert transform == rasterio.windows.transform(rw, T32UNG)
    assert np.array_equal(got, real_pixels()[rw.row_off:rw.row_off + rw.height, rw.col_off:rw.col_off + rw.width])
    assert json.loads((product.parent / "T_B04.tif.format.json").read_text())["scale"] == pytest.approx(2.75e-05)

    entry = manifest["assets"]["red"]
    entry["window"]["width"] += 256  # the file no longer matches what the provider verified
    (product / MANIFEST).write_text(json.dumps(manifest))
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 1 and "FATAL ERROR:" in done.stderr and "does not have the grid" in done.stderr


def test_a_planetary_computer_asset_window_is_read_with_the_signed_href_through_the_proxy(tmp_path, monkeypatch,
                                                                                           b04):
    """Blob hosts are reached through an HTTP proxy on 127.0.0.1 (requests honours HTTP_PROXY; GDAL gets
    the same proxy), which serves ranges of the file only with the SAS token; the token API is faked."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import planetary_computer.sas

    from tests.fakes.stac_api import byte_range

    token = "st=2022-01-01&se=2099-01-01&sp=rl&sig=SECRETSIGNATURE"
    seen: list[tuple[str, str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            seen.append((self.command, self.path, self.headers.get("Range")))
            headers: dict[str, str] = {}
            if self.path.startswith("/api/sas/v1/token/"):
                status, body = 200, json.dumps({"msft:expiry": "2099-01-01T00:00:00Z", "token": token}).encode()
            elif "blob.core.windows.net" in self.path and self.path.endswith(f"B04.tif?{token}"):
                span = byte_range(self.headers.get("Range"), len(b04))
                if isinstance(span, tuple):
                    status, body = 206, b04[span[0]:span[1] + 1]
                    headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(b04)}"
                else:
                    status, body = 200, b04
            else:
                status, body = 403, b""
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body)), "Accept-Ranges": "bytes"}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(planetary_computer.sas, "TOKEN_CACHE", {})
    href = "http://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/32/U/NG/2022/01/04/B04.tif"
    scene = make_scene({"red": asset(href, b04)}, denmark_bbox())
    scene.metadata["signing"] = "planetary-computer"
    try:
        product, manifest = fetch(provider(tmp_path, pc_sas_url=f"http://127.0.0.1:{port}/api/sas/v1/token"),
                                  scene, tmp_path)
    finally:
        server.shutdown()
    blob = [s for s in seen if "blob.core.windows.net" in s[1]]
    assert blob and all(s[1].endswith(token) for s in blob)  # every request signed, all through the proxy
    assert manifest["assets"]["red"]["fetched"] == "window"
    assert sum(1 for s in blob if s[0] == "GET" and s[2]) >= 2  # the size probe and GDAL's ranged reads
    assert "SECRETSIGNATURE" not in (product / MANIFEST).read_text()
    win = manifest["assets"]["red"]["window"]
    with rasterio.open(product / "B04.tif") as dst:
        got = dst.read(1)
    source = real_pixels()[win["row_off"]:win["row_off"] + win["height"], win["col_off"]:win["col_off"] + win["width"]]
    assert np.array_equal(got, source)
