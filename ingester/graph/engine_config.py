"""The graph config keys that the engine itself reads (the other keys are only passed to steps as
`config` arguments), with the values each accepts.

A job's config is the graph's `config`, then the payload's `graph_config`, then the scene's
`data.graph_config` (each overriding the one before). Each of the three is checked when it is loaded,
so that `"step_timeout": "-1"` or `"nan"` is exit 2 naming the key, not a run whose every step "timed
out after -1 s" and is retried with backoff.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_STEP_TIMEOUT = 30 * 24 * 3600.0  # a month: more is a typo (a step that long needs no timeout at all)
MAX_PARALLELISM = 1024
_JAVA_MEMORY = re.compile(r"[1-9][0-9]{0,6}[kKmMgGtT]?")


def _step_timeout(value: str) -> str | None:
    try:
        seconds = float(value)
    except ValueError:
        return "must be a number of seconds"
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_STEP_TIMEOUT:
        return f"must be a number of seconds > 0 and ≤ {MAX_STEP_TIMEOUT:g} (30 days)"
    return None


def _parallelism(value: str) -> str | None:
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_PARALLELISM:
        return f"must be a whole number of threads from 1 to {MAX_PARALLELISM} (SNAP's gpt -q)"
    return None


def _java_memory(value: str) -> str | None:
    if not _JAVA_MEMORY.fullmatch(value.strip()):
        return "must be a Java heap size such as 4G, 8192M or 512m (gpt -J-Xmx)"
    return None


# key → check of a non-empty value (empty: the engine's default)
ENGINE_KEYS: dict[str, Callable[[str], str | None]] = {
    "step_timeout": _step_timeout,
    "snap_cpu_parallelism": _parallelism,
    "snap_memory": _java_memory,
}


def config_problem(key: str, value: Any) -> str | None:
    """What is wrong with one config value that the engine reads (None: fine or not an engine key)."""
    check = ENGINE_KEYS.get(key)
    if check is None:
        return None
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if not value.strip():
        return None
    problem = check(value.strip())
    return f"{value!r} {problem}" if problem else None


def check_config(config: Mapping[str, Any], fail: Callable[[str, str], Exception]) -> None:
    """Raise `fail(key, problem)` for the first engine key whose value is out of range."""
    for key, value in config.items():
        problem = config_problem(key, value)
        if problem is not None:
            raise fail(key, problem)
