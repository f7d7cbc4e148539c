"""Pre-flight checks: what would make every job of a run fail is found before anything is written
(no store created, no AOI row, no download) and named.

Checks, in order (each `ok`, `failed`, `unavailable` or `skipped`, with a one-line detail):

- settings: the provider settings (names, patterns, listed providers' credentials, ~/.netrc).
- credentials: every product has a configured provider that may deliver it (a scene only CDSE has needs a
  CDSE account, else the check fails naming the settings); one login to CDSE (exactly one token
  request) when products may come from CDSE, one to OneAtlas (the API-key grant) when products may come
  from OneAtlas, on the run's `Clients`, which keep the token managers: the run that follows logs in no
  more.
- engines: what the graphs' steps run: SNAP's `gpt`, the docker client, `cmd` commands (python scripts
  and SNAP graph files are checked when a graph is loaded).
- storage: a local storage and the work folder can be written (the nearest existing folder is
  writable; nothing is created); an object store is reached (its root listed; write access is checked
  by the first upload).
- disk space: the work folder holds the products in flight (the largest announced sizes, one per
  worker, twice: the zip and its unpacked product); a local storage holds the products a copy graph
  stores (announced size × tiles). Products without an announced size are not counted (said so).

`failed` means the run must not start (exit 2); `unavailable` is a service that did not answer (exit 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ingester.config import Settings
from ingester.errors import (
    AuthError,
    ConfigError,
    CredentialsRefused,
    GraphError,
    IngesterError,
    InputError,
    RateLimited,
    Unavailable,
)
from ingester.fileio import folder_problem
from ingester.naming import is_copy_graph
from ingester.scenes import Scene
from ingester.wording import plural

if TYPE_CHECKING:
    from ingester.http.clients import Clients

OK, FAILED, UNAVAILABLE, SKIPPED = "ok", "failed", "unavailable", "skipped"


@dataclasses.dataclass
class Check:
    name: str
    status: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Work:
    """What a run would do: the scenes whose product it may download (with their tiles) and the graphs
    its jobs run (name → graph folders)."""

    downloads: list[Scene]
    graphs: dict[tuple[str, bool], tuple[str, ...]]  # (graph name, is a scene graph) → graph folders
    storage: dict[str, str]  # scene source id → its storage URI
    tile_jobs: int = 0
    scene_jobs: int = 0

    @property
    def storage_uris(self) -> set[str]:
        return set(self.storage.values())

    @property
    def announced(self) -> tuple[int, int]:
        """(total announced bytes, products without an announced size)."""
        from ingester.providers.base import expected_from_metadata

        total = unknown = 0
        for scene in self.downloads:
            size = expected_from_metadata(scene.metadata).size
            if size is None:
                unknown += 1
            else:
                total += size
        return total, unknown


@dataclasses.dataclass
class Report:
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status in (FAILED, UNAVAILABLE)]

    @property
    def exit_code(self) -> int:
        if any(c.status == FAILED for c in self.checks):
            return 2
        return 1 if self.failed else 0

    def summary(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_json(self) -> list[dict[str, str]]:
        return [c.to_json() for c in self.checks]


class PreflightError(InputError):
    """A pre-flight check failed: the run did not start, nothing was written."""

    def __init__(self, report: Report):
        super().__init__(f"pre-flight check failed, nothing was written: {report.summary()} "
                         "(`ingester check PAYLOAD` runs the checks alone)")
        self.report = report
        self.exit_code = report.exit_code


def _default(name: str) -> str:
    return next(str(f.default) for f in dataclasses.fields(Settings) if f.name == name)


def run_checks(work: Work, settings: Settings, workers: int, clients: Clients | None = None) -> Report:
    """Every check. Downloads and graphs are the built-in workers' business: with another worker
    (`--scene-worker`, `--tile-worker`) what it runs is its own, and those checks are skipped.
    `clients`: the run's HTTP clients, whose CDSE login the credentials check makes (and the run then
    uses: one login per run); without them the check logs in on clients of its own."""
    if settings.scene_worker != _default("scene_worker"):
        work = dataclasses.replace(work, downloads=[], graphs={k: v for k, v in work.graphs.items() if not k[1]})
    if settings.tile_worker != _default("tile_worker"):
        work = dataclasses.replace(work, graphs={k: v for k, v in work.graphs.items() if k[1]})
    checks = [_settings(settings)]
    if checks[0].status == OK:
        checks.append(_credentials(work, settings, clients))
    checks.append(_engines(work, settings))
    checks.append(_storage(work, settings))
    checks.append(_disk_space(work, settings, workers))
    if settings.executor == "dask" and settings.dask_scheduler:
        checks.append(_scheduler(settings))
    return Report(checks)


def _scheduler(settings: Settings) -> Check:
    """The Dask scheduler answers (a run would otherwise write its AOI, then fail to start)."""
    from ingester.dask_executor import scheduler_reached

    try:
        why = scheduler_reached(settings.dask_scheduler)
    except IngesterError as exc:  # distributed not installed
        return Check("scheduler", FAILED, str(exc))
    if why:
        return Check("scheduler", UNAVAILABLE, why)
    return Check("scheduler", OK, f"{settings.dask_scheduler} answered")


def preflight(work: Work, settings: Settings, workers: int, clients: Clients | None = None) -> Report:
    """Run the checks; raise PreflightError (exit 2, or 1 when only a service did not answer)."""
    report = run_checks(work, settings, workers, clients)
    if report.failed:
        raise PreflightError(report)
    return report


# --- what a run would do ---------------------------------------------------------------------------

@dataclasses.dataclass
class Pending:
    """An AOI's jobs still to run (or to be retried)."""

    scenes: list[Scene]  # scene jobs (their products may be downloaded)
    tile_graphs: set[str]
    tile_jobs: int
    storage: dict[str, str]  # scene source id → storage URI
    graph_dirs: tuple[str, ...] = ()


