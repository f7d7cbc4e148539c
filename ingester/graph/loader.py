"""Load and validate graph JSON files (docs/graphs.md, "Loading and validation"; docs/original.md, defects 40–46).

Every problem is reported at load time as a `GraphError` naming the graph file and the place
(`processing_steps[1].args.file-in`, `out_files[0][2].condition`, …). Graph names resolve to the
built-in library first (by name, or by a file name whose stem is a built-in: `library/graph/Pass.json`),
then to files relative to the given folders (the payload's folder).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ingester.errors import GraphError
from ingester.graph import conditions as cond
from ingester.graph.engine_config import check_config
from ingester.graph.model import (
    ACTIONS,
    ARG_TYPES,
    ENGINES,
    TILE_KEYS,
    Arg,
    AssetNeeds,
    DFormat,
    Graph,
    InFile,
    OutFile,
    Step,
    canonical_dtype,
    value_problem,
)
from ingester.ids import layer_problem, shown
from ingester.jsonfile import read_json
from ingester.payload import Payload

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
SNAP_DIR = LIBRARY_DIR / "snap"
TOP_KEYS = {"config", "envs", "processing_steps", "in_files", "out_files", "description", "assets"}


def builtin_names() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.json"))


class _Checker:
    def __init__(self, origin: str, scene_graph: bool):
        self.origin = origin
        self.scene_graph = scene_graph

    def fail(self, where: str, problem: str) -> GraphError:
        return GraphError(f"graph {self.origin}: {where}: {problem}" if where else f"graph {self.origin}: {problem}")

    def string(self, raw: dict, key: str, where: str, required: bool = True, default: str = "") -> str:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{where}.{key}", f"must be a string, got {json.dumps(value)}")
        return str(value)

    def number(self, raw: dict, key: str, where: str, default: float) -> float:
        """A number, or a string holding one (the original's JSON accepts both); null means the default."""
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool) and isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self.fail(f"{where}.{key}", f"must be a number, got {json.dumps(value)}")

    def condition(self, raw: dict, key: str, where: str, allowed: frozenset[str], place: str) -> str:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be a string, got {json.dumps(value)}")
        name = cond.normalise(value)
        if name not in cond.ALL_CONDITIONS:
            raise self.fail(f"{where}.{key}", f"unknown condition {name!r} (expected one of "
                                              f"{', '.join(sorted(cond.ALL_CONDITIONS))})")
        if name not in allowed:
            raise self.fail(f"{where}.{key}", f"condition {name!r} is not allowed on {place} "
                                              f"(allowed: {', '.join(sorted(allowed))})")
        if self.scene_graph and name not in cond.SCENE_GRAPH_CONDITIONS:
            raise self.fail(f"{where}.{key}", f"condition {name!r} compares T1/T2, which a scene graph does "
                                              "not have (only pass, file and error conditions)")
        return name

    def arg(self, raw: Any, where: str, out_only: bool = False) -> Arg:
        if not isinstance(raw, dict):
            raise self.fail(where, f"an argument must be an object with a 'type', got {json.dumps(raw)}")
        kind = raw.get("type")
        allowed = ("fixed", "config") if out_only else ARG_TYPES
        if kind not in allowed:
            raise self.fail(f"{where}.type", f"unknown argument type {json.dumps(kind)} (expected one of "
                                             f"{', '.join(allowed)})")
        if kind in ("fixed", "config"):
            value = self.string(raw, "value", where, required=True)
            if kind == "config" and not value:
                raise self.fail(f"{where}.value", "must name a config key")
            return Arg(kind, value)
        if kind == "tile":
            value = self.string(raw, "value", where)
            if value not in TILE_KEYS:
                raise self.fail(f"{where}.value",
                                f"unknown tile key {value!r} (expected one of {', '.join(TILE_KEYS)})")
            if self.scene_graph and value == "cohdate":
                raise self.fail(f"{where}.value", "'cohdate' needs T1/T2, which a scene graph does not have")
            return Arg(kind, value)
        layer = self.string(raw, "layer", where)
        extension = self.string(raw, "extension", where, required=False)
        if not layer:
            raise self.fail(f"{where}.layer", "must not be empty")
        if not (kind == "out" and layer == "*"):  # `*`: every out-file of the step (a pattern)
            self.layer(layer, f"{where}.layer")
        self.extension(extension, f"{where}.extension")
        tile_index = 0
        if kind == "in":
            tile_index = raw.get("tile_index", 0)
            if isinstance(tile_index, bool) or not isinstance(tile_index, int) or not 0 <= tile_index <= 2:
                raise self.fail(f"{where}.tile_index", f"must be 0, 1 or 2 (T0, T1, T2), got {json.dumps(tile_index)}")
            if self.scene_graph and tile_index:
                raise self.fail(f"{where}.tile_index", "a scene graph only has T0")
        return Arg(kind, "", tile_index, layer, extension)

    def step(self, raw: Any, i: int) -> Step:
        where = f"processing_steps[{i}]"
        if not isinstance(raw, dict):
            raise self.fail(where, "a step must be an object")
        engine = raw.get("engine")
        if engine not in ENGINES:
            raise self.fail(f"{where}.engine", f"unknown engine {json.dumps(engine)} (expected one of "
                                               f"{', '.join(ENGINES)})")
        command = self.string(raw, "command", where)
        if not command.strip():
            raise self.fail(f"{where}.command", "must not be empty")
        args_raw = raw.get("args") or {}
        if not isinstance(args_raw, dict):
            raise self.fail(f"{where}.args", "must be an object name → argument")
        args = {str(k): self.arg(v, f"{where}.args.{k}") for k, v in args_raw.items()}
        condition = self.condition(raw, "condition", where, cond.TILE_CONDITIONS, "a step")
        return Step(engine, command, args, condition, i)

    def layer(self, name: str, where: str) -> str:
        """A layer name: part of file names in the work folder and the storage (`ingester.ids`)."""
        problem = layer_problem(name)
        if problem is not None:
            raise self.fail(where, problem)
        return name

    def extension(self, ext: str, where: str) -> str:
        """A file extension (`tif`, `dim`, `SAFE`, `*` for any): no path separator, no '..'."""
        if ext and ext != "*" and layer_problem(ext) is not None:
            raise self.fail(where, f"{shown(ext)} is not a file extension (letters, digits, '.', '_', '-')")
        return ext

    def in_file(self, raw: Any, where: str) -> InFile:
        if not isinstance(raw, dict):
            raise self.fail(where, "an in-file must be an object")
        layer = self.layer(self.string(raw, "layer", where), f"{where}.layer")
        ext = self.extension(self.string(raw, "extension", where, required=False), f"{where}.extension")
        return InFile(layer, ext, self.condition(raw, "condition", where, cond.TILE_CONDITIONS, "an in-file"))

    def out_file(self, raw: Any, where: str) -> OutFile:
        if not isinstance(raw, dict):
            raise self.fail(where, "an out-file must be an object")
        layer = self.layer(self.string(raw, "layer", where), f"{where}.layer")
        ext = self.extension(self.string(raw, "extension", where, required=False), f"{where}.extension")
        action = raw.get("action") or "to_ignore"
        if action not in ACTIONS:
            raise self.fail(f"{where}.action", f"unknown action {json.dumps(action)} (expected one of "
                                               f"{', '.join(ACTIONS)})")
        condition = self.condition(raw, "condition", where, cond.ALL_CONDITIONS, "an out-file")
        error_condition = ""
        if raw.get("error_condition") not in (None, ""):
            error_condition = self.condition(raw, "error_condition", where, cond.ERROR_CONDITIONS,
                                             "error_condition")
        dformat_out = None
        if raw.get("dformat_out") is not None:
            dformat_out = self.arg(raw["dformat_out"], f"{where}.dformat_out", out_only=True)
            if dformat_out.type == "fixed":
                try:
                    DFormat.parse(dformat_out.value)
                except ValueError as exc:
                    raise self.fail(f"{where}.dformat_out", str(exc)) from None
        datatype = self.string(raw, "datatype", where, required=False)
        if datatype:
            try:
                datatype = canonical_dtype(datatype)
            except ValueError as exc:
                raise self.fail(f"{where}.datatype", str(exc)) from None
        nbands = raw.get("nbands", 1)
        if isinstance(nbands, bool) or not isinstance(nbands, int) or nbands < 1:
            raise self.fail(f"{where}.nbands", f"must be a positive integer, got {json.dumps(nbands)}")
        exponent = self.number(raw, "exponent", where, 1.0)
        if not exponent > 0 or math.isinf(exponent):
            raise self.fail(f"{where}.exponent", "must be a positive number")
        optional = raw.get("optional")
        if optional is not None:
            if not isinstance(optional, bool):
                raise self.fail(f"{where}.optional", f"must be true or false, got {json.dumps(optional)}")
            if action not in ("to_create", "to_index"):
                raise self.fail(f"{where}.optional", f"applies to outputs the graph stores (to_create, to_index), "
                                                     f"not to {action}")
            if cond.kind(condition) == "error":
                raise self.fail(f"{where}.optional", f"has no meaning for an output kept on failure "
                                                     f"(condition {condition})")
        out = OutFile(
            layer=layer, extension=ext, action=action, condition=condition, error_condition=error_condition,
            dformat_out=dformat_out, datatype=datatype,
            nodata=self.number(raw, "nodata", where, 0.0),
            min_value=self.number(raw, "min_value", where, 0.0),
            max_value=self.number(raw, "max_value", where, 0.0),
            ext_min_value=self.number(raw, "ext_min_value", where, 0.0),
            ext_max_value=self.number(raw, "ext_max_value", where, 0.0),
            exponent=exponent, nbands=nbands, optional=optional,
        )
        if datatype:  # the original's explicit format fields: values the type can hold
            for key in ("nodata", "min_value", "max_value"):
                problem = value_problem(datatype, getattr(out, key), nan_allowed=key == "nodata")
                if problem:
                    raise self.fail(f"{where}.{key}", f"{problem} (datatype {datatype})")
        if action == "to_index" and not out.ext_min_value < out.ext_max_value:
            raise self.fail(where, f"layer {layer!r} is indexed but ext_min_value ({out.ext_min_value:g}) is not "
                                   f"lower than ext_max_value ({out.ext_max_value:g})")
        if action == "to_index" and dformat_out is None and not datatype:
            raise self.fail(where, f"layer {layer!r} is indexed but has neither dformat_out nor datatype")
        return out

    def assets(self, raw: Any) -> AssetNeeds | None:
        """The `assets` declaration (STAC asset keys the graph reads), or None."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise self.fail("assets", "must be an object {\"keys\": {name: [asset key, …]}, \"select\": …, "
                                      "\"always\": [[asset key, …], …]}")
        unknown = sorted(set(raw) - {"keys", "select", "always"})
        if unknown:
            raise self.fail("assets", f"unknown key(s) {', '.join(unknown)} (expected keys, select, always)")
        keys_raw = raw.get("keys")
        if not isinstance(keys_raw, dict) or not keys_raw:
            raise self.fail("assets.keys", "must be a non-empty object: name → list of candidate asset keys")
        keys = []
        for name, candidates in keys_raw.items():
            if not isinstance(candidates, list) or not candidates or not all(
                    isinstance(c, str) and c for c in candidates):
                raise self.fail(f"assets.keys.{name}", "must be a non-empty list of asset keys")
            keys.append((str(name), tuple(candidates)))
        select = self.arg(raw["select"], "assets.select", out_only=True) if raw.get("select") is not None else None
        always_raw = raw.get("always") or []
        if not isinstance(always_raw, list) or not all(
                isinstance(group, list) and group and all(isinstance(c, str) and c for c in group)
                for group in always_raw):
            raise self.fail("assets.always", "must be a list of non-empty lists of asset keys")
        return AssetNeeds(tuple(keys), select, tuple(tuple(group) for group in always_raw))

    def file_lists(self, raw: Any, key: str, parse, minimum: int) -> list[tuple]:
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise self.fail(key, "must be a list of lists (T0, T1, T2)")
        if len(raw) > 3:
            raise self.fail(key, f"has {len(raw)} lists; at most 3 (T0, T1, T2)")
        if self.scene_graph and any(raw[1:]):
            raise self.fail(key, "a scene graph only has T0: lists for T1/T2 must be empty")
        lists: list[tuple] = []
        for i, items in enumerate(raw):
            if items is None:
                items = []
            if not isinstance(items, list):
                raise self.fail(f"{key}[{i}]", "must be a list")
            lists.append(tuple(parse(item, f"{key}[{i}][{j}]") for j, item in enumerate(items)))
        while len(lists) < max(minimum, 3 if key == "in_files" else 1):
            lists.append(())
        return lists


def parse_graph(doc: Any, origin: str, name: str = "", base_dir: str = "", scene_graph: bool = False,
                builtin: bool = False) -> Graph:
    """Validate a decoded graph document; `scene_graph` applies the downloader's restrictions."""
    check = _Checker(origin, scene_graph)
    if not isinstance(doc, dict):
        raise check.fail("", "must be a JSON object")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise check.fail("", f"unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(TOP_KEYS))})")
    config_raw = doc.get("config") or {}
    if not isinstance(config_raw, dict):
        raise check.fail("config", "must be an object of strings or null")
    config: dict[str, str] = {}
    for key, value in config_raw.items():
        if not isinstance(value, str):
            raise check.fail(f"config.{key}", f"must be a string, got {json.dumps(value)}")
        config[str(key)] = value
    check_config(config, lambda key, problem: check.fail(f"config.{key}", problem))
    envs_raw = doc.get("envs") or []
    if not isinstance(envs_raw, list) or not all(isinstance(e, str) and e and not e.startswith("=")
                                                 for e in envs_raw):
        raise check.fail("envs", "must be a list of 'KEY=VALUE' (or 'KEY' to pass the host's value)")
    steps_raw = doc.get("processing_steps") or []
    if not isinstance(steps_raw, list):
        raise check.fail("processing_steps", "must be a list of steps")
    steps = tuple(check.step(s, i) for i, s in enumerate(steps_raw))
    in_files = check.file_lists(doc.get("in_files"), "in_files", check.in_file, 3)
    out_files = check.file_lists(doc.get("out_files"), "out_files", check.out_file, 1)
    graph = Graph(
        name=name or Path(origin).stem, origin=origin, config=config, envs=tuple(envs_raw), steps=steps,
        in_files=(in_files[0], in_files[1], in_files[2]), out_files=tuple(out_files),
        base_dir=base_dir, builtin=builtin, assets=check.assets(doc.get("assets")),
    )
    for step in steps:
        resolve_command(graph, step)  # a missing script or SNAP graph fails the load
    check_config_formats(graph, graph.config, lambda where, problem: check.fail(where, problem))
    check_config_choices(graph, graph.config, lambda where, problem: check.fail(where, problem))
    return graph


