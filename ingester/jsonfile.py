"""Reading the JSON files a user gives (payloads, scenes/tiles files, graphs) with one clear error for
everything Python's parser can raise: bad syntax, nesting deeper than the interpreter's recursion
limit, an integer longer than Python converts (4,300 digits by default)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingester.errors import InputError


def parse_json(text: str, origin: str, error: type[InputError] = InputError) -> Any:
    """The decoded document; `error(<origin>: …)` (exit 2) for anything that is not usable JSON, a key
    given twice in one object included."""
    from ingester.jsontext import unique_pairs

    return _decode(lambda t: json.loads(t, object_pairs_hook=unique_pairs), text, origin, error)


def parse_json_forgiving(text: str, origin: str, error: type[InputError] = InputError) -> tuple[Any, list[str]]:
    """`parse_json` forgiving a trailing comma left by deleting a line (`jsontext.loads_forgiving`):
    the document and one note per comma ignored."""
    from ingester.jsontext import loads_forgiving

    return _decode(loads_forgiving, text, origin, error)


def _decode(loads: Callable[[str], Any], text: str, origin: str, error: type[InputError]) -> Any:
    from ingester.jsontext import DuplicateKeyError, describe_duplicate

    text = text.removeprefix(BOM)  # (a text given as such: the BOM some editors write is no error)
    try:
        return loads(text)
    except DuplicateKeyError as exc:
        raise error(f"{origin}: {describe_duplicate(exc, text)}") from None
    except json.JSONDecodeError as exc:
        from ingester.jsontext import describe

        raise error(f"{origin}: {describe(exc, text)}") from None
    except RecursionError:
        raise error(f"{origin}: invalid JSON: arrays or objects nested too deeply (the limit is about "
                    f"{sys.getrecursionlimit()} levels)") from None
    except ValueError as exc:  # json raises a plain ValueError for an integer too long to convert
        if "integer string conversion" in str(exc):
            raise error(f"{origin}: invalid JSON: a number has more than {sys.get_int_max_str_digits()} "
                        "digits") from None
        raise error(f"{origin}: invalid JSON: {exc}") from None


BOM = "\ufeff"


def read_text(path: str | Path, error: type[InputError] = InputError, origin: str | None = None) -> str:
    """A text file a user gives, as UTF-8 (a leading byte-order mark, which some editors write, is
    dropped); a missing or unreadable file, or one in another encoding, is `error` (exit 2) naming the
    line and column of the first byte that is not UTF-8."""
    origin = str(path) if origin is None else origin
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{origin}: file not found") from None
    except IsADirectoryError:
        raise error(f"{origin}: is a folder, not a file") from None
    except OSError as exc:
        raise error(f"{origin}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        raise error(f"{origin}: not UTF-8 text at line {line}, column {column} (byte 0x{data[exc.start]:02x}): "
                    "the file was saved in another encoding (Latin-1, Windows-1252?); save it as UTF-8") from None


def read_json(path: str | Path, error: type[InputError] = InputError, origin: str | None = None) -> Any:
    """Read and decode a JSON file; a missing, unreadable or invalid file is `error` (exit 2)."""
    origin = str(path) if origin is None else origin
    return parse_json(read_text(path, error, origin), origin, error)