def work_of(new_scenes: Sequence[Scene], graph_dirs: tuple[str, ...], storage: dict[str, str],
            pending: Pending | None = None) -> Work:
    """The work of new scenes (with their tiles) plus the AOI's jobs already waiting to run."""
    graphs: dict[tuple[str, bool], tuple[str, ...]] = {}
    for scene in new_scenes:
        if scene.graph_name:
            graphs[(scene.graph_name, True)] = graph_dirs
        for tile in scene.tiles:
            if tile.graph_name:
                graphs[(tile.graph_name, False)] = graph_dirs
    downloads = list(new_scenes)
    storage = dict(storage)
    tile_jobs = sum(len(s.tiles) for s in new_scenes)
    if pending is not None:
        dirs = pending.graph_dirs or graph_dirs
        for scene in pending.scenes:
            if scene.graph_name:
                graphs[(scene.graph_name, True)] = dirs
        for name in pending.tile_graphs:
            if name:
                graphs[(name, False)] = dirs
        downloads += pending.scenes
        storage.update(pending.storage)
        tile_jobs += pending.tile_jobs
    return Work(downloads, graphs, storage, tile_jobs, len(downloads))


def pending_work(store: Any, aoi: str, settings: Settings, scene_statuses: Iterable[str] = ("PENDING",),
                 tile_statuses: Iterable[str] = ("NEW", "PENDING")) -> Pending:
    """An AOI's jobs in the given statuses: scenes as models (for their products), the graphs of the
    tiles, and where each scene is stored. A PENDING scene that a run would not reach (deferred or backed
    off beyond `settings.max_wait`) is left out: nothing is checked, and no login made, for it."""
    from ingester.aoi_config import aoi_storage
    from ingester.aoi_config import graph_dirs as aoi_graph_dirs
    from ingester.storage import resolve_storage_uri
    from ingester.store import monotonic_now

    row = store.aoi(aoi)
    if row is None:
        return Pending([], set(), 0, {})
    scenes = [store.scene(sid, with_tiles=True)
              for sid in store.scene_ids(row.id, tuple(scene_statuses), monotonic_now() + settings.max_wait)]
    graphs, count = set(), 0
    for name, n in store.tile_graphs(row.id, tuple(tile_statuses)).items():
        graphs.add(name)
        count += n
    fixed = aoi_storage(row.settings or {}, settings)  # as the coordinator resolves it
    storage = {s.source_id: resolve_storage_uri(s.storage_uri, fixed, settings) for s in scenes}
    if count and not storage:
        storage[""] = fixed
    return Pending(scenes, graphs, count, storage, aoi_graph_dirs(row.settings or {}))


