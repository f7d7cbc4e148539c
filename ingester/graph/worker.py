"""Processing workers: the tile job (`run_tile_job`) and the scene graph of a download (`run_scene_graph`).

Pure functions of a job description: they never open the store. The coordinator writes the outcome,
turns `outputs` into datasets and sets the record's processingDate (docs/graphs.md, "Execution model", "Actions").
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

from ingester import storage
from ingester.config import Settings
from ingester.errors import GraphError, Outcome, ProcessingError, StorageError
from ingester.failures import failure_result
from ingester.graph import files
from ingester.graph.engines import step_record_path
from ingester.graph.loader import load_graph
from ingester.graph.run import GraphRun, KeptFile, Runner, TileCtx, indexed_fields, python_env, tile_ctx
from ingester.jobs import IndexedOutput, JobResult, SceneJob, TileJob
from ingester.scenes import Scene, Tile


def log_path_for(workdir: str | Path) -> Path:
    """The job's log lives beside its work folder (which is always deleted): `<parent>/logs/<name>.log`."""
    wd = Path(workdir)
    return wd.parent / "logs" / f"{wd.name}.log"


def _ctx(job_storage: str, aoi: str, scene: Scene, tile: Tile) -> TileCtx:
    return tile_ctx(job_storage, aoi, scene.source_id, tile.source_id, scene.date, tile.swath_id, tile.tile_nr)


def _graph_of(job: TileJob) -> str:
    """The tile graph (the payload's tile_graph_name, carried by each tile); never the scene graph."""
    if not job.tile.graph_name.strip():
        raise GraphError(f"tile {job.tile.source_id} of {job.scene.source_id} has no tile graph (graph_name is empty)")
    return job.tile.graph_name


def apply_actions(kept: list[KeptFile], run_failed: bool, layers: dict, log,
                  options: storage.StorageOptions | None = None) -> tuple[list[IndexedOutput], list[str]]:
    """Upload to_create/to_index files, then delete to_delete ones; return (indexed outputs, notes)."""
    outputs: list[IndexedOutput] = []
    notes: list[str] = []
    deletes: list[KeptFile] = []
    for item in kept:
        action = item.out.action
        if action == "to_ignore":
            continue
        if action == "to_delete":
            deletes.append(item)
            continue
        if not item.path.exists() and not (item.out.extension == "*" and item.path.parent.exists()):
            if run_failed:
                notes.append(f"{item.path.name} not produced (graph failed): not stored")
                continue
            if item.out.may_be_missing or (action == "to_index" and layers and item.out.layer not in layers):
                continue  # noted by the run
            raise ProcessingError(f"out-file {item.out.layer!r} of T{item.tile_index} ({item.path.name}) was not "
                                  "produced by the graph")
        stored: dict = {}
        try:
            uri = files.save(item.path, item.out.extension, item.tile.prefix, stored, options)
        except (OSError, StorageError) as exc:
            raise ProcessingError(f"cannot store {item.path.name} in {item.tile.prefix}: {exc}", "temporary") from None
        uri = _absolute(uri)
        log(f"[ingester] stored T{item.tile_index} {item.out.layer}: {uri}")
        if action != "to_index":
            continue
        if layers and item.out.layer not in layers:
            notes.append(f"layer {item.out.layer} is not among the payload's layers: stored, not indexed")
            log(f"[ingester] {notes[-1]}")
            continue
        outputs.append(IndexedOutput(layer=item.out.layer, uri=uri, tile_source_id=item.tile.tile_id,
                                     extra={"scene_id": item.tile.scene_id, "tile_index": item.tile_index,
                                            "extension": item.out.extension, **_raster_info(item.path),
                                            **({"stored": stored} if stored else {})},
                                     **indexed_fields(item)))
    for item in deletes:
        uri = files.stored_uri(item.tile.prefix, item.path.name, item.out.extension)
        try:
            removed = files.delete(uri, options)
        except (OSError, StorageError) as exc:
            raise ProcessingError(f"cannot delete {uri}: {exc}", "temporary") from None
        log(f"[ingester] deleted T{item.tile_index} {item.out.layer}: {uri}" + ("" if removed else " (not found)"))
    return outputs, notes


def _absolute(uri: str) -> str:
    """Indexed URIs must be readable from anywhere: a relative local path becomes absolute."""
    return uri if "://" in uri or os.path.isabs(uri) else os.path.abspath(uri)


def _raster_info(path: Path) -> dict:
    """Grid of a raster output (for STAC Items): CRS code, shape, transform, WGS84 bounds. Empty if not a raster."""
    if path.suffix.lower() not in (".tif", ".tiff", ".jp2", ".img"):
        return {}
    try:
        import rasterio
        from rasterio.warp import transform_bounds

        with rasterio.open(path) as ds:
            info: dict = {"shape": [ds.height, ds.width], "transform": list(ds.transform)[:6]}
            if ds.crs:
                epsg = ds.crs.to_epsg()
                info["proj_code"] = f"EPSG:{epsg}" if epsg else ds.crs.to_string()
                info["bbox"] = list(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))
            return info
    except Exception:  # noqa: BLE001 - a graph may write non-raster .tif-named files; STAC falls back on the tile
        return {}


