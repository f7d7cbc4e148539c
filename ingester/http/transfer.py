"""Transfers: a file streamed to `<name>.part`, resumed with `Range` after a dropped connection (with a
growing wait between tries), verified against the published checksum or size, then moved into place.

Memory stays bounded whatever the file size (a ring of receive buffers); every read from the socket is
written through to the part at once, so a `kill -9` loses only what was in flight and the next attempt
resumes near where the transfer stopped; the checksum is computed on a second thread
(`checksums.BackgroundHasher`), overlapping the network and disk I/O.
"""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from typing import Any

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from ingester.errors import DownloadError, HTTPError
from ingester.http.checksums import BackgroundHasher, Expected, Verified, check, hash_file, new_hasher
from ingester.http.messages import server_message, short_url
from ingester.http.session import Service

MAX_RESUME_WAIT = 30.0  # seconds, the longest wait before asking again for a transfer that was cut
# Bytes per receive buffer, the unit handed to the hashing thread. 1 MiB, not more: the ring (depth + 2
# buffers, 6 MiB) stays small enough that the hasher reads what the socket just wrote while it is still in
# the CPU caches; 4 MiB buffers (a 24 MiB ring) were slower in every comparison (bench/README.md).
RECEIVE_BUFFER = 1024 * 1024


class TransferProgress:
    """Progress callbacks of a transfer (no-op); `ingester.providers.progress` draws rich bars."""

    def start(self, name: str, total: int | None, done: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def restart(self) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None:
        """The reporter is no longer used (called by whoever made it)."""


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) of a `Content-Range: bytes start-end/total` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def download(service: Service, url: str, dest: str, *, expected: Expected | None = None, auth: bool = False,
             progress: TransferProgress | None = None, max_resumes: int = 10, max_refetch: int = 2,
             chunk_size: int = RECEIVE_BUFFER, part: str | None = None) -> Verified:
    """Download `url` to `dest` through `<dest>.part`: bounded memory, resumed with `Range` after a
    dropped connection (206 + matching Content-Range, else restart from 0), verified against the
    published checksum or size (else the server's announced size), and renamed only when verified.

    A mismatch deletes the part and fetches again (at most `max_refetch` times) before raising
    DownloadError. HTTP errors surface as HTTPError from `Service.request`. `part` may name a
    partial file kept elsewhere (e.g. across job attempts); an existing one is resumed."""
    expected = expected or Expected()
    progress = progress or TransferProgress()
    part = part or f"{dest}.part"
    name = os.path.basename(dest)
    last_error: DownloadError | None = None
    for _fetch in range(max_refetch + 1):
        try:
            size, digest, announced = _stream(service, url, part, expected, auth, progress, max_resumes, chunk_size)
            checked = check(size, expected.algorithm, digest, expected, announced, name)
        except DownloadError as exc:
            last_error = exc
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            progress.restart()
            continue
        _move(part, dest)
        progress.finish()
        return Verified(dest, size, expected.algorithm, digest, checked)
    raise DownloadError(f"{last_error} (after {max_refetch + 1} downloads)")


def _move(src: str, dest: str) -> None:
    try:
        os.replace(src, dest)
    except OSError:  # another file system: copy to a temporary name beside dest, then rename
        tmp = f"{dest}.moving"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        os.unlink(src)


def _stream(service: Service, url: str, part: str, expected: Expected, auth: bool, progress: TransferProgress,
            max_resumes: int, chunk_size: int) -> tuple[int, str, int | None]:
    """Fill `part` completely (resuming as needed); returns (size, hex digest, announced size)."""
    algorithm = expected.algorithm
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    hasher = BackgroundHasher(hash_file(part, algorithm, limit=offset) if offset else new_hasher(algorithm))
    try:
        return _stream_into(service, url, part, expected, auth, progress, max_resumes, chunk_size, offset, hasher)
    finally:
        hasher.close()


