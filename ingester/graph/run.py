"""Running a graph on (T0, T1, T2) in a work folder: import inputs, run steps, choose the out-files
(docs/graphs.md, "Execution model", "Which out-files are kept": per-tile file conditions, formats always resolved)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ingester.errors import ProcessingError, StorageError
from ingester.graph import conditions as cond
from ingester.graph import engines, files
from ingester.graph.engine_config import config_problem
from ingester.graph.loader import resolve_command
from ingester.graph.model import Arg, DFormat, Graph, OutFile
from ingester.naming import constellation_of
from ingester.storage import StorageOptions, layer_file_name, tile_prefix

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CONSTELLATION_NAMES = {"sentinel1": "Sentinel1", "sentinel2": "Sentinel2", "phr": "PHR", "spot": "SPOT",
                        "landsat89": "Landsat89"}


@dataclasses.dataclass(frozen=True)
class TileCtx:
    """What a graph needs to know about one of T0, T1, T2."""

    scene_id: str
    tile_id: str
    date: datetime
    prefix: str  # <storage>/<aoi>/<scene>/tiles/<tile>
    swath: str = ""
    number: int = 0

    def file_name(self, layer: str, extension: str) -> str:
        return layer_file_name(layer, extension, self.scene_id, self.tile_id, self.date)


def tile_ctx(storage_uri: str, aoi: str, scene_id: str, tile_id: str, date: datetime, swath: str = "",
             number: int = 0) -> TileCtx:
    return TileCtx(scene_id, tile_id, date, tile_prefix(storage_uri, aoi, scene_id, tile_id), swath, number)


def snap_date(date: datetime) -> str:
    """SNAP's `02Jan2006` form, independent of the locale."""
    return f"{date.day:02d}{_MONTHS[date.month - 1]}{date.year}"


@dataclasses.dataclass(frozen=True)
class KeptFile:
    """An out-file selected for its action."""

    tile_index: int
    out: OutFile
    tile: TileCtx
    path: Path
    dformat: DFormat | None


@dataclasses.dataclass
class GraphRun:
    failed: bool = False
    outcome: str = ""  # a failed run's outcome: error, fatal or temporary (ingester.failures)
    message: str = ""
    kept: list[KeptFile] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)  # declared outputs not produced (an error)
    optional_missing: list[str] = dataclasses.field(default_factory=list)  # optional ones not produced


def _label(index: int, out: OutFile) -> str:
    """An out-file in messages: its layer, with its tile when not T0."""
    return out.layer if index == 0 else f"{out.layer} (T{index})"