def _result(run: GraphRun, outputs: list[IndexedOutput], notes: list[str], log_path: Path) -> JobResult:
    details: dict = {"notes": notes} if notes else {}
    if run.missing:
        details["missing_outputs"] = list(run.missing)
    if run.optional_missing:
        details["optional_missing"] = list(run.optional_missing)
        if not run.failed:
            details.setdefault("notes", []).append(
                f"optional output(s) not produced: {', '.join(run.optional_missing)}")
    if run.failed:
        outcome: Outcome = "fatal" if run.outcome == "fatal" else "temporary" if run.outcome == "temporary" else "error"
        return JobResult(outcome, run.message, tuple(outputs), str(log_path), details)
    return JobResult("done", f"{len(outputs)} output(s) indexed" if outputs else "", tuple(outputs), str(log_path),
                     details)


def _error(exc: BaseException, log_path: Path) -> JobResult:
    """A job's failure as its outcome (ingester.failures: the same words as a scene job's)."""
    return failure_result(exc, str(log_path))


def _log_to(path: Path):
    def log(text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    return log


def run_tile_job(job: TileJob, settings: Settings) -> JobResult:
    """Run the tile graph on (T0, T1, T2) = (tile, previous or tile, reference or tile)."""
    workdir = Path(job.workdir)
    log_path = log_path_for(workdir)
    log = _log_to(log_path)
    try:
        options = storage.StorageOptions.of(settings)
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"[ingester] tile job {job.job_id} attempt {job.attempt}: {job.tile.source_id} of {job.scene.source_id}")
        graph = load_graph(_graph_of(job), job.graph_dirs)
        t0 = _ctx(job.storage_uri, job.aoi, job.scene, job.tile)
        t1 = _ctx(job.storage_uri, job.aoi, job.previous_scene, job.previous) \
            if job.previous is not None and job.previous_scene is not None else t0
        t2 = _ctx(job.storage_uri, job.aoi, job.reference_scene, job.reference) \
            if job.reference is not None and job.reference_scene is not None else t0
        overrides = {**job.scene.graph_config, **job.graph_config}
        runner = Runner(graph, [t0, t1, t2], workdir, log_path, overrides, settings.step_timeout,
                        settings.snap_gpt, settings.docker, step_record_path(workdir), storage=options)
        retriable = job.tile.is_retriable or job.scene.is_retriable
        run = runner.run(retriable=retriable, env=python_env(), indexed_layers=tuple(job.layers))
        outputs, notes = apply_actions(run.kept, run.failed, dict(job.layers), log, options)
        return _result(run, outputs, notes, log_path)
    except Exception as exc:  # noqa: BLE001 - a worker reports, never raises
        log(f"[ingester] job error: {exc}\n{traceback.format_exc()}")
        return _error(exc, log_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_scene_graph(job: SceneJob, product_path: Path, settings: Settings) -> JobResult:
    """Run the scene graph on every tile of the scene (T0 only) in the download's work folder, storing
    its `to_create` outputs. The work folder belongs to the download job, which deletes it."""
    workdir = Path(product_path).parent if Path(product_path).parent != Path("") else Path(job.workdir)
    log_path = log_path_for(job.workdir)
    log = _log_to(log_path)
    try:
        options = storage.StorageOptions.of(settings)
        graph = load_graph(job.scene.graph_name, job.graph_dirs, scene_graph=True)
        stored = 0
        tiles = job.scene.tiles or [Tile(job.scene.source_id, job.scene.source_id, job.scene.date, job.scene.wkt)]
        for tile in tiles:  # a scene without tiles is its own single tile (S2, Landsat, …)
            t0 = _ctx(job.storage_uri, job.aoi, job.scene, tile)
            log(f"[ingester] scene graph {graph.name} on tile {tile.source_id}")
            runner = Runner(graph, [t0, t0, t0], workdir, log_path, job.scene.graph_config, settings.step_timeout,
                            settings.snap_gpt, settings.docker, step_record_path(job.workdir), storage=options)
            run = runner.run(retriable=job.scene.is_retriable, import_inputs=False, env=python_env(),
                             tile_indexes=(0,))
            creates = [k for k in run.kept if k.tile_index == 0 and k.out.action == "to_create"]
            outputs, notes = apply_actions(creates, run.failed, {}, log, options)
            stored += len(creates)
            if run.failed:
                return _result(run, outputs, notes, log_path)
        return JobResult("done", f"scene graph {graph.name}: {stored} file(s) stored", log_path=str(log_path))
    except Exception as exc:  # noqa: BLE001 - a worker reports, never raises
        log(f"[ingester] scene graph error: {exc}\n{traceback.format_exc()}")
        return _error(exc, log_path)