# --- the checks ------------------------------------------------------------------------------------

def _settings(settings: Settings) -> Check:
    from ingester.providers import check_settings

    try:
        check_settings(settings)
    except ConfigError as exc:
        return Check("settings", FAILED, str(exc))
    return Check("settings", OK, f"providers {settings.providers}")


def _undeliverable(work: Work, settings: Settings, clients: Clients) -> Check | None:
    """A failed check when some products can come from no configured provider (CDSE counts only with an
    account), naming the scenes and the settings that would give them a source; None otherwise.
    OneAtlas scenes are left to their own check."""
    from ingester.catalogue.oneatlas import is_oneatlas
    from ingester.config import cdse_credentials
    from ingester.providers.cdse import is_cdse_scene
    from ingester.providers.chain import deliverers, provider_order, registry

    try:
        creds = cdse_credentials(settings)
        order = provider_order(settings)
    except ConfigError:
        return None  # said by the settings or the CDSE check
    account = bool(creds and creds[0] and creds[1])
    known = registry()
    providers = [known[name](settings, clients=clients) for name in order]
    orphans: list[Scene] = []
    for scene in work.downloads:
        if is_oneatlas(scene):
            continue
        names = [n for n in deliverers(scene, settings, providers) if n != "cdse" or account]
        if not names:
            orphans.append(scene)
    if not orphans:
        return None
    shown = ", ".join(s.source_id for s in orphans[:3]) + (f" and {len(orphans) - 3} more" if len(orphans) > 3
                                                            else "")
    what = plural(len(orphans), "product")
    sources = "a source holding them (INGESTER_LOCAL_PATH, INGESTER_BUCKET_PATTERNS, INGESTER_FTP_PATTERNS)"
    if all(is_cdse_scene(s) for s in orphans):
        host = urlparse(settings.cdse_token_url).hostname  # (with an account, cdse joins the providers)
        return Check("credentials", FAILED, f"{what} can only come from CDSE, which has no account here ({shown}): "
                     f"set INGESTER_CDSE_USERNAME and INGESTER_CDSE_PASSWORD (or a ~/.netrc entry for {host}), "
                     f"or {sources}")
    return Check("credentials", FAILED, f"no configured provider can deliver {what} ({shown}; providers "
                 f"{', '.join(order) or 'none'}): configure {sources}, or the provider of their catalogue")


def _credentials(work: Work, settings: Settings, clients: Clients | None = None) -> Check:
    """Which provider can deliver each product (`_undeliverable`), then CDSE's login
    (`_cdse_credentials`) and OneAtlas's (`_oneatlas_credentials`), as one check, on `clients` (those of
    the run: one login per run), else on clients of their own."""
    from ingester.http.clients import Clients

    with contextlib.ExitStack() as stack:
        logins = clients if clients is not None else stack.enter_context(Clients())
        orphans = _undeliverable(work, settings, logins)
        if orphans is not None:
            return orphans
        cdse = _cdse_credentials(work, settings, logins)
        oneatlas = _oneatlas_credentials(work, settings, logins)
    if oneatlas is None:
        return cdse
    if cdse.status == SKIPPED:
        return oneatlas
    worst = next(s for s in (FAILED, UNAVAILABLE, OK) if s in (cdse.status, oneatlas.status))
    return Check("credentials", worst, f"{cdse.detail}; {oneatlas.detail}")


