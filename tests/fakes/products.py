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