class Runner:
    """One graph on one tile triple, in one work folder, logging to one file."""

    def __init__(self, graph: Graph, tiles: Sequence[TileCtx], workdir: Path, log_path: Path,
                 config_overrides: Mapping[str, str] | None = None, step_timeout: float = 21600.0,
                 gpt: str = "", docker: str = "docker", step_record: Path | None = None,
                 storage: StorageOptions | None = None):
        if len(tiles) != 3:
            raise ValueError("a graph runs on exactly three tiles (T0, T1, T2)")
        self.graph = graph
        self.tiles = list(tiles)
        self.workdir = Path(workdir).resolve()  # scripts get it as an argument and run inside it
        self.log_path = Path(log_path)
        self.config = {**graph.config, **dict(config_overrides or {}), "workdir": str(self.workdir)}
        self.gpt = gpt
        self.docker = docker
        self.step_record = step_record  # the running step's pid and start time (engines module doc)
        self.storage = storage  # how inputs are read from storage (None: from INGESTER_S3_*)
        raw_timeout = self.config.get("step_timeout", "")
        problem = config_problem("step_timeout", raw_timeout)  # checked at load; a store from before may differ
        if problem is not None:
            raise ProcessingError(f"graph {graph.origin}: config step_timeout {problem}")
        self.timeout = float(raw_timeout) if raw_timeout.strip() else float(step_timeout)

    # --- values -----------------------------------------------------------------------------
    @property
    def scene_ids(self) -> list[str]:
        return [t.scene_id for t in self.tiles]

    def config_value(self, key: str, where: str) -> str:
        if key not in self.config:
            raise ProcessingError(f"graph {self.graph.origin}: {where}: key '{key}' not found in config")
        return self.config[key]

    def tile_value(self, key: str) -> str:
        t0, t1, t2 = self.tiles
        if key == "swath":
            return t0.swath
        if key == "number":
            return str(t0.number)
        if key == "scene":
            return t0.scene_id
        if key == "date":
            return snap_date(t0.date)
        if key == "constellation":
            return _CONSTELLATION_NAMES.get(constellation_of(t0.scene_id) or "", "Unknown")
        if key == "cohdate":
            return snap_date(t0.date if t1.scene_id == t2.scene_id else t2.date)
        raise ProcessingError(f"unknown tile key {key!r}")

    def arg_value(self, arg: Arg, where: str) -> str:
        if arg.type == "fixed":
            return arg.value
        if arg.type == "config":
            return self.config_value(arg.value, where)
        if arg.type == "tile":
            return self.tile_value(arg.value)
        if arg.type == "in":
            return self.tiles[arg.tile_index].file_name(arg.layer, arg.extension)
        if arg.type == "out":
            return self.tiles[0].file_name(arg.layer, arg.extension)
        raise ProcessingError(f"graph {self.graph.origin}: {where}: unknown argument type {arg.type!r}")

    # --- phases -----------------------------------------------------------------------------
    def log(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def import_inputs(self) -> None:
        """Fetch the in-files of T0/T1/T2 whose tile condition holds (each file name once)."""
        seen: set[str] = set()
        for index, in_files in enumerate(self.graph.in_files):
            for in_file in in_files:
                if not cond.tile_condition(in_file.condition, self.scene_ids):
                    continue
                tile = self.tiles[index]
                name = tile.file_name(in_file.layer, in_file.extension)
                if name in seen:
                    continue
                seen.add(name)
                uri = files.stored_uri(tile.prefix, name, in_file.extension)
                self.log(f"[ingester] import T{index} {in_file.layer}: {uri}")
                try:
                    files.import_input(uri, in_file.extension, self.workdir, name, self.storage)
                except FileNotFoundError:
                    raise ProcessingError(f"input {in_file.layer!r} of T{index} ({tile.tile_id} of {tile.scene_id}) "
                                          f"not found in storage: {uri}") from None
                except (OSError, StorageError) as exc:
                    raise ProcessingError(f"cannot import {uri}: {exc}", "temporary") from None

    def run_steps(self, env: Mapping[str, str] | None = None) -> None:
        for step in self.graph.steps:
            label = f"step {step.index} ({step.engine} {Path(step.command).name})"
            if not cond.tile_condition(step.condition, self.scene_ids):
                self.log(f"[ingester] {label} skipped: condition {step.condition} is false")
                continue
            args = {name: self.arg_value(arg, f"processing_steps[{step.index}].args.{name}")
                    for name, arg in step.args.items()}
            command = resolve_command(self.graph, step)
            inv = engines.Invocation(
                engine=step.engine, command=command, args=args, workdir=self.workdir, timeout=self.timeout,
                envs=self.graph.envs, snap_parallelism=self.config.get("snap_cpu_parallelism", "1") or "1",
                snap_memory=self.config.get("snap_memory", "4G") or "4G", label=label, record=self.step_record)
            engines.run_step(inv, self.log_path, gpt=self.gpt, docker=self.docker, env=env)

    def resolve_dformat(self, out: OutFile, where: str) -> DFormat | None:
        if out.dformat_out is None:
            return out.dformat()
        text = out.dformat_out.value if out.dformat_out.type == "fixed" else \
            self.config_value(out.dformat_out.value, f"{where}.dformat_out")
        try:
            return DFormat.parse(text)
        except ValueError as exc:
            raise ProcessingError(f"graph {self.graph.origin}: {where}.dformat_out: {exc}") from None

    def select_outputs(self, failed: bool, fatal: bool, retriable: bool) -> list[KeptFile]:
        """The out-files to act on after success or failure, each with its resolved format
        (docs/graphs.md, "Which out-files are kept")."""
        if failed and not retriable:
            fatal = True
        kept: list[KeptFile] = []
        for index, outs in enumerate(self.graph.out_files):
            tile = self.tiles[index]
            for j, out in enumerate(outs):
                where = f"out_files[{index}][{j}]"
                path = self.workdir / tile.file_name(out.layer, out.extension)
                if not self._keep(out, path, failed, fatal):
                    continue
                kept.append(KeptFile(index, out, tile, path, self.resolve_dformat(out, where)))
        return kept

    def _condition(self, name: str, path: Path, failed: bool, fatal: bool) -> bool:
        kind = cond.kind(name)
        if kind == "tile":
            return cond.tile_condition(name, self.scene_ids)
        if kind == "file":
            return cond.file_condition(name, path.exists())
        return cond.error_condition(name, failed, fatal)

    def _keep(self, out: OutFile, path: Path, failed: bool, fatal: bool) -> bool:
        if not failed:
            return cond.kind(out.condition) != "error" and self._condition(out.condition, path, False, False)
        if out.error_condition and not cond.error_condition(out.error_condition, failed, fatal):
            return False
        if cond.kind(out.condition) == "error":
            return cond.error_condition(out.condition, failed, fatal)
        return bool(out.error_condition) and self._condition(out.condition, path, failed, fatal)

    def missing_outputs(self, tile_indexes: Sequence[int] = (0, 1, 2),
                        indexed_layers: Collection[str] = ()) -> tuple[list[str], list[str]]:
        """(required, optional) declared outputs to store (to_create/to_index) that the steps did not
        write: those whose tile condition holds, and those under `file_exists`. With `indexed_layers`
        (the payload's layers), a `to_index` output of another layer is not required: it would be
        stored, not indexed (a graph config may pick a subset, e.g. ExtractS2Bands' `bands`)."""
        required: list[str] = []
        optional: list[str] = []
        for index, outs in enumerate(self.graph.out_files):
            if index not in tile_indexes:
                continue
            tile = self.tiles[index]
            for out in outs:
                if out.action not in ("to_create", "to_index") or cond.kind(out.condition) == "error":
                    continue
                if cond.kind(out.condition) == "tile" and not cond.tile_condition(out.condition, self.scene_ids):
                    continue
                path = self.workdir / tile.file_name(out.layer, out.extension)
                if path.exists() or (out.extension == "*" and path.parent.exists()):
                    continue
                unwanted = out.action == "to_index" and indexed_layers and out.layer not in indexed_layers
                (optional if out.may_be_missing or unwanted else required).append(_label(index, out))
        return required, optional

    def run(self, retriable: bool, import_inputs: bool = True, env: Mapping[str, str] | None = None,
            tile_indexes: Sequence[int] = (0, 1, 2), indexed_layers: Collection[str] = ()) -> GraphRun:
        """Import, run the steps, check the declared outputs, select the out-files. Step failures
        and missing outputs are returned, not raised."""
        result = GraphRun()
        try:
            if import_inputs:
                self.import_inputs()
            self.run_steps(env)
            result.missing, result.optional_missing = self.missing_outputs(tile_indexes, indexed_layers)
            if result.optional_missing:
                self.log(f"[ingester] optional output(s) not produced: {', '.join(result.optional_missing)}")
            if result.missing:
                raise ProcessingError(
                    f"graph {self.graph.name}: {len(result.missing)} declared output(s) not produced: "
                    f"{', '.join(result.missing)} (see the job log; a graph marks an output that may be "
                    "absent with \"optional\": true)")
        except ProcessingError as exc:
            result.failed, result.outcome, result.message = True, exc.outcome, str(exc)
            self.log(f"[ingester] graph failed (outcome {exc.outcome}): {exc}")
        result.kept = self.select_outputs(result.failed, result.outcome == "fatal", retriable)
        return result


FORMAT_SUFFIX = ".format.json"


def format_override(path: Path) -> dict[str, float | str] | None:
    """What a step wrote beside an output, `<file>.format.json`: {"dformat": "dtype,nodata,min,max",
    "ext_min_value": …, "ext_max_value": …} for values known only from the product (e.g. the scale and
    offset of a Landsat MTL file); they replace the graph's for this file. None when absent."""
    import json
    import math

    side = path.with_name(path.name + FORMAT_SUFFIX)
    if not side.is_file():
        return None
    where = f"{side.name} (written by the graph for {path.name})"
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
        fmt = DFormat.parse(str(raw["dformat"])) if raw.get("dformat") is not None else None
        low, high = float(raw["ext_min_value"]), float(raw["ext_max_value"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProcessingError(f"{where}: not a valid format ({type(exc).__name__}: {exc})") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ProcessingError(f"{where}: ext_min_value {low!r} must be finite and lower than ext_max_value {high!r}")
    out: dict[str, float | str] = {"real_min": low, "real_max": high}
    if fmt is not None:
        out.update(dtype=fmt.dtype, nodata=fmt.nodata, min_value=fmt.min_value, max_value=fmt.max_value)
    return out


def indexed_fields(kept: KeptFile) -> dict[str, Any]:
    """IndexedOutput fields of an out-file: bands, stored format, real range, exponent (a
    `<file>.format.json` written by the graph overrides the format and the real range)."""
    fmt = kept.dformat
    if fmt is None:
        raise ProcessingError(f"out-file {kept.out.layer!r} is indexed without a data format")
    fields: dict[str, float | str | tuple[int, ...]] = {
        "bands": tuple(range(1, kept.out.nbands + 1)), "dtype": fmt.dtype,
        "nodata": fmt.nodata, "min_value": fmt.min_value, "max_value": fmt.max_value,
        "real_min": kept.out.ext_min_value, "real_max": kept.out.ext_max_value, "exponent": kept.out.exponent,
    }
    override = format_override(kept.path)
    if override:
        fields.update(override)
    return fields


def python_env() -> dict[str, str]:
    """The environment of graph steps: ours without credentials (`engines.step_environment`: a graph
    step has no business with the catalogue, download or cloud passwords), GDAL writing no .aux.xml
    side files."""
    return engines.step_environment()