def _oneatlas_credentials(work: Work, settings: Settings, clients: Clients) -> Check | None:
    """One OneAtlas login (the API-key grant) when products may come from OneAtlas; None when none may."""
    from ingester.catalogue.oneatlas import is_oneatlas

    if not any(is_oneatlas(s) for s in work.downloads):
        return None
    from ingester import oneatlas

    try:
        oneatlas.login_manager(settings, clients).current()
    except ConfigError as exc:
        return Check("credentials", FAILED, str(exc))
    except CredentialsRefused as exc:
        return Check("credentials", FAILED, str(exc))
    except (Unavailable, RateLimited) as exc:
        return Check("credentials", UNAVAILABLE, str(exc))
    except AuthError as exc:
        return Check("credentials", FAILED, str(exc))
    return Check("credentials", OK, "OneAtlas accepted the API key")


def _cdse_credentials(work: Work, settings: Settings, clients: Clients) -> Check:
    from ingester.config import cdse_credentials
    from ingester.providers.chain import provider_order

    if "cdse" not in provider_order(settings):
        return Check("credentials", SKIPPED, "CDSE is not among the providers")
    from ingester.providers.cdse import is_cdse_scene

    cdse_scenes = [s for s in work.downloads if is_cdse_scene(s)]
    if not cdse_scenes:
        return Check("credentials", SKIPPED, "no product to download from the CDSE catalogue")
    try:
        creds = cdse_credentials(settings)
    except ConfigError as exc:
        return Check("credentials", FAILED, str(exc))
    if not creds or not creds[0] or not creds[1]:
        return Check("credentials", SKIPPED, "no CDSE account: not needed, every product has another source")
    from ingester.providers.cdse import login_manager

    try:
        login_manager(settings, clients).current()
    except CredentialsRefused as exc:
        return Check("credentials", FAILED, str(exc))
    except (Unavailable, RateLimited) as exc:
        return Check("credentials", UNAVAILABLE, str(exc))
    except AuthError as exc:
        return Check("credentials", FAILED, str(exc))
    return Check("credentials", OK, f"logged in to CDSE as {creds[0]}")


def _engines(work: Work, settings: Settings) -> Check:
    from ingester.graph.engines import find_gpt
    from ingester.graph.loader import load_graph

    needs: dict[str, set[str]] = {}
    problems: list[str] = []
    for (name, scene_graph), dirs in sorted(work.graphs.items()):
        if scene_graph and is_copy_graph(name):
            continue
        try:
            graph = load_graph(name, dirs, scene_graph=scene_graph)
        except GraphError as exc:
            problems.append(str(exc))
            continue
        for step in graph.steps:
            needs.setdefault(step.engine, set()).add(step.command if step.engine == "cmd" else graph.name)
    if "snap" in needs and find_gpt(settings.snap_gpt) is None:
        problems.append(f"SNAP's gpt not found (graph {', '.join(sorted(needs['snap']))}; set INGESTER_SNAP_GPT or "
                        "$SNAPPATH, or put gpt on PATH)")
    if "docker" in needs and not _executable(settings.docker):
        problems.append(f"the docker client {settings.docker!r} not found (graph {', '.join(sorted(needs['docker']))};"
                        " INGESTER_DOCKER)")
    for command in sorted(needs.get("cmd", ())):
        if not _executable(command):
            problems.append(f"command {command!r} not found")
    if problems:
        return Check("engines", FAILED, "; ".join(problems))
    used = ", ".join(sorted(needs)) or "no external engine"
    return Check("engines", OK, f"{used} available" if needs else used)


def _executable(command: str) -> bool:
    if os.sep in command:
        return Path(command).is_file() and os.access(command, os.X_OK)
    return shutil.which(command) is not None


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _local(uri: str) -> Path | None:
    if "://" not in uri:
        return Path(uri)
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    return None


