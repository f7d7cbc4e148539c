"""JSON files edited by hand: error messages that name the likely cause, and the one slip that is
forgiven (a trailing comma left by deleting the last item's line of a list or object)."""

from __future__ import annotations

import json
import re
from typing import Any

_CLOSERS = {"]": "list", "}": "object"}


def _before(text: str, pos: int) -> tuple[int, str]:
    """(index, char) of the last non-blank character before `pos` (-1, "" when none)."""
    i = pos - 1
    while i >= 0 and text[i] in " \t\r\n":
        i -= 1
    return i, text[i] if i >= 0 else ""


def _at(text: str, pos: int) -> str:
    match = re.compile(r"\s*").match(text, pos)
    end = match.end() if match else pos
    return text[end] if end < len(text) else ""


def likely_cause(exc: json.JSONDecodeError, text: str) -> str:
    """What a person most probably did to produce this error."""
    pos, msg = exc.pos, exc.msg
    if not text.strip():
        return "the file is empty"
    here, (_, previous) = _at(text, pos), _before(text, pos)
    if msg.startswith("Extra data"):
        return "more text after the end of the JSON document (two documents pasted?)"
    if previous == "," and here in _CLOSERS:
        return f"a trailing comma before '{here}' (JSON allows none)"
    if here == "" or (msg.startswith("Unterminated string") and '"' not in text[pos + 1:]):
        return "the file ends too early (truncated, or a closing bracket deleted?)"
    if here == "'":
        return "single quotes: JSON strings and keys take double quotes"
    if msg.startswith("Expecting ',' delimiter"):
        return "a missing comma between two items (a line joined or a comma deleted?)"
    if msg.startswith("Expecting property name"):
        return "a key without double quotes, or a comma too many"
    if msg.startswith("Expecting ':' delimiter"):
        return "a missing ':' between a key and its value"
    if msg.startswith("Unterminated string"):
        return "a string without its closing double quote"
    if msg.startswith("Invalid control character"):
        return "a line break or tab inside a string (write \\n or \\t)"
    if msg.startswith("Invalid \\escape"):
        return "a backslash in a string (write \\\\, or / in paths)"
    if msg.startswith("Expecting value"):
        return "a missing value, or a word that is not JSON (true, false, null and numbers are)"
    return "see the line and column"


def describe(exc: json.JSONDecodeError, text: str) -> str:
    """`invalid JSON at line L, column C: <what> (likely cause: <why>)`."""
    what = re.sub(r"\s+at$", "", exc.msg)  # ("Invalid control character '\n' at": the place is said already)
    return f"invalid JSON at line {exc.lineno}, column {exc.colno}: {what} (likely cause: {likely_cause(exc, text)})"


class DuplicateKeyError(ValueError):
    """A key given twice in one JSON object (json keeps the last one silently)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` refusing a repeated key: `{"retry_count": 1, "retry_count": 2}` is a mistake
    (which one was meant?), not the last one silently winning."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return out


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def duplicate_key_place(text: str, key: str) -> tuple[int, int, int] | None:
    """(line of the repeat, its column, line of the first) of the first key repeated within one object
    of `text` (valid JSON but for repeats) named `key`; None when not found."""
    stack: list[dict[str, int] | None] = []
    expect_key = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            match = _STRING.match(text, i)
            if match is None:
                return None
            if expect_key and stack and stack[-1] is not None:
                name = json.loads(match.group(0))
                if name in stack[-1] and name == key:
                    line = text.count("\n", 0, i) + 1
                    return line, i - text.rfind("\n", 0, i), text.count("\n", 0, stack[-1][name]) + 1
                stack[-1].setdefault(name, i)
            expect_key = False
            i = match.end()
            continue
        if c == "{":
            stack.append({})
            expect_key = True
        elif c == "[":
            stack.append(None)
        elif c in "]}":
            if stack:
                stack.pop()
        elif c == ",":
            expect_key = bool(stack) and stack[-1] is not None
        i += 1
    return None


def describe_duplicate(exc: DuplicateKeyError, text: str) -> str:
    place = duplicate_key_place(text, exc.key)
    where = f" at line {place[0]}, column {place[1]} (first at line {place[2]})" if place else ""
    return (f"duplicate key {json.dumps(exc.key, ensure_ascii=False)}{where}: an object gives it twice, "
            "so which value was meant is unclear; keep one")


def loads_forgiving(text: str) -> tuple[Any, list[str]]:
    """`json.loads`, forgiving a trailing comma that ends its line before a `]` or `}` that starts a
    later line (what deleting the last item's line of a one-item-per-line file leaves). Returns the
    document and one note per comma ignored; other errors raise JSONDecodeError unchanged."""
    notes: list[str] = []
    for _ in range(100):
        try:
            return json.loads(text, object_pairs_hook=unique_pairs), notes
        except json.JSONDecodeError as exc:
            comma, previous = _before(text, exc.pos)
            closer = _at(text, exc.pos)
            between = text[comma + 1:exc.pos]
            if previous != "," or closer not in _CLOSERS or "\n" not in between:
                raise  # (a forgiven comma became a blank: lines and columns are those of the file)
            line = text.count("\n", 0, comma) + 1
            closer_line = line + between.count("\n")
            notes.append(f"line {line}: trailing comma before the '{closer}' of line {closer_line} ignored (left "
                         "by deleting the last item's line?); remove it to silence this warning")
            text = text[:comma] + " " + text[comma + 1:]  # same length: line and column numbers stay right
    return json.loads(text, object_pairs_hook=unique_pairs), notes
