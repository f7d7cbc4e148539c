"""Download benchmark: ingester's verified transfer against `curl -o` on the same loopback file.

    python -m bench.download                                   # 1 GiB, 5 runs of each client
    python -m bench.download --size-mb 200 --runs 5
    python -m bench.download --baseline-repo /path/to/other/checkout   # also that version, same run

A sparse file of the given size is served by a threaded HTTP server on 127.0.0.1 (Range supported,
body sent with sendfile so the server is not the bottleneck). Each client runs in its own process:
curl, then `ingester.http.download` verifying BLAKE3 (and MD5) against precomputed digests; both are
timed from the request to the verified file on disk (curl's `time_total`; ingester inside its child,
without interpreter start-up). With `--baseline-repo`, the same two ingester clients also run from
that checkout (e.g. the commit before a change), interleaved with the others. Reported per client:
median and spread (min-max) of the runs, throughput of the median, its ratio to curl's median
(target >= 0.9) and the child's highest peak memory (VmHWM; target < 150 MB). The order of the
clients rotates between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_file(path: Path, size: int) -> None:
    """A sparse file with some non-zero bytes spread through it (not all zeros)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        step = max(size // 64, 1)
        for pos in range(0, size, step):
            fh.seek(pos)
            fh.write(os.urandom(min(4096, size - pos)))


def serve(path: Path) -> ThreadingHTTPServer:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as fh:
                self.connection.sendfile(fh, offset=start, count=size - start)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def child(url: str, dest: str, size: int, algorithm: str, digest: str) -> None:
    """Run in a separate process: one verified download; prints seconds and peak memory as JSON."""
    from ingester.http import Expected, Service, download

    service = Service("bench", url.rsplit("/", 1)[0], retries=0)
    expected = Expected(size=size, **{algorithm: digest})
    t0 = time.perf_counter()
    verified = download(service, url, dest, expected=expected)
    seconds = time.perf_counter() - t0
    assert verified.checked == algorithm, verified.checked
    print(json.dumps({"seconds": seconds, "peak_kb": _vm_hwm_kb()}))


def _vm_hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_curl(url: str, dest: Path) -> dict:
    """curl's own transfer time (`-w %{time_total}`), like ingester's, which is timed inside its process:
    neither includes process start-up."""
    out = subprocess.run(["curl", "-s", "-S", "-f", "-o", str(dest), "-w", "%{time_total}", url], check=True,
                         capture_output=True, text=True)
    return {"seconds": float(out.stdout.strip().replace(",", ".")), "peak_kb": None}


def run_ingester(url: str, dest: Path, size: int, algorithm: str, digest: str, repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "bench.download", "--child", url, str(dest), str(size), algorithm,
                          digest], check=True, capture_output=True, text=True, env=env, cwd=repo)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5, help="runs of each client (median and spread reported)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout measured in the same run")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, dest, size, algorithm, digest = args.child
        child(url, dest, int(size), algorithm, digest)
        return

    import hashlib
    import statistics

    from blake3 import blake3

    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        src = Path(tmp) / "product.zip"
        make_file(src, size)
        digests = {"blake3": blake3(max_threads=blake3.AUTO), "md5": hashlib.md5()}
        with open(src, "rb") as fh:
            while block := fh.read(8 * 1024 * 1024):
                for h in digests.values():
                    h.update(block)
        server = serve(src)
        url = f"http://127.0.0.1:{server.server_address[1]}/product.zip"

        def ingester(algorithm: str, repo: Path | None = None):
            return lambda d: run_ingester(url, d, size, algorithm, digests[algorithm].hexdigest(), repo)

        clients = [("curl -o (baseline)", lambda d: run_curl(url, d)),
                   ("ingester, BLAKE3 verified", ingester("blake3")),
                   ("ingester, MD5 verified", ingester("md5"))]
        if args.baseline_repo:
            other = args.baseline_repo.resolve()
            clients += [(f"{other.name}: ingester, BLAKE3 verified", ingester("blake3", other)),
                        (f"{other.name}: ingester, MD5 verified", ingester("md5", other))]
        seconds: dict[str, list[float]] = {name: [] for name, _ in clients}
        peaks: dict[str, int] = {}
        for i in range(args.runs):
            # rotate the order: no client always runs right after another one's writes
            for name, run in clients[i % len(clients):] + clients[:i % len(clients)]:
                dest = Path(tmp) / "out.zip"
                result = run(dest)
                if dest.stat().st_size != size:
                    raise SystemExit(f"{name}: wrong size {dest.stat().st_size}")
                dest.unlink()
                seconds[name].append(result["seconds"])
                peaks[name] = max(peaks.get(name, 0), result["peak_kb"] or 0)
        server.shutdown()
    base = statistics.median(seconds["curl -o (baseline)"])
    rows = []
    for name, values in seconds.items():
        median = statistics.median(values)
        peak = f"{peaks[name] / 1024:.0f}" if peaks.get(name) else "-"
        rows.append((name, f"{median:.2f}", f"{min(values):.2f}-{max(values):.2f}", f"{size / median / 1e6:.0f}",
                     f"{base / median:.2f}", peak))
    print(f"download of {args.size_mb} MiB over loopback, median and spread of {args.runs} run(s), highest peak "
          f"memory; {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}")
    header = ("client", "median s", "min-max s", "MB/s", "x curl", "peak MB")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("targets: x curl >= 0.90 for ingester; peak memory < 150 MB")


if __name__ == "__main__":
    main()