def _storage(work: Work, settings: Settings) -> Check:
    problems: list[str] = []
    checked: list[str] = []
    for label, uri in [("work folder", settings.workdir), *(("storage", u) for u in sorted(work.storage_uris))]:
        local = _local(uri)
        if local is not None:
            problem = folder_problem(local)
            if problem:
                problems.append(f"{label} {uri}: {problem}")
            else:
                checked.append(f"{label} {uri}")
            continue
        try:
            from ingester import storage

            fs, path = storage.filesystem(uri, storage.StorageOptions.of(settings))
            root = path.split("/", 1)[0]
            if not fs.exists(root):
                problems.append(f"{label} {uri}: {root} does not exist")
            else:
                checked.append(f"{label} {uri} (reached; write access is checked by the first upload)")
        except (IngesterError, OSError, ValueError) as exc:
            problems.append(f"{label} {uri}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - an object store client's own errors (botocore, …)
            problems.append(f"{label} {uri}: {type(exc).__name__}: {exc}")
    from ingester.dask_executor import check_shared_storage

    if unshared := check_shared_storage(work.storage_uris, settings):  # remote Dask workers: not this disk
        problems.append(unshared)
    if problems:
        return Check("storage", FAILED, "; ".join(problems))
    return Check("storage", OK, "writable: " + ", ".join(checked))


def _disk_space(work: Work, settings: Settings, workers: int) -> Check:
    from ingester.providers.base import expected_from_metadata

    sizes = [(scene, expected_from_metadata(scene.metadata).size) for scene in work.downloads]
    known = sorted((size for _, size in sizes if size), reverse=True)
    unknown = len(sizes) - len(known)
    if not sizes:
        return Check("disk space", SKIPPED, "no product to download")
    need: dict[Path, int] = {}
    in_flight = 2 * sum(known[:max(workers, 1)])
    work_fs = _nearest_existing(Path(settings.workdir))
    need[work_fs] = in_flight
    for scene, size in sizes:
        if not size or not is_copy_graph(scene.graph_name):
            continue
        local = _local(work.storage.get(scene.source_id, settings.storage_uri))
        if local is not None:
            base = _nearest_existing(local)
            need[base] = need.get(base, 0) + size * max(len(scene.tiles), 1)
    by_device: dict[int, tuple[Path, int]] = {}
    for path, nbytes in need.items():
        device = os.stat(path).st_dev
        first, total = by_device.get(device, (path, 0))
        by_device[device] = (first, total + nbytes)
    problems: list[str] = []
    fine: list[str] = []
    for path, nbytes in by_device.values():
        free = shutil.disk_usage(path).free
        line = f"{path}: {_size(nbytes)} needed, {_size(free)} free"
        (problems if nbytes > free else fine).append(line)
    note = f" ({unknown} product(s) announce no size: not counted)" if unknown else ""
    if problems:
        return Check("disk space", FAILED, "; ".join(problems) + note)
    return Check("disk space", OK, "; ".join(fine) + note)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


size_text = _size


def fetched_already(scene: Scene, aoi: str, storage_uri: str, settings: Settings) -> bool:
    """The scene's product needs no download: kept from an earlier attempt, or (copy graph, local
    storage) stored with its verification record in every tile folder. Cheap: no checksum computed."""
    from ingester.providers.cache import product_path
    from ingester.storage import VERIFIED_SUFFIX, join_uri, tile_prefix

    try:
        if product_path(settings, aoi, scene.source_id).is_file():
            return True
        if not is_copy_graph(scene.graph_name) or _local(storage_uri) is None:
            return False
        tiles = [t.source_id for t in scene.tiles] or [scene.source_id]
        return all(os.path.exists(join_uri(tile_prefix(storage_uri, aoi, scene.source_id, t),
                                           f"{scene.source_id}.zip") + VERIFIED_SUFFIX) for t in tiles)
    except InputError:
        return False


def plan_work(aoi: str, new_scenes: Sequence[Scene], payload_storage_uri: str, graph_dirs: tuple[str, ...],
              settings: Settings, pending: Pending | None = None) -> Work:
    """The work of an `ingester aoi`: its new scenes and the AOI's pending jobs; products already kept or
    stored are not downloads."""
    from ingester.storage import resolve_storage_uri

    storage = {s.source_id: resolve_storage_uri(s.storage_uri, payload_storage_uri, settings) for s in new_scenes}
    work = work_of(new_scenes, graph_dirs, storage, pending)
    work.downloads = [s for s in work.downloads
                      if not fetched_already(s, aoi, work.storage.get(s.source_id, settings.storage_uri), settings)]
    return work
