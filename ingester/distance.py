"""The buffer around the AOI for the burst test: metres, or degrees in the old form (`tiles --buffer`,
`INGESTER_AOI_BUFFER`). Parsing only (no geometry library imported): settings check it at load time;
`ingester.geodesy.buffer_area` applies it."""

from __future__ import annotations

import dataclasses
import math
import re

DEFAULT_BUFFER = "5600m"  # 0.05° of latitude (5,528–5,585 m), the old default: see docs/bursts.md, "AOI test"
_BUFFER_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(m|km|deg|°)?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A distance around the AOI: metres (`unit` "m", measured on the WGS84 ellipsoid) or degrees
    ("deg", the old form: that many degrees of longitude and of latitude in the longitude/latitude plane,
    so fewer metres east-west the farther from the equator)."""

    value: float
    unit: str = "m"

    def __str__(self) -> str:
        return f"{self.value:g} m" if self.unit == "m" else f"{self.value:g}°"


def parse_buffer(text: str) -> Buffer:
    """`5000`, `5000m` or `5km` (metres), or `0.05deg` / `0.05°` (degrees, the old form).

    A bare number below 1 is refused: it was a number of degrees before buffers became metres (`0.05`
    meant about 5.6 km north-south), and reading it as 0.05 m would silently keep fewer bursts.
    Raises ValueError saying why."""
    match = _BUFFER_RE.match(str(text))
    if not match and str(text).strip().startswith("-"):
        raise ValueError(f"{str(text)!r}: a buffer must be ≥ 0 (0: the exact AOI)")
    if not match:
        raise ValueError(f"{str(text)!r} is not a distance: write metres (5000, 5000m, 5km) or degrees (0.05deg)")
    number, unit = match.group(1), (match.group(2) or "").lower()
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{str(text)!r} is not a finite distance")
    if unit in ("deg", "°"):
        return Buffer(value, "deg")
    if unit == "" and 0 < value < 1:
        raise ValueError(f"{str(text)!r}: a bare number is metres (buffers were degrees before): write {number}deg "
                         "for degrees, or metres such as 5000")
    return Buffer(value * 1000 if unit == "km" else value, "m")