def check_config_formats(graph: Graph, config: Mapping[str, str], fail: Callable[[str, str], Exception]) -> None:
    """Out-files whose `dformat_out` names a config key: the value found in `config` (the graph's
    defaults, or a payload's/scene's graph_config) must be a valid `dtype,nodata,min,max`."""
    for index, outs in enumerate(graph.out_files):
        for j, out in enumerate(outs):
            if out.dformat_out is None or out.dformat_out.type != "config" or out.dformat_out.value not in config:
                continue
            try:
                DFormat.parse(config[out.dformat_out.value])
            except ValueError as exc:
                raise fail(f"config.{out.dformat_out.value}", f"{exc} (read as out_files[{index}][{j}].dformat_out)") \
                    from None


# Config keys of the built-in graphs that name a list of fixed values (the SNAP graphs' polarisations).
BUILTIN_LISTS: dict[str, tuple[str, ...]] = {"polarisations": ("VV", "VH", "HH", "HV")}
WINDOW_KEY, WINDOW_MODES = "assets_window", ("auto", "off")  # read by the stac-assets provider


def config_choices(graph: Graph) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Config key → (the values it may take, whether it is a comma-separated list) for the keys whose
    values a graph reads from a fixed set: the `assets` selection (`bands` of ExtractS2Bands and
    ExtractLandsatBands: the band names the graph knows), `assets_window`, and the lists of fixed values
    the built-in SNAP graphs read (`polarisations`)."""
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    if graph.assets is not None:
        if graph.assets.select is not None and graph.assets.select.type == "config":
            out[graph.assets.select.value] = (tuple(name for name, _ in graph.assets.keys), True)
        out[WINDOW_KEY] = (WINDOW_MODES, False)
    if graph.builtin:
        read = {a.value for step in graph.steps for a in step.args.values() if a.type == "config"}
        out.update({key: (values, True) for key, values in BUILTIN_LISTS.items() if key in read})
    return out


def check_config_choices(graph: Graph, config: Mapping[str, str], fail: Callable[[str, str], Exception]) -> None:
    """The config keys `config_choices` knows must hold known values: `"bands": "B99"` for ExtractS2Bands
    is an input error naming the key and the allowed values, not a run whose every tile ends FATAL."""
    for key, (allowed, is_list) in config_choices(graph).items():
        if key not in config:
            continue
        value = str(config[key])
        if is_list:
            names = [n.strip() for n in value.split(",") if n.strip()]
            unknown = [n for n in names if n not in allowed]
            if not names:
                raise fail(f"config.{key}", f"names no value; allowed (comma-separated): {', '.join(allowed)}")
        else:
            unknown = [] if value.strip().lower() in allowed else [value]
        if unknown:
            raise fail(f"config.{key}", f"{', '.join(repr(u) for u in unknown)} unknown; allowed"
                                        f"{' (comma-separated)' if is_list else ''}: {', '.join(allowed)}")


def resolve_command(graph: Graph, step: Step) -> str:
    """The script / SNAP graph file of a step (library first, then beside the graph); cmd and docker as given."""
    if step.engine not in ("python", "snap"):
        return step.command
    command = Path(step.command)
    library = SCRIPTS_DIR if step.engine == "python" else SNAP_DIR
    candidates = [library / command.name] if command.parent.name in ("", "python", "snap", "scripts") else []
    if command.is_absolute():
        candidates = [command]
    elif graph.base_dir:
        candidates.append(Path(graph.base_dir) / command)
    for path in candidates:
        if path.is_file():
            return str(path)
    raise GraphError(f"graph {graph.origin}: processing_steps[{step.index}].command: {step.engine} file "
                     f"{step.command!r} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


@functools.lru_cache(maxsize=64)
def _load_file(path: str, mtime: float, name: str, scene_graph: bool, builtin: bool) -> Graph:
    doc = read_json(path, GraphError, origin=f"graph {path}")
    return parse_graph(doc, path, name, str(Path(path).parent), scene_graph, builtin)


def find_graph(name: str, graph_dirs: Sequence[str] = ()) -> tuple[Path, bool]:
    """(file, is built-in) for a graph name: the library first, then the given folders."""
    name = name.strip()
    if not name:
        raise GraphError("graph name is empty")
    stem = Path(name).name
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    builtin = LIBRARY_DIR / f"{stem}.json"
    if builtin.is_file() and (name == stem or name.endswith(".json")):
        return builtin, True
    path = _user_file(name, graph_dirs)
    if path is not None:
        return path, False
    looked = ", ".join(str(d) for d in graph_dirs) or "(no folder)"
    raise GraphError(f"graph {name!r} not found: not a built-in graph ({', '.join(builtin_names())}) "
                     f"nor a file in {looked}")


def _user_file(name: str, graph_dirs: Sequence[str]) -> Path | None:
    path = Path(name).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    for folder in graph_dirs:
        candidate = Path(folder) / path
        if candidate.is_file():
            return candidate.resolve()
    return None


def load_graph(name: str, graph_dirs: Sequence[str] = (), scene_graph: bool = False) -> Graph:
    """Resolve and load a graph, validated for its use (tile graph, or scene graph with `scene_graph`)."""
    path, builtin = find_graph(name, graph_dirs)
    return _load_file(str(path), path.stat().st_mtime, path.stem, scene_graph, builtin)


def check_graphs(origin: str, scene_graph_name: str, tile_graph_name: str, graph_dirs: Sequence[str],
                 fields: tuple[str, str] = ("scene_graph_name", "tile_graph_name"),
                 config: Mapping[str, str] | None = None, config_field: str = "graph_config") -> None:
    """Load a payload's (or a file's) scene and tile graphs up front, so that a misspelt graph name is an
    input error (exit 2) before anything is searched, written or downloaded. Empty names are skipped;
    `fields` names where each name was read, for the message. `config` (the payload's or scene's
    graph_config, read from `config_field`) must give valid data formats to the graphs that read one."""
    for field, name, scene in ((fields[0], scene_graph_name, True), (fields[1], tile_graph_name, False)):
        if not name.strip():
            continue
        try:
            graph = load_graph(name, graph_dirs, scene_graph=scene)
        except GraphError as exc:
            raise GraphError(f"{origin}: field '{field}': {exc}") from None
        if config:
            def fail(where: str, problem: str, name: str = name) -> GraphError:
                return GraphError(f"{origin}: field '{config_field}.{where.removeprefix('config.')}': {problem} "
                                  f"in graph {name!r}")

            check_config_formats(graph, config, fail)
            check_config_choices(graph, config, fail)


def check_payload_graphs(payload: Payload) -> None:
    """`check_graphs` for a payload; relative graph files are looked up in the payload's folder."""
    check_graphs(payload.path, payload.scene_graph_name, payload.tile_graph_name, (str(Path(payload.path).parent),),
                 config=payload.graph_config)


