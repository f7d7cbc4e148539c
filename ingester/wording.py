"""Words in messages: `1 scene`, `2 scenes` (never `1 scenes`)."""

from __future__ import annotations

_IRREGULAR = {"was": "were", "is": "are", "has": "have", "this": "these", "it": "they"}


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 tile`, `3 tiles`; `words` for a plural that is not `word + s`."""
    return f"{count} {word if count == 1 else (words or _IRREGULAR.get(word) or word + 's')}"


def nouns(count: int, word: str, words: str | None = None) -> str:
    """The noun alone, singular or plural after `count` (`job(s)` written properly)."""
    return word if count == 1 else (words or _IRREGULAR.get(word) or word + "s")


def one_line(text: str | None) -> str:
    """A message fit for one cell of a tab-separated row: line breaks become ` / `, tabs a space
    (a tool's multi-line error would otherwise split the row in two)."""
    lines = [" ".join(line.split("\t")).strip() for line in (text or "").splitlines()]
    return " / ".join(line for line in lines if line)


def status_label(status: str, failed_jobs: int) -> str:
    """The AOI status as people read it: a DONE AOI names its FAILED jobs (DONE means nothing is left
    to run, not that everything succeeded; docs/workflow.md, "AOI status")."""
    if status == "DONE" and failed_jobs:
        return f"DONE, {plural(failed_jobs, 'job')} FAILED"
    return status
