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
    "int8": "int8", "i1": "int8",
    "uint16": "uint16", "u2": "uint16",
    "uint32": "uint32", "u4": "uint32",
    "int16": "int16", "i2": "int16",
    "int32": "int32", "i4": "int32",
    "float32": "float32", "f4": "float32",
    "float64": "float64", "f8": "float64",
    "complex64": "complex64", "c4": "complex64",
}  # fmt: skip
# The values each canonical type can hold: integer types (lowest, highest), float types the largest finite
# magnitude (complex64: its float32 parts).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
    "uint32": (0, 4294967295), "int32": (-2147483648, 2147483647),
}  # fmt: skip
FLOAT_MAX: dict[str, float] = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308,
                               "complex64": 3.4028234663852886e38}


def canonical_dtype(name: str) -> str:
    """`Int16` → `int16`; raises ValueError for an unknown name."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown data type {name!r} (expected one of {', '.join(sorted(set(DTYPES.values())))})") \
            from None


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def value_problem(dtype: str, value: float, nan_allowed: bool = False) -> str | None:
    """Why `value` cannot be stored in `dtype` (None: it can). NaN only where allowed and the type has it."""
    if math.isnan(value):
        if dtype in INTEGER_RANGES:
            return f"NaN is not a value of the integer type {dtype} (NaN no-data needs float32 or float64)"
        return None if nan_allowed else "must be a number, not NaN"
    if math.isinf(value):
        return "must be finite"
    if dtype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[dtype]
        if value != int(value):
            return f"{_number(value)} is not a whole number, as {dtype} values are"
        if not low <= value <= high:
            return f"{_number(value)} does not fit in {dtype} ({low} … {high})"
        return None
    if abs(value) > FLOAT_MAX[dtype]:
        return f"{_number(value)} does not fit in {dtype} (at most ±{FLOAT_MAX[dtype]:.8g})"
    return None


def nodata_json(value: float) -> float | str:
    """A no-data value in JSON output: NaN (which JSON lacks) as the string "NaN", as STAC does."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


@dataclasses.dataclass(frozen=True)
class DFormat:
    """Stored data format `dtype,nodata,min,max` (nodata may be NaN for float types). The one parser of
    every dformat the tool reads: `layers add --dformat`, a graph's `dformat_out` (fixed, or a config key
    that a payload's or scene's `graph_config` may set), a step's `<output>.format.json`."""

    dtype: str
    nodata: float
    min_value: float
    max_value: float

    @classmethod
    def parse(cls, text: str) -> DFormat:
        """Raise ValueError naming the part at fault: the dtype must be known, nodata/min/max numbers the
        dtype can hold (NaN no-data only for float types), min lower than max."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise ValueError(f"dformat {text!r} must have 4 comma-separated parts: dtype,nodata,min,max "
                             "(e.g. uint16,0,1,65535)")
        try:
            dtype = canonical_dtype(parts[0])
        except ValueError as exc:
            raise ValueError(f"dformat {text!r}: dtype: {exc}") from None
        values: list[float] = []
        for name, part in zip(("nodata", "min", "max"), parts[1:], strict=True):
            try:
                values.append(float(part))
            except ValueError:
                raise ValueError(f"dformat {text!r}: {name} {part!r} is not a number") from None
            problem = value_problem(dtype, values[-1], nan_allowed=name == "nodata")
            if problem:
                raise ValueError(f"dformat {text!r}: {name} {problem}")
        nodata, lo, hi = values
        if not lo < hi:
            raise ValueError(f"dformat {text!r}: min {_number(lo)} must be lower than max {_number(hi)}")
        return cls(dtype, nodata, lo, hi)

    def __str__(self) -> str:
        return f"{self.dtype},{_number(self.nodata)},{_number(self.min_value)},{_number(self.max_value)}"

    def same_as(self, other: DFormat) -> bool:
        """Equality where a NaN no-data equals a NaN no-data."""
        return str(self) == str(other)


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
