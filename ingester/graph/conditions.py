"""Conditions (docs/graphs.md, "Conditions"), evaluated per tile: file conditions test the out-file's own tile
(docs/original.md, defect 41)."""

from __future__ import annotations

from collections.abc import Sequence

TILE_CONDITIONS = frozenset({
    "pass", "different_T0_T1", "equal_T0_T1", "different_T0_T2", "equal_T0_T2", "different_T1_T2", "equal_T1_T2",
})  # fmt: skip
FILE_CONDITIONS = frozenset({"file_exists", "file_not_exist"})
ERROR_CONDITIONS = frozenset({"on_failure", "on_fatal_failure"})
ALL_CONDITIONS = TILE_CONDITIONS | FILE_CONDITIONS | ERROR_CONDITIONS
SCENE_GRAPH_CONDITIONS = frozenset({"pass"}) | FILE_CONDITIONS | ERROR_CONDITIONS


def normalise(condition: str | None) -> str:
    """A missing or empty condition means `pass`."""
    return (condition or "").strip() or "pass"


def kind(condition: str) -> str:
    """`tile`, `file` or `error` (ValueError for an unknown name)."""
    if condition in TILE_CONDITIONS:
        return "tile"
    if condition in FILE_CONDITIONS:
        return "file"
    if condition in ERROR_CONDITIONS:
        return "error"
    raise ValueError(f"unknown condition {condition!r}")


def tile_condition(condition: str, scene_ids: Sequence[str]) -> bool:
    """A tile condition on the scene ids of (T0, T1, T2)."""
    t0, t1, t2 = scene_ids
    table = {
        "pass": True,
        "different_T0_T1": t0 != t1, "equal_T0_T1": t0 == t1,
        "different_T0_T2": t0 != t2, "equal_T0_T2": t0 == t2,
        "different_T1_T2": t1 != t2, "equal_T1_T2": t1 == t2,
    }  # fmt: skip
    if condition not in table:
        raise ValueError(f"{condition!r} is not a tile condition")
    return table[condition]


def file_condition(condition: str, exists: bool) -> bool:
    if condition == "file_exists":
        return exists
    if condition == "file_not_exist":
        return not exists
    raise ValueError(f"{condition!r} is not a file condition")


def error_condition(condition: str, failed: bool, fatal: bool) -> bool:
    if condition == "on_failure":
        return failed
    if condition == "on_fatal_failure":
        return failed and fatal
    raise ValueError(f"{condition!r} is not an error condition")
