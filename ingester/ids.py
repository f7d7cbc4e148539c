"""The one grammar of the ids and names that become storage paths, file names and store keys.

AOI names, scene ids and tile ids are path components (`<storage>/<aoi>/<scene>/tiles/<tile>/…`,
`<workdir>/<aoi>/…`) and parts of file names; layer names are parts of file names
(`<date>_<tile>_<layer>.<ext>`). They are checked with these rules when a payload, a scenes/tiles
file or a graph is loaded, so that a hostile or mistyped id is an input error (exit 2) before
anything is written, never a job that fails late or a write outside the storage root.

- id (AOI name, scene id, tile id): letters, digits, '.', '_', ':', '-'; starts with a letter or a
  digit; no '..'; at most `MAX_LENGTH` characters (file names built from several ids stay under the
  255-byte limit of common file systems).
- layer name: letters, digits, '.', '_', '-'; may start with '_' (the reserved `__product__`,
  `__annotations__`); no '..'; at most `MAX_LENGTH` characters.
- catalogue uuid (CDSE product Id): the 8-4-4-4-12 hexadecimal UUID form.
- record id (a store record): a positive integer written in decimal.
"""

from __future__ import annotations

import re
from typing import Any

MAX_LENGTH = 100
FILE_NAME_MAX = 255  # bytes in one path component on ext4, xfs, btrfs, tmpfs

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")
_LAYER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RECORD_ID = re.compile(r"[1-9][0-9]{0,17}")  # fits SQLite's 64-bit INTEGER

ID_RULE = "letters, digits, '.', '_', ':', '-', starting with a letter or digit, no '..'"
LAYER_RULE = "letters, digits, '.', '_', '-', no '..'"


def shown(value: Any, limit: int = 60) -> str:
    """A value for a message: repr (so NUL and control characters are visible), cut when long."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "…"


def _problem(value: Any, pattern: re.Pattern[str], rule: str, max_length: int) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {shown(value)}"
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"{shown(value)} is too long: {len(value)} characters, at most {max_length}"
    if not pattern.fullmatch(value) or ".." in value:
        return f"{shown(value)} is not allowed ({rule}; at most {max_length} characters)"
    return None


def id_problem(value: Any, max_length: int = MAX_LENGTH) -> str | None:
    """Why `value` is not a valid AOI name, scene id or tile id (None: it is valid)."""
    return _problem(value, _ID, ID_RULE, max_length)


def file_name_problem(value: Any) -> str | None:
    """Why `value` cannot be a file or folder name inside the storage (the id rule, 255 characters)."""
    problem = _problem(value, _ID, ID_RULE, FILE_NAME_MAX)
    if problem is None and len(value.encode("utf-8")) > FILE_NAME_MAX:
        return f"{shown(value)} is longer than {FILE_NAME_MAX} bytes"
    return problem


def layer_problem(value: Any) -> str | None:
    """Why `value` is not a valid layer name (None: it is valid)."""
    return _problem(value, _LAYER, LAYER_RULE, MAX_LENGTH)


def uuid_problem(value: Any) -> str | None:
    """Why `value` is not a catalogue UUID such as 05edf2bb-d103-49f1-a677-9e474138d84f."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        return (f"{shown(value)} is not a UUID (8-4-4-4-12 hexadecimal digits, "
                "e.g. 05edf2bb-d103-49f1-a677-9e474138d84f)")
    return None


def record_id_problem(value: Any) -> str | None:
    """Why `value` is not a record id of the store (a positive integer in decimal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _RECORD_ID.fullmatch(value):
        return f"{shown(value)} is not a record id (a positive integer)"
    return None
