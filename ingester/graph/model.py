"""The processing-graph model: steps, in-files, out-files, arguments, data formats
(docs/graphs.md, "Graph file format")."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

Engine = Literal["python", "cmd", "docker", "snap"]
Action = Literal["to_ignore", "to_create", "to_index", "to_delete"]

ENGINES: tuple[str, ...] = ("python", "cmd", "docker", "snap")
ACTIONS: tuple[str, ...] = ("to_ignore", "to_create", "to_index", "to_delete")
ARG_TYPES: tuple[str, ...] = ("fixed", "config", "tile", "in", "out")
TILE_KEYS: tuple[str, ...] = ("swath", "number", "scene", "date", "constellation", "cohdate")

# dformat dtype names (any case) → canonical numpy/STAC name (docs/graphs.md, "Data formats").
DTYPES: dict[str, str] = {
    "uint8": "uint8", "byte": "uint8", "u1": "uint8",
    "uint16": "uint16", "u2": "uint16",
    "uint32": "uint32", "u4": "uint32",
    "int16": "int16", "i2": "int16",
    "int32": "int32", "i4": "int32",
    "float32": "float32", "f4": "float32",
    "float64": "float64", "f8": "float64",
    "complex64": "complex64", "c4": "complex64",
}  # fmt: skip


def canonical_dtype(name: str) -> str:
    """`Int16` → `int16`; raises ValueError for an unknown name."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown data type {name!r} (expected one of {', '.join(sorted(set(DTYPES)))})") from None


@dataclasses.dataclass(frozen=True)
class DFormat:
    """Stored data format `dtype,nodata,min,max` (nodata may be NaN)."""

    dtype: str
    nodata: float
    min_value: float
    max_value: float

    @classmethod
    def parse(cls, text: str) -> DFormat:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"dformat {text!r} must have 4 comma-separated parts: dtype,nodata,min,max")
        dtype = canonical_dtype(parts[0])
        try:
            nodata, lo, hi = (float(p) for p in parts[1:])
        except ValueError:
            raise ValueError(f"dformat {text!r}: nodata, min and max must be numbers (or NaN)") from None
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ValueError(f"dformat {text!r}: min must be lower than max")
        return cls(dtype, nodata, lo, hi)

    def __str__(self) -> str:
        def num(v: float) -> str:
            return "NaN" if math.isnan(v) else (str(int(v)) if v == int(v) else repr(v))

        return f"{self.dtype},{num(self.nodata)},{num(self.min_value)},{num(self.max_value)}"


@dataclasses.dataclass(frozen=True)
class Arg:
    """A step argument (docs/graphs.md, "Arguments"). `value` is the literal, the config key or the tile key."""

    type: str
    value: str = ""
    tile_index: int = 0
    layer: str = ""
    extension: str = ""


@dataclasses.dataclass(frozen=True)
class Step:
    engine: str
    command: str
    args: dict[str, Arg]
    condition: str = "pass"
    index: int = 0  # position in processing_steps, for messages


@dataclasses.dataclass(frozen=True)
class InFile:
    layer: str
    extension: str
    condition: str = "pass"


@dataclasses.dataclass(frozen=True)
class OutFile:
    layer: str
    extension: str
    action: str = "to_ignore"
    condition: str = "pass"
    error_condition: str = ""
    dformat_out: Arg | None = None
    datatype: str = ""
    nodata: float = 0.0
    min_value: float = 0.0
    max_value: float = 0.0
    ext_min_value: float = 0.0
    ext_max_value: float = 0.0
    exponent: float = 1.0
    nbands: int = 1
    optional: bool | None = None  # None: optional when the condition is `file_exists` (the original's way)

    @property
    def may_be_missing(self) -> bool:
        """Whether the graph may end without producing this output (else a missing one is an error)."""
        return self.condition == "file_exists" if self.optional is None else self.optional

    def dformat(self) -> DFormat | None:
        """The format given by the explicit fields (before `dformat_out`), None without a datatype."""
        if not self.datatype:
            return None
        return DFormat(canonical_dtype(self.datatype), self.nodata, self.min_value, self.max_value)


@dataclasses.dataclass(frozen=True)
class AssetNeeds:
    """The STAC assets a graph reads from a scene fetched by the `stac-assets` provider (graph key
    `assets`): `keys` maps each name the graph knows (a band) to candidate asset keys, tried in order
    (an asset matches a candidate by its key, or by its file name ending in `_<candidate>`); `select`
    (a `fixed` or `config` argument: comma-separated names) picks the names needed, all by default;
    `always` lists groups of candidates of which one asset is always needed (metadata files)."""

    keys: tuple[tuple[str, tuple[str, ...]], ...]
    select: Arg | None = None
    always: tuple[tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class Graph:
    """A loaded, validated graph. `origin` names its file (for messages), `base_dir` resolves commands."""

    name: str
    origin: str
    config: dict[str, str]
    envs: tuple[str, ...]
    steps: tuple[Step, ...]
    in_files: tuple[tuple[InFile, ...], tuple[InFile, ...], tuple[InFile, ...]]
    out_files: tuple[tuple[OutFile, ...], ...]
    base_dir: str = ""
    builtin: bool = False
    assets: AssetNeeds | None = None
    resources: dict[str, float] = dataclasses.field(default_factory=dict)  # Dask worker resources it needs
