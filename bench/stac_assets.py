"""Bytes and time to get one Sentinel-2 L2A scene ready for B04 and B08 over the Denmark demo AOI: the
full product (the zipped SAFE, `url` provider) against `stac-assets` fetching the two COG assets whole
and `stac-assets` reading only the AOI's window of each (the default), all in the same run (target: the
window path downloads ≤ 5 % of the full product's bytes).

    python -m bench.stac_assets                    # tile scaled to 1/5: 10 m bands of 2196 px, 5 runs
    python -m bench.stac_assets --size 1098 --runs 7

The scene is a real tile in small: MGRS 32UNG (109.8 km, where the Denmark payloads lie) with every
length divided by 10980 / size, so that the AOI covers the share of the tile it covers in reality: the
"10 m" bands have size² pixels of 50 m (default), the 20 m ones (size/2)², the 60 m ones (size/6)², and
the COG tiles of the assets are 1024 px scaled the same way (208 px by default; `--block`). The full
product has the L2A layout: IMG_DATA/R10m (B02, B03, B04, B08, AOT, WVP, TCI), R20m (B01–B07, B8A, B11,
B12, AOT, WVP, SCL, TCI), R60m (the same and B09), QI_DATA cloud and snow probabilities, all lossless
JPEG 2000 as in real products, zipped without compression (like ESA's zips of JP2). The Earth Search
side serves B04 and B08 as deflate COGs with overviews. Pixels: the real B01 of tests/data/s2 (its
no-data part beyond the orbit's edge filled with mirrored valid pixels, as for a tile fully over land)
resampled to each grid, with a gain per band (AOT, WVP, SCL, TCI and the masks derived from them), so
compressed sizes are those of real texture, not of noise or flat fields.

Both sides are served by one loopback HTTP server that answers `Range` as S3 does (206, 416, HEAD) and
counts the body bytes it sends; the fetches go through ingester's own providers. Runs rotate the order
of the three paths; reported: bytes, share of the full product, median and spread (min–max) of the seconds
of `provider.fetch` (the window path includes writing the local COGs), and the load average. Loopback
moves 40 MB in a tenth of a second, so its times show the fixed costs; `--mbps` and `--latency-ms` put a
simulated link in between (one shared bandwidth, a delay before each answer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import zipfile
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = REPO / "payloads" / "denmark-s2-earth-search.json"
SCENE = "S2A_MSIL2A_20220104T103431_N0400_R108_T32UNG_20220104T113955"
ITEM = "S2A_32UNG_20220104_0_L2A"
TILE_ORIGIN = (499980.0, 6200040.0)  # upper-left corner of MGRS 32UNG (EPSG:32632)
TILE_METRES = 109800.0
PREFIX = "T32UNG_20220104T103431"
# the L2A layout: layers per resolution (gain of the band's pixels; None: derived layers)
LAYERS = {
    10: ["B02", "B03", "B04", "B08", "AOT", "WVP", "TCI"],
    20: ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "AOT", "WVP", "SCL", "TCI"],
    60: ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12", "AOT", "WVP", "SCL", "TCI"],
}
GAIN = {b: 0.8 + 0.05 * i for i, b in enumerate(["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                                  "B09", "B11", "B12"])}
MASKS = ["MSK_CLDPRB_20m", "MSK_CLDPRB_60m", "MSK_SNWPRB_20m", "MSK_SNWPRB_60m"]


def _grid(size: int, res: int):
    """(pixels, transform) of a layer at nominal resolution `res` on the scaled tile."""
    from rasterio.transform import from_origin

    n = size * 10 // res
    pixel = TILE_METRES / n
    return n, from_origin(*TILE_ORIGIN, pixel, pixel)


def _pixels(src, n: int, band: str) -> np.ndarray:
    from rasterio.enums import Resampling

    data = src.read(1, out_shape=(n, n), resampling=Resampling.bilinear).astype(np.float64)
    return np.clip(data * GAIN.get(band, 1.0) + 1000, 1, 65535).astype(np.uint16)


def _source():
    """The real B01 (1830², 60 m) as an in-memory dataset, its no-data part filled with mirrored valid
    pixels (`tests.fakes.cogs.textured`): every window holds real texture, as a land tile does."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from tests.fakes.cogs import b01

    data = b01()
    mem = MemoryFile()
    with mem.open(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint16",
                  crs="EPSG:32631", transform=from_origin(399960, 4800000, 60, 60)) as dst:  # the excerpt's grid
        dst.write(data, 1)
    return mem


