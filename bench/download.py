"""Download benchmark: a whole ingester process downloading through the real provider path, against a
whole `curl -o` process, on the same loopback file.

    python -m bench.download                                      # 1 GiB, 7 rounds
    python -m bench.download --baseline-repo /path/to/checkout     # also that version, in the same rounds
    python -m bench.download --size-mb 200 --runs 5
    python -m bench.download --chunks 256,1024,4096 --size-mb 512     # receive buffer sizes, in-process

A file of the given size (sparse, with random blocks spread through it) is served by a threaded HTTP
server on 127.0.0.1 (Range supported, body sent with sendfile so that the server is not the bottleneck).
Each round runs every client once, in an order rotated from round to round (no client always follows
another one's writes):

- `curl -s -o FILE URL`;
- ingester, one Python process (`python -c …`, the checkout on PYTHONPATH, as a worker process runs):
  interpreter start, imports, then `providers.chain.fetch_product` of a scene whose `download_link` is
  the URL (the `url` provider: streamed to a `.part`, verified against the published BLAKE3 or MD5 and
  the size, renamed), and exit; once with a BLAKE3 checksum published, once with MD5 only;
- with `--baseline-repo`, the same two ingester clients from that checkout (e.g. main's code).

Every client is timed from its start to its exit by this process (wall clock). Reported per client: the
median and spread (min–max) of the rounds, the throughput of the median, the median and spread of the
per-round ratio curl time / client time (paired: both ran in the same round; target ≥ 0.90), the
highest peak memory of the process (its maximum resident set, by GNU time; target < 150 MB), and for
ingester where the time went (median: start-up and imports until the download begins, the download
itself, the exit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENE = "S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858"

# The ingester client: what a worker process does for a download, from interpreter start to exit. It
# prints when the download started and ended (epoch seconds) so that the parent can split the time.
CHILD = """
import json, sys, time
started = time.time()
from datetime import datetime, timezone
from pathlib import Path
from ingester.config import Settings
from ingester.providers.chain import fetch_product
from ingester.scenes import Scene

url, workdir, size, algorithm, digest, scene_id = sys.argv[1:]
settings = Settings(providers="url", workdir=workdir, http_retries=0)
scene = Scene(source_id=scene_id, aoi="bench", date=datetime(2022, 1, 4, tzinfo=timezone.utc),
              wkt="POLYGON ((9 55, 10 55, 10 56, 9 56, 9 55))", graph_name="CopyProductToStorage",
              metadata={"download_link": url, "size": int(size), "checksums": {algorithm.upper(): digest}})
begin = time.time()
fetched = fetch_product(scene, Path(workdir), settings)
end = time.time()
assert fetched.verified is not None and fetched.verified.checked == algorithm, fetched.verified
print(json.dumps({"started": started, "begin": begin, "end": end, "path": str(fetched.path)}))
"""


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


TIME = "/usr/bin/time"  # GNU time: the peak memory of the process it starts


def run_process(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run a process to its end: wall seconds from its start to its exit, peak memory (KiB), stdout.

    The peak is measured by GNU time when it is installed: the maximum resident set of a child of this
    (large) Python process would count the pages it shared with us before `exec`."""
    measured = os.path.exists(TIME)
    command = [TIME, "-f", "peak_kb=%M", *args] if measured else args
    out = tempfile.TemporaryFile()
    err_file = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=out, stderr=err_file, env=env, cwd=cwd)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err_file.seek(0)
    text, err = out.read().decode(errors="replace"), err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}): {err[-2000:]}")
    peaks = re.findall(r"peak_kb=(\d+)", err)
    peak = int(peaks[-1]) if measured and peaks else usage.ru_maxrss
    return {"seconds": seconds, "peak_kb": peak, "stdout": text, "spawned": time.time() - seconds}


def curl(url: str, dest: Path) -> dict:
    result = run_process(["curl", "-s", "-S", "-f", "-o", str(dest), url])
    result["file"] = dest
    return result