def _stream_into(service: Service, url: str, part: str, expected: Expected, auth: bool,
                 progress: TransferProgress, max_resumes: int, chunk_size: int, offset: int,
                 hasher: BackgroundHasher) -> tuple[int, str, int | None]:
    algorithm = expected.algorithm
    announced: int | None = expected.size
    ring = _Ring(chunk_size, hasher.depth + 2)
    drops = 0
    started = False
    while True:
        if expected.size is not None and offset == expected.size and offset > 0:
            return offset, hasher.hexdigest(), announced
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = service.request("GET", url, auth=auth, stream=True, headers=headers, ok_statuses=(416,))
        try:
            if response.status_code == 416:  # nothing left to send: the part is complete (or wrong)
                cr = _content_range_start(response.headers.get("Content-Range", "").replace("bytes */", "bytes 0-0/"))
                total = cr[1] if cr else None
                if total is not None and total == offset:
                    return offset, hasher.hexdigest(), total
                offset = 0  # restart from scratch
                hasher.reset(new_hasher(algorithm))
                open(part, "wb").close()
                continue
            if response.status_code not in (200, 206):  # e.g. 202: accepted, product not ready yet
                raise HTTPError(f"{service.name}: GET {short_url(url)} answered {response.status_code} instead of the "
                                f"file: {server_message(response)} (not available yet, being restored?)",
                                response.status_code, url)
            if offset and response.status_code == 206:
                cr = _content_range_start(response.headers.get("Content-Range"))
                if cr is None or cr[0] != offset:
                    raise DownloadError(f"{os.path.basename(part)}: server answered Range {offset}- with "
                                        f"Content-Range {response.headers.get('Content-Range')!r}")
                if cr[1] is not None:
                    announced = announced if expected.size is not None else cr[1]
                mode = "ab"
            else:  # 200: the whole body, from the start
                if offset:
                    offset = 0
                    hasher.reset(new_hasher(algorithm))
                    progress.restart()
                length = response.headers.get("Content-Length")
                if expected.size is None and length and length.isdigit() and "Content-Encoding" not in response.headers:
                    announced = int(length)
                mode = "wb"
            if not started:
                progress.start(os.path.basename(part)[:-5], announced, offset)
                started = True
            before = offset
            try:
                with open(part, mode, buffering=0) as out:  # unbuffered: each arrival is written at once
                    sink = _WriteThrough(out, hasher, ring)
                    try:
                        for n in _receive(response, sink):
                            offset += n
                            progress.advance(n)
                    finally:
                        sink.close()
            except (requests.RequestException, OSError, http.client.HTTPException, Urllib3Error) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
                    raise
                drops = drops + 1 if offset == before else 1
                if drops > max_resumes:  # no response: temporary; the part is kept for a later attempt
                    raise HTTPError(f"{service.name}: GET {short_url(url)}: connection dropped {drops} time(s) in a "
                                    f"row at byte {offset} ({type(exc).__name__})", None, url) from None
                service.sleep(_resume_backoff(service, drops))
                continue
            if announced is not None and offset < announced:  # closed early without an error
                drops = drops + 1 if offset == before else 1
                if drops > max_resumes:
                    raise HTTPError(f"{service.name}: GET {short_url(url)}: transfer stops at {offset} of {announced} "
                                    "bytes", None, url)
                service.sleep(_resume_backoff(service, drops))  # a server that closes at once must not be hammered
                continue
            return offset, hasher.hexdigest(), announced
        finally:
            response.close()


def _resume_backoff(service: Service, drops: int) -> float:
    """Seconds before the next request of a transfer that was cut `drops` times in a row without a byte
    (1 after progress): the HTTP layer's backoff (INGESTER_HTTP_BACKOFF), doubling, at most 30 s."""
    return service.backoff_delay(drops, ceiling=MAX_RESUME_WAIT)


class _Ring:
    """Reusable receive buffers: no allocation per chunk (a fresh process would otherwise map and
    unmap every 1 MiB block, which costs more than the transfer). With `depth + 2` buffers and a
    hasher queue of `depth`, a buffer is refilled only after the hasher has finished with it."""

    def __init__(self, size: int, count: int):
        self.views = [memoryview(bytearray(size)) for _ in range(count)]
        self.next = 0

    def take(self) -> memoryview:
        view = self.views[self.next % len(self.views)]
        self.next += 1
        return view


class _WriteThrough:
    """Where received bytes go: into the part file as soon as they arrive (one write per read from the
    socket, the file unbuffered), so that a `kill -9` loses only what the kernel had not handed over
    yet and a resume starts near where the transfer stopped; into the checksum a whole ring buffer at
    a time (a hand-off per buffer keeps the hasher thread's overhead low at loopback speed)."""

    def __init__(self, out: Any, hasher: BackgroundHasher, ring: _Ring):
        self.out = out
        self.hasher = hasher
        self.ring = ring
        self.view = ring.take()
        self.filled = 0

    def free(self) -> memoryview:
        """The part of the current buffer that the next read fills."""
        return self.view[self.filled:]

    def add(self, n: int) -> None:
        """`n` bytes were read into `free()`: write them through, hash the buffer once full."""
        _write_all(self.out, self.view[self.filled:self.filled + n])
        self.filled += n
        if self.filled == len(self.view):
            self.hasher.update(self.view)
            self.view = self.ring.take()
            self.filled = 0

    def add_block(self, block: bytes) -> None:
        """A block read elsewhere (content-encoded or chunked bodies): written and hashed as it is."""
        _write_all(self.out, block)
        self.hasher.update(block)

    def close(self) -> None:
        """Hash what is written but not hashed yet (the transfer ended or was cut)."""
        if self.filled:
            self.hasher.update(self.view[:self.filled])
            self.view = self.ring.take()
            self.filled = 0


def _write_all(out: Any, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written:]


def _receive(response: requests.Response, sink: _WriteThrough) -> Iterator[int]:
    """Read the body as it arrives into `sink`; yields the byte count of each read.

    A plain body (Content-Length or read to the close, no transfer or content encoding) is read from
    http.client's socket file with `readinto1`: one system call, whatever has arrived, straight into
    the ring buffer (http.client's own `readinto` waits until the whole buffer is full, which
    on a slow link is minutes of data that a kill would lose). Other bodies go through urllib3's
    `read1`. An early close ends the iteration: the caller compares the count with the size."""
    fp = getattr(response.raw, "_fp", None)
    sock = getattr(fp, "fp", None)
    if (isinstance(fp, http.client.HTTPResponse) and not fp.chunked and sock is not None
            and hasattr(sock, "readinto1") and not response.headers.get("Content-Encoding")):
        while fp.length is None or fp.length > 0:
            room = sink.free()
            n = sock.readinto1(room if fp.length is None else room[:fp.length])
            if not n:
                return
            if fp.length is not None:
                fp.length -= n  # http.client's count of what is left, as its own readinto keeps it
            sink.add(n)
            yield n
        return
    read = response.raw.read1 if hasattr(response.raw, "read1") else response.raw.read
    while block := read(len(sink.free()) or RECEIVE_BUFFER):
        sink.add_block(block)
        yield len(block)
