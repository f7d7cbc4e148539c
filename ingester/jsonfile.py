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
    """The decoded document; `error(<origin>: …)` (exit 2) for anything that is not usable JSON."""
    return _decode(json.loads, text, origin, error)


def parse_json_forgiving(text: str, origin: str, error: type[InputError] = InputError) -> tuple[Any, list[str]]:
    """`parse_json` forgiving a trailing comma left by deleting a line (`jsontext.loads_forgiving`):
    the document and one note per comma ignored."""
    from ingester.jsontext import loads_forgiving

    return _decode(loads_forgiving, text, origin, error)


def _decode(loads: Callable[[str], Any], text: str, origin: str, error: type[InputError]) -> Any:
    try:
        return loads(text)
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


def read_json(path: str | Path, error: type[InputError] = InputError, origin: str | None = None) -> Any:
    """Read and decode a JSON file; a missing, unreadable or invalid file is `error` (exit 2)."""
    origin = str(path) if origin is None else origin
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{origin}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{origin}: cannot read ({exc})") from None
    return parse_json(text, origin, error)