def ingester(url: str, workdir: Path, size: int, algorithm: str, digest: str, repo: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PYTHONSTARTUP", None)
    for key in [k for k in env if k.startswith("INGESTER_")]:
        del env[key]
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", CHILD, url, str(workdir), str(size), algorithm, digest, SCENE]
    result = run_process(command, env, repo)
    times = json.loads(result["stdout"].strip().splitlines()[-1])
    exited = result["spawned"] + result["seconds"]
    result.update(startup=times["begin"] - result["spawned"], transfer=times["end"] - times["begin"],
                  exit=exited - times["end"], file=Path(times["path"]))
    return result


def hash_alone(path: Path, algorithm: str) -> float:
    """Seconds to read the served file (from the page cache) and hash it on one core: the floor of a
    verified download whatever its I/O, measured in each round beside the clients."""
    import hashlib

    from blake3 import blake3

    hasher = blake3(max_threads=1) if algorithm == "blake3" else hashlib.new(algorithm)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        view = memoryview(bytearray(1024 * 1024))
        while n := fh.readinto(view):
            hasher.update(view[:n])
    return time.perf_counter() - t0


def chunk_sizes(url: str, tmp: Path, size: int, digests: dict, chunks_kib: list[int], runs: int) -> None:
    """In this process, `http.transfer.download` alone with receive buffers of each size (KiB), the sizes
    alternated within each round: how the buffer size (the unit handed to the hashing thread) matters."""
    from ingester.http.checksums import Expected
    from ingester.http.session import Service
    from ingester.http.transfer import download

    service = Service("bench", url.rsplit("/", 1)[0], retries=0)
    for algorithm in ("blake3", "md5"):
        expected = Expected(size=size, **{algorithm: digests[algorithm].hexdigest()})
        times: dict[int, list[float]] = {c: [] for c in chunks_kib}
        for i in range(runs):
            for chunk in chunks_kib[i % len(chunks_kib):] + chunks_kib[:i % len(chunks_kib)]:
                dest = tmp / "chunks.zip"
                t0 = time.perf_counter()
                download(service, url, str(dest), expected=expected, chunk_size=chunk * 1024)
                times[chunk].append(time.perf_counter() - t0)
                dest.unlink()
        print(f"{algorithm.upper()}, in-process download, {runs} rounds: " + "; ".join(
            f"{c} KiB: median {statistics.median(v):.2f} s ({_span(v)})" for c, v in times.items()), flush=True)


def _span(values: list[float], fmt: str = ".2f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=7, help="rounds (median and spread reported)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout measured in the same rounds")
    parser.add_argument("--tmp", type=Path, default=None, help="where the served file and downloads go")
    parser.add_argument("--chunks", help="instead: in-process downloads with these receive buffer sizes in KiB "
                        "(e.g. 512,1024,4096), alternated")
    args = parser.parse_args(argv)

    import hashlib

    from blake3 import blake3

    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.tmp) as tmp:
        src = Path(tmp) / "served.zip"
        make_file(src, size)
        digests = {"blake3": blake3(max_threads=blake3.AUTO), "md5": hashlib.md5()}
        with open(src, "rb") as fh:
            while block := fh.read(8 * 1024 * 1024):
                for h in digests.values():
                    h.update(block)
        server = serve(src)
        url = f"http://127.0.0.1:{server.server_address[1]}/{SCENE}.zip"

        if args.chunks:
            chunk_sizes(url, Path(tmp), size, digests, [int(c) for c in args.chunks.split(",")], args.runs)
            server.shutdown()
            return

        def client(algorithm: str, repo: Path) -> Callable[[Path], dict]:
            return lambda d: ingester(url, d / "work", size, algorithm, digests[algorithm].hexdigest(), repo)

        clients: list[tuple[str, Callable[[Path], dict]]] = [
            ("curl -o (baseline)", lambda d: curl(url, d / "curl.zip")),
            ("ingester, BLAKE3 verified", client("blake3", REPO)),
            ("ingester, MD5 verified", client("md5", REPO))]
        if args.baseline_repo:
            other = args.baseline_repo.resolve()
            clients += [(f"before ({other.name}): ingester, BLAKE3", client("blake3", other)),
                        (f"before ({other.name}): ingester, MD5", client("md5", other))]
        results: dict[str, list[dict]] = {name: [] for name, _ in clients}
        alone: dict[str, list[float]] = {"blake3": [], "md5": []}
        load_before = os.getloadavg()
        for i in range(args.runs):
            order = clients[i % len(clients):] + clients[:i % len(clients)]
            for name, run in order:
                result = run(Path(tmp))
                got = result["file"].stat().st_size
                if got != size:
                    raise SystemExit(f"{name}: wrong size {got}")
                result["file"].unlink()
                results[name].append(result)
            for algorithm, values in alone.items():
                values.append(hash_alone(src, algorithm))
            print(f"round {i + 1}/{args.runs}: " + ", ".join(f"{n.split(',')[0] if 'curl' in n else n}: "
                                                                  f"{results[n][-1]['seconds']:.2f} s"
                                                                  for n, _ in clients), flush=True)
        load_after = os.getloadavg()
        server.shutdown()

    curl_s = [r["seconds"] for r in results["curl -o (baseline)"]]
    rows = []
    for name, rs in results.items():
        secs = [r["seconds"] for r in rs]
        median = statistics.median(secs)
        ratios = [c / s for c, s in zip(curl_s, secs, strict=True)]
        split = "-"
        if "startup" in rs[0]:
            split = " / ".join(f"{statistics.median(r[k] for r in rs):.2f}" for k in ("startup", "transfer", "exit"))
        rows.append((name, f"{median:.2f}", _span(secs), f"{size / median / 1e6:.0f}",
                     f"{statistics.median(ratios):.2f}", _span(ratios), f"{max(r['peak_kb'] for r in rs) / 1024:.0f}",
                     split))
    print(f"\nwhole processes, download of {args.size_mb} MiB over loopback, {args.runs} rounds (order rotated); "
          f"{os.cpu_count()} CPU(s), load {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    header = ("client", "median s", "min-max s", "MB/s", "x curl", "x curl min-max", "peak MB",
              "start / download / exit s")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("x curl: median of the per-round ratios curl s / client s; targets: >= 0.90 for ingester, "
          "peak memory < 150 MB")
    for algorithm, values in alone.items():
        median = statistics.median(values)
        ratio = statistics.median(c / v for c, v in zip(curl_s, values, strict=True))
        print(f"reference, in this process: read the file from the page cache and {algorithm.upper()} it on one "
              f"core: median {median:.2f} s ({_span(values)}), {size / median / 1e6:.0f} MB/s, x curl {ratio:.2f}")


if __name__ == "__main__":
    main()
