"""Product zips built from the real S2 SAFE of tests/data/s2 (zipped in the test)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

S2_ID = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"


def zip_safe(safe: Path, top: str | None = None) -> bytes:
    """The SAFE folder zipped as CDSE serves it: one top entry `<name>.SAFE/`."""
    top = top or safe.name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(safe.rglob("*")):
            arc = f"{top}/{path.relative_to(safe).as_posix()}"
            if path.is_dir():
                zf.writestr(arc + "/", b"")
            else:
                zf.write(path, arc)
    return buf.getvalue()


def checksums(data: bytes) -> list[dict[str, str]]:
    """The OData `Checksum` list of a product."""
    from blake3 import blake3

    return [{"Algorithm": "MD5", "Value": hashlib.md5(data).hexdigest(), "ChecksumDate": "2024-01-01T00:00:00Z"},
            {"Algorithm": "BLAKE3", "Value": blake3(data).hexdigest(), "ChecksumDate": "2024-01-01T00:00:00Z"}]


def zip_bomb(path: Path, members: dict[str, int | bytes], *, crc: bool = True,
             declared: dict[str, int] | None = None) -> Path:
    """A zip whose members are `bytes` as given or, for an int, that many zero bytes deflated: a
    GiB-sized member costs a few MB on disk and a few ms to build, because a block of zeros deflated
    after a full flush compresses to the same bytes every time (the stream is repeated, never the
    data). Sizes past 4 GiB get zip64 extra fields. With `crc=False` the CRC of large members is left
    at 0 (a zip refused on its declared sizes is never read); `declared` states other sizes than the
    real ones in the headers (a lying archive)."""
    import struct
    import zlib

    block = 1 << 20
    out = io.BytesIO()
    central = []
    for name, content in members.items():
        if isinstance(content, bytes):
            size, data, checksum = len(content), zlib.compress(content, 9)[2:-4], zlib.crc32(content)
        else:
            size = content
            comp = zlib.compressobj(9, zlib.DEFLATED, -15)
            unit = comp.compress(b"\0" * block) + comp.flush(zlib.Z_FULL_FLUSH)
            full, rest = divmod(size, block)
            tail = comp.compress(b"\0" * rest) + comp.flush() if rest else comp.flush()
            data = unit * full + tail
            checksum = 0
            if crc:
                zeros = b"\0" * block
                for _ in range(full):
                    checksum = zlib.crc32(zeros, checksum)
                checksum = zlib.crc32(b"\0" * rest, checksum)
        raw = name.encode()
        size = (declared or {}).get(name, size)
        big = size >= 0xFFFFFFFF
        extra = struct.pack("<HHQ", 1, 8, size) if big else b""
        version = 45 if big else 20
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, 8, 0, 0x21, checksum, len(data),
                              0xFFFFFFFF if big else size, len(raw), len(extra)) + raw + extra)
        out.write(data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, 0, 8, 0, 0x21, checksum,
                                   len(data), 0xFFFFFFFF if big else size, len(raw), len(extra), 0, 0, 0,
                                   0o100644 << 16, offset) + raw + extra)
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), start, 0))
    path.write_bytes(out.getvalue())
    return path
