"""Bytes and time to get one Sentinel-2 scene ready for B04 and B08: the `stac-assets` path (the two COG
assets only) against the full-product path (the zipped SAFE), in the same run (target: ≤ 5 % of the bytes).

    python -m bench.stac_assets             # 10 m bands of 2196 × 2196 pixels (1/5 of a real tile), 5 runs
    python -m bench.stac_assets --size 1098 --runs 5

The scene is synthetic but built from real pixels: the B01 band of the real Sentinel-2 excerpt
(tests/data/s2) resampled to each band's grid (10 m: size², 20 m: (size/2)², 60 m: (size/6)²), with a
per-band gain so that bands differ. The full product is a SAFE with the 13 bands at their native
resolution as JPEG 2000 (lossless, as in real products) plus the true-colour TCI, zipped; the
stac-assets path serves each band as a deflate COG (as Earth Search does). Both are served by one
loopback HTTP server and fetched by ingester's own providers: `url` for the product zip
(`metadata.download_link`), `stac-assets` for the item (graph ExtractS2Bands with bands B04,B08).
Runs alternate the two paths; reported: median and spread (min–max) of the seconds, and the bytes.
"""

from __future__ import annotations

import argparse
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
JP2 = (REPO / "tests/data/s2/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE/GRANULE/"
       "L1C_T31TDH_A013204_20180101T105435/IMG_DATA/T31TDH_20180101T105441_B01.jp2")
BANDS = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
         "B09": 60, "B10": 60, "B11": 20, "B12": 20}
KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
        "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
        "B12": "swir22"}
SCENE = "S2A_MSIL2A_20220104T103431_N0400_R108_T32UNG_20220104T113955"


def make_scene(folder: Path, size: int) -> tuple[Path, dict[str, Path]]:
    """(product zip, {band: COG}) built from the real B01 pixels."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    cogs: dict[str, Path] = {}
    safe = folder / "full" / f"{SCENE}.SAFE" / "GRANULE" / "L2A_T32UNG" / "IMG_DATA"
    safe.mkdir(parents=True)
    (folder / "cogs").mkdir()
    with rasterio.open(JP2) as src:
        crs = src.crs
        for i, (band, res) in enumerate(BANDS.items()):
            n = size * 10 // res
            data = src.read(1, out_shape=(n, n), resampling=Resampling.bilinear).astype(np.float64)
            data = np.clip(data * (0.8 + 0.05 * i) + 1000, 1, 65535).astype(np.uint16)
            profile = {"height": n, "width": n, "count": 1, "dtype": "uint16", "crs": crs,
                       "transform": from_origin(600000, 6100000, res * 5490 / size / 5, res * 5490 / size / 5)}
            with rasterio.open(safe / f"T32UNG_20220104T103431_{band}.jp2", "w", driver="JP2OpenJPEG",
                               QUALITY="100", REVERSIBLE="YES", **profile) as dst:
                dst.write(data, 1)
            with rasterio.open(folder / "cogs" / f"{band}.tif", "w", driver="COG", COMPRESS="DEFLATE",
                               PREDICTOR="YES", nodata=0, **profile) as dst:
                dst.write(data, 1)
            cogs[band] = folder / "cogs" / f"{band}.tif"
            if band == "B04":
                tci = np.stack([(data >> 6).astype(np.uint8)] * 3)
                with rasterio.open(safe / "T32UNG_20220104T103431_TCI.jp2", "w", driver="JP2OpenJPEG",
                                   QUALITY="100", REVERSIBLE="YES", **{**profile, "count": 3, "dtype": "uint8"}) as dst:
                    dst.write(tci)
    (folder / "full" / f"{SCENE}.SAFE" / "MTD_MSIL2A.xml").write_text("<metadata/>\n")
    product = folder / f"{SCENE}.zip"
    with zipfile.ZipFile(product, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((folder / "full").rglob("*")):
            zf.write(path, path.relative_to(folder / "full").as_posix())
    return product, cogs


def serve(root: Path) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    counter = {"bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = root / self.path.lstrip("/")
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            counter["bytes"] += len(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counter


def scene(base: str, product: Path, cogs: dict[str, Path]):
    from ingester.scenes import Scene, Tile

    date = datetime(2022, 1, 4, 10, 34, 31, tzinfo=UTC)
    assets = {KEYS[b]: {"href": f"{base}/cogs/{p.name}", "size": p.stat().st_size} for b, p in cogs.items()}
    tile = Tile(source_id=SCENE, scene_id=SCENE, date=date, wkt="POINT (10 55)", graph_name="ExtractS2Bands")
    return Scene(source_id=SCENE, aoi="bench", date=date, wkt="POINT (10 55)", tiles=[tile],
                 graph_config={"bands": "B04,B08"},
                 metadata={"download_link": f"{base}/{product.name}", "size": product.stat().st_size,
                           "assets": assets, "catalogue": "earth-search", "s2:processing_baseline": "04.00"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2196, help="pixels of a 10 m band side (real tiles: 10980)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from ingester.config import load_settings
    from ingester.providers.stac_assets import StacAssetsProvider
    from ingester.providers.url import UrlProvider

    with tempfile.TemporaryDirectory(prefix="bench-stac-assets-") as tmp:
        root = Path(tmp)
        product, cogs = make_scene(root, args.size)
        server, counter = serve(root)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings = load_settings({"workdir": str(root / "work")})
        the_scene = scene(base, product, cogs)
        times: dict[str, list[float]] = {"full product (url)": [], "stac-assets B04+B08": []}
        sizes: dict[str, int] = {}
        for run in range(args.runs):
            order = list(times) if run % 2 == 0 else list(reversed(times))
            for case in order:
                work = root / f"w{run}-{len(sizes)}-{case[:4]}"
                work.mkdir()
                provider = UrlProvider(settings) if case.startswith("full") else StacAssetsProvider(settings)
                before = counter["bytes"]
                start = time.perf_counter()
                provider.fetch(the_scene, work)
                times[case].append(time.perf_counter() - start)
                sizes[case] = counter["bytes"] - before
                shutil.rmtree(work)
                shutil.rmtree(root / "work" / "downloads", ignore_errors=True)
        server.shutdown()
    full = sizes["full product (url)"]
    print(f"scene: 10 m bands {args.size}², {args.runs} runs, alternating order")
    print("| path | bytes | % of the product | median s | spread s (min–max) |")
    print("|---|---|---|---|---|")
    for case, values in times.items():
        print(f"| {case} | {sizes[case]:,} | {100 * sizes[case] / full:.1f} % | {statistics.median(values):.3f} | "
              f"{min(values):.3f}–{max(values):.3f} |")


if __name__ == "__main__":
    main()