def indexed_formats(graph: Graph, config: Mapping[str, str] | None = None) -> dict[str, DFormat]:
    """Layer → the data format a graph indexes it in (`dformat_out`, fixed or a config key that the
    payload's graph_config may override, else the explicit datatype fields). Layers whose format
    cannot be resolved are left out (the run reports them)."""
    values = {**graph.config, **dict(config or {})}
    out: dict[str, DFormat] = {}
    for outs in graph.out_files:
        for item in outs:
            if item.action != "to_index" or item.layer in out:
                continue
            fmt: DFormat | None
            if item.dformat_out is None:
                fmt = item.dformat()
                try:  # the original's fields may leave min = max = 0: no usable format then
                    fmt = DFormat.parse(str(fmt)) if fmt is not None else None
                except ValueError:
                    fmt = None
            else:
                text = item.dformat_out.value if item.dformat_out.type == "fixed" else values.get(
                    item.dformat_out.value)
                try:
                    fmt = DFormat.parse(text) if text else None
                except ValueError:
                    fmt = None
            if fmt is not None:
                out[item.layer] = fmt
    return out


def payload_layer_formats(payload: Payload, tile_graph_names: Sequence[str] = ()) -> dict[str, str]:
    """Payload layer → `dtype,nodata,min,max` its tile graph(s) index it in: the payload's tile graph,
    then the other tile graphs named (by a tiles file). A layer two graphs index differently is an
    input error (a variable has one format)."""
    graph_dirs = (str(Path(payload.path).parent),) if payload.path else ()
    names = [n for n in dict.fromkeys([payload.tile_graph_name, *tile_graph_names]) if n and n.strip()]
    found: dict[str, tuple[str, str]] = {}
    for name in names:
        graph = load_graph(name, graph_dirs)
        for layer, fmt in indexed_formats(graph, payload.graph_config).items():
            if layer not in payload.layers:
                continue
            if layer in found and found[layer][0] != str(fmt):
                raise GraphError(f"{payload.path}: layer {layer!r} is indexed as {found[layer][0]} by graph "
                                 f"{found[layer][1]} but as {fmt} by graph {name}: a layer has one data format")
            found.setdefault(layer, (str(fmt), name))
    return {layer: fmt for layer, (fmt, _) in found.items()}