def _layer(src, n: int, name: str) -> np.ndarray:
    """The pixels of one layer (bands × rows × cols)."""
    if name in GAIN:
        return _pixels(src, n, name)[np.newaxis]
    base = _pixels(src, n, "B04")
    if name == "AOT":
        return (base // 40 + 50)[np.newaxis].astype(np.uint16)
    if name == "WVP":
        return (base // 8 + 200)[np.newaxis].astype(np.uint16)
    if name == "SCL":
        return np.digitize(base, np.percentile(base, [5, 20, 40, 60, 75, 90, 97]))[np.newaxis].astype(np.uint8) + 3
    if name == "TCI":
        rgb = [np.clip((_pixels(src, n, b).astype(np.int32) - 1000) // 8, 1, 255) for b in ("B04", "B03", "B02")]
        return np.stack(rgb).astype(np.uint8)
    if name.startswith("MSK_"):
        cut = 85 if "CLD" in name else 97
        return np.clip((base.astype(np.float64) - np.percentile(base, cut)) / 30, 0, 100)[np.newaxis].astype(np.uint8)
    raise ValueError(name)


def make_scene(folder: Path, size: int, block: int) -> tuple[Path, dict[str, Path]]:
    """(the zipped L2A SAFE, {band: COG}) built from the real B01 pixels."""
    import rasterio

    safe = folder / "full" / f"{SCENE}.SAFE"
    granule = safe / "GRANULE" / "L2A_T32UNG_A034224_20220104T103427"
    (folder / "cogs").mkdir(parents=True)
    cogs: dict[str, Path] = {}
    with _source() as mem, mem.open() as src:
        for res, names in LAYERS.items():
            n, transform = _grid(size, res)
            out = granule / "IMG_DATA" / f"R{res}m"
            out.mkdir(parents=True)
            for name in names:
                data = _layer(src, n, name)
                profile = {"height": n, "width": n, "count": data.shape[0], "dtype": data.dtype.name,
                           "crs": "EPSG:32632", "transform": transform}
                with rasterio.open(out / f"{PREFIX}_{name}_{res}m.jp2", "w", driver="JP2OpenJPEG", QUALITY="100",
                                   REVERSIBLE="YES", **profile) as dst:
                    dst.write(data)
                if res == 10 and name in ("B04", "B08"):
                    cogs[name] = folder / "cogs" / f"{name}.tif"
                    with rasterio.open(cogs[name], "w", driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                                       BLOCKSIZE=str(block), nodata=0, **profile) as dst:
                        dst.write(data)
        qi = granule / "QI_DATA"
        qi.mkdir()
        for name in MASKS:
            res = int(name[-3:-1])
            n, transform = _grid(size, res)
            data = _layer(src, n, name)
            with rasterio.open(qi / f"{name}.jp2", "w", driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES",
                               height=n, width=n, count=1, dtype="uint8", crs="EPSG:32632",
                               transform=transform) as dst:
                dst.write(data)
    (safe / "MTD_MSIL2A.xml").write_text("<metadata/>\n")
    product = folder / f"{SCENE}.zip"
    with zipfile.ZipFile(product, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((folder / "full").rglob("*")):
            zf.write(path, path.relative_to(folder / "full").as_posix())
    return product, cogs


class Link:
    """A shared link of `mbps` megabits per second (0: loopback speed) and `latency` seconds per request."""

    def __init__(self, mbps: float = 0.0, latency: float = 0.0):
        self.rate = mbps * 1e6 / 8
        self.latency = latency
        self.lock = threading.Lock()
        self.free_at = 0.0

    def send(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            self.free_at = max(self.free_at, now) + nbytes / self.rate
            wait = self.free_at - now
        time.sleep(wait)


def serve(root: Path, link: Link | None = None) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    """Files under `root`, with HEAD and single byte ranges answered as S3 does; counts body bytes."""
    counter = {"bytes": 0}
    lock = threading.Lock()
    link = link or Link()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if link.latency:
                time.sleep(link.latency)
            path = root / self.path.split("?", 1)[0].lstrip("/")
            size = path.stat().st_size
            start, end, status = 0, size - 1, 200
            spec = (self.headers.get("Range") or "").strip()
            if spec.startswith("bytes=") and "," not in spec and "-" in spec:
                first, _, last = spec[6:].partition("-")
                if first.isdigit() and (not last or last.isdigit()):
                    start, end, status = int(first), min(int(last) if last else size - 1, size - 1), 206
                elif not first and last.isdigit():
                    start, end, status = max(size - int(last), 0), size - 1, 206
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            with open(path, "rb") as fh:
                fh.seek(start)
                left = end - start + 1
                while left:
                    block = fh.read(min(left, 1 << 16))
                    link.send(len(block))
                    self.wfile.write(block)
                    left -= len(block)
                    with lock:
                        counter["bytes"] += len(block)

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # a client closing a kept-alive connection is not worth a traceback

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counter


def scene(base: str, product: Path, cogs: dict[str, Path], window: bool):
    import json

    import rasterio.warp
    from shapely.geometry import box, shape

    from ingester.providers.cog_window import aoi_bbox
    from ingester.scenes import Scene, Tile

    date = datetime(2022, 1, 4, 10, 34, 31, tzinfo=UTC)
    x0, y0 = TILE_ORIGIN
    footprint = box(*rasterio.warp.transform_bounds("EPSG:32632", "EPSG:4326", x0, y0 - TILE_METRES,
                                                    x0 + TILE_METRES, y0, densify_pts=21))
    aoi = shape(json.loads(PAYLOAD.read_text())["geometry"])
    keys = {"B04": "red", "B08": "nir"}
    assets = {keys[b]: {"href": f"{base}/cogs/{p.name}", "size": p.stat().st_size,
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized"} for b, p in cogs.items()}
    tile = Tile(source_id=SCENE, scene_id=SCENE, date=date, wkt=footprint.wkt, graph_name="ExtractS2Bands")
    return Scene(source_id=SCENE, aoi="bench", date=date, wkt=footprint.wkt, tiles=[tile],
                 graph_config={"bands": "B04,B08", **({} if window else {"assets_window": "off"})},
                 metadata={"download_link": f"{base}/{product.name}", "size": product.stat().st_size,
                           "assets": assets, "catalogue": "earth-search", "s2:processing_baseline": "04.00",
                           "aoi_bbox": aoi_bbox(aoi, footprint.wkt)})


def loadavg() -> str:
    try:
        return ", ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2196, help="pixels of a 10 m band side (a real tile: 10980)")
    parser.add_argument("--block", type=int, default=0,
                        help="COG tile size (default: 1024 px scaled like the tile, to a multiple of 16)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mbps", type=float, default=0.0,
                        help="simulate a link of this many megabits per second (default: loopback speed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency added to every request")
    args = parser.parse_args()
    block = args.block or max(16, round(1024 * args.size / 10980 / 16) * 16)
    from ingester.config import load_settings
    from ingester.providers.stac_assets import MANIFEST, StacAssetsProvider
    from ingester.providers.url import UrlProvider

    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-stac-assets-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        product, cogs = make_scene(root, args.size, block)
        built = time.perf_counter() - started
        server, counter = serve(root, Link(args.mbps, args.latency_ms / 1000))
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings = load_settings({"workdir": str(root / "work")})
        cases = {"full product (`url`, the baseline)": (UrlProvider, scene(base, product, cogs, False)),
                 "`stac-assets` B04 + B08, whole assets": (StacAssetsProvider, scene(base, product, cogs, False)),
                 "`stac-assets` B04 + B08, AOI window (default)": (StacAssetsProvider,
                                                                   scene(base, product, cogs, True))}
        times: dict[str, list[float]] = {case: [] for case in cases}
        sizes: dict[str, list[int]] = {case: [] for case in cases}
        windows = ""
        for run in range(args.runs):
            order = list(cases)[run % 3:] + list(cases)[:run % 3]
            for case in order:
                cls, the_scene = cases[case]
                work = root / f"w{run}"
                work.mkdir(exist_ok=True)
                before = counter["bytes"]
                start = time.perf_counter()
                path = cls(settings).fetch(the_scene, work)
                times[case].append(time.perf_counter() - start)
                sizes[case].append(counter["bytes"] - before)
                if "window" in case and not windows:
                    import json

                    manifest = json.loads((path / MANIFEST).read_text())
                    windows = "; ".join(f"{k}: {e['window']['width']}×{e['window']['height']} px of "
                                        f"{e['window']['asset_shape'][1]}² ({100 * e['window']['share']:.1f} %)"
                                        if e.get("fetched") == "window" else f"{k}: whole ({e.get('whole_because')})"
                                        for k, e in manifest["assets"].items())
                shutil.rmtree(work)
                shutil.rmtree(root / "work" / "downloads", ignore_errors=True)
        server.shutdown()
        files = sorted(p for p in (root / "full").rglob("*.jp2"))
    load_after = loadavg()
    full = statistics.median(sizes["full product (`url`, the baseline)"])
    print(f"scene: 10 m bands {args.size}² ({TILE_METRES / args.size:.0f} m pixels on tile 32UNG), COG tiles "
          f"{block}², {len(files)} JPEG 2000 files in the SAFE; built in {built:.1f} s; {args.runs} runs, "
          "rotating order; link: " + (f"{args.mbps:g} Mbit/s" if args.mbps else "loopback")
          + (f", {args.latency_ms:g} ms per request" if args.latency_ms else ""))
    print(f"windows: {windows}")
    print(f"load average before / after: {load_before} / {load_after} ({os.cpu_count()} CPUs)")
    print("| path | bytes | % of the full product | median s | spread s (min–max) |")
    print("|---|---|---|---|---|")
    for case, values in times.items():
        got = sizes[case]
        shown = f"{got[0]:,}" if len(set(got)) == 1 else f"{min(got):,}–{max(got):,}"
        print(f"| {case} | {shown} | {100 * statistics.median(got) / full:.2f} % | {statistics.median(values):.3f} | "
              f"{min(values):.3f}–{max(values):.3f} |")


if __name__ == "__main__":
    main()
