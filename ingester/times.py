"""Timestamps: parsing RFC 3339 into aware UTC datetimes and writing them as the original does."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any fraction length, `Z` or offset) into an aware UTC datetime.

    A timestamp without a zone is taken as UTC (the catalogues and S1 annotations write them so).
    Raises ValueError with the offending text.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"not a timestamp: {text!r}")
    raw = text.strip()
    norm = raw.replace("z", "Z")
    if norm.endswith("Z"):
        norm = norm[:-1] + "+00:00"
    # Python accepts at most 6 fraction digits: truncate nanoseconds.
    m = _FRACTION.search(norm)
    if m and len(m.group(1)) > 6:
        norm = norm[: m.start(1)] + m.group(1)[:6] + norm[m.end(1) :]
    try:
        value = datetime.fromisoformat(norm)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC, 9999-12-31T23:00-05:00 in 10000
        raise ValueError(f"{raw!r} is out of range: in UTC it falls before year 1 or after year 9999") from None


def format_time(value: datetime) -> str:
    """UTC, `Z` suffix, fraction without trailing zeros (Go's RFC3339Nano), e.g. 2022-02-04T17:01:23.133Z."""
    value = value.astimezone(UTC)
    # not strftime("%Y"): glibc writes year 1 as "1", which no RFC 3339 parser reads back
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def epoch_text(t: float) -> str:
    """Epoch seconds as RFC 3339 UTC, to the second (times in messages and status)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
