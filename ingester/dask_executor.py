"""A Dask `distributed` back-end behind the `Executor` interface (`--executor dask`).

The coordinator stays the only process that writes the store: it submits one Dask task per job
attempt and turns each Dask future into the `concurrent.futures.Future[JobResult]` the workflow waits
on. Without a scheduler address a `distributed.LocalCluster` of worker processes (one thread each) is
started on this machine; with one (`--scheduler tcp://host:8786`) the jobs run on that cluster.

Same job semantics as the local pool:
- a task's key is stable (`ingester:<aoi>:<kind>-<job id>:<attempt>`), `pure=False`, no Dask retries
  (the workflow owns retries);
- a worker that dies mid-job (`KilledWorker`) gives that job a `temporary` outcome. Dask counts a
  task already sent to that worker, queued behind the running one, as killed too: such a job also ends
  `temporary` and runs again (one of its `max_temporary_retries`), where the local pool re-queues it
  uncharged. A LocalCluster's
  scheduler is told to give up on a task at the first death (`allowed-failures` 0); a remote
  scheduler should be started the same way (README, "Running on a cluster"), or Dask runs the task
  again elsewhere before the workflow hears of it;
- losing the scheduler is a breakdown of the executor, not of the jobs: every waiting future raises
  `ExecutorBroken` (exit 1, the leases are given back, the next run resumes).

Results are fetched in batches (one `gather` for every task finished meanwhile), not one by one.

What travels in the task graph (through the scheduler): the worker's import path, the job (with at
most short-lived access tokens) and the coordinator's settings with every secret blanked. A worker
fills the secrets from its own environment / ingester.toml (FTP, S3, ASF); like the local pool's
workers it never gets the CDSE password or the OneAtlas API key: it asks the coordinator for a fresh
token through a `distributed.Queue` and gets the reply in a `distributed.Variable` named for the
request.

Cluster-wide limits: download slots (`providers.slots`: the CDSE cap of concurrent downloads, one
OneAtlas order per product) become `distributed.Semaphore`s shared by every worker of the cluster; a
graph's `resources` (e.g. `{"snap": 1}`) become the task's Dask worker resources, so the job runs only
on a worker started with them (`dask worker --resources snap=1`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlparse

from ingester.config import SECRET_FIELDS, Settings, load_settings
from ingester.errors import AuthError, ConfigError, IngesterError
from ingester.executor import ExecutorBroken, TokenSourceFn, _die_with_parent, call_worker
from ingester.http.tokens import AccessToken, error_reply, raise_reply, worker_settings
from ingester.jobs import JobResult, SceneJob, TileJob

INSTALL = "pip install 'ingester[dask]'"
TOKEN_TIMEOUT = 120.0  # seconds a worker waits for the coordinator's answer to a token request


def require_distributed() -> Any:
    """The `distributed` module, or a ConfigError (exit 2) saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--executor dask / INGESTER_EXECUTOR=dask: the Dask back-end needs the `distributed` "
                          f"package, which is not installed; install it with: {INSTALL}") from None
    return distributed


_SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def check_executor_settings(settings: Settings) -> None:
    """A scheduler address is only meaningful for the Dask back-end and must be one: ConfigError (exit 2)
    when it is given to a local run (which would ignore it) or is not `[scheme://]host:port`."""
    address = settings.dask_scheduler
    if not address:
        return
    if settings.executor != "dask":
        raise ConfigError(f"--scheduler / INGESTER_DASK_SCHEDULER: {address!r} is given but the executor is "
                          f"{settings.executor!r}, which would ignore it: add --executor dask "
                          "(INGESTER_EXECUTOR=dask), or leave the scheduler out to run here")
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in _SCHEDULER_SCHEMES or not parsed.hostname or port is None:
        raise ConfigError(f"--scheduler / INGESTER_DASK_SCHEDULER: {address!r} is not a Dask scheduler address; "
                          "expected [tcp://]HOST:PORT (e.g. tcp://10.0.0.5:8786)")


def scheduler_reached(address: str, timeout: float = 5.0) -> str:
    """'' when the scheduler at `address` answers within `timeout` seconds, else why not."""
    distributed = require_distributed()
    try:
        with distributed.Client(address, timeout=timeout, set_as_default=False):
            return ""
    except (OSError, TimeoutError) as exc:
        return f"cannot reach the Dask scheduler {address}: {exc}"


def is_local_path(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file") or (len(uri) > 1 and uri[1] == ":")


def check_shared_storage(storage_uris: set[str] | list[str], settings: Settings) -> str:
    """Why a run on a remote Dask cluster cannot use these storages ('' when it can): its workers do
    not see this machine's disk, unless the path is declared shared (`--shared-storage`: NFS, …)."""
    if settings.executor != "dask" or not settings.dask_scheduler or settings.shared_storage:
        return ""
    local = sorted(u for u in storage_uris if u and is_local_path(u))
    if not local:
        return ""
    return (f"storage {local[0]} is a path on this machine, but the jobs run on the Dask cluster at "
            f"{settings.dask_scheduler}, whose workers cannot see this disk: use an object store (s3://, gs://), "
            "or declare the path shared by every worker (a network file system) with --shared-storage "
            "(INGESTER_SHARED_STORAGE=1)")


def sent_settings(settings: Settings) -> Settings:
    """The settings as sent to Dask workers: every secret blanked (workers read their own)."""
    blank: dict[str, Any] = dict.fromkeys(SECRET_FIELDS, "")
    return dataclasses.replace(settings, **blank)


def check_worker_threads(nthreads: dict[str, int]) -> None:
    """A job is a worker process's whole work (the tokens and the download slots of the job running are
    the process's): ConfigError (exit 2) when a Dask worker runs jobs in several threads."""
    many = sorted(address for address, n in nthreads.items() if n > 1)
    if many:
        raise ConfigError(f"the Dask worker {many[0]} runs {nthreads[many[0]]} threads"
                          f"{f' (and {len(many) - 1} more workers)' if len(many) > 1 else ''}: ingester jobs need "
                          "single-threaded workers; start them with `dask worker ADDRESS --nthreads 1 --nworkers N`")


def job_key(job: Any) -> str:
    """A stable task key: the AOI, the job and its attempt."""
    kind = "tile" if isinstance(job, TileJob) else "scene" if isinstance(job, SceneJob) else type(job).__name__.lower()
    return f"ingester:{getattr(job, 'aoi', '')}:{kind}-{getattr(job, 'job_id', '')}:{getattr(job, 'attempt', '')}"


_graph_resources: dict[tuple[str, tuple[str, ...], bool], dict[str, float]] = {}


def job_resources(job: Any) -> dict[str, float]:
    """The Dask worker resources the job's graph asks for (`"resources"` in the graph file); none when
    the job has no graph or its graph cannot be loaded (the worker then reports why)."""
    from ingester.graph.loader import load_graph

    if isinstance(job, TileJob):
        name, dirs, scene_graph = job.tile.graph_name, job.graph_dirs, False
    elif isinstance(job, SceneJob):
        name, dirs, scene_graph = job.scene.graph_name, job.graph_dirs, True
    else:
        return {}
    if not name:
        return {}
    cache_key = (name, tuple(dirs), scene_graph)
    if cache_key not in _graph_resources:
        try:
            _graph_resources[cache_key] = dict(load_graph(name, dirs, scene_graph=scene_graph).resources)
        except Exception:  # noqa: BLE001 - the worker loads it again and reports the error
            _graph_resources[cache_key] = {}
    return _graph_resources[cache_key]


# --- the worker's side ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every task of a run carries besides the job: names on the cluster, and the coordinator's
    pid when the workers are its own processes (a LocalCluster: they die with it)."""

    token_queue: str
    parent: int | None = None


_own: dict[Settings, Settings] = {}
_cache: dict[str, Any] = {}
_watching = False
_clients: Any = None  # a worker process's http.clients.Clients, made at its first job


def own_settings(sent: Settings, env: dict[str, str] | None = None) -> Settings:
    """The settings a job runs with on a Dask worker: the coordinator's, with the secrets of this
    worker's own environment / ingester.toml, less those workers never hold (tokens.worker_settings)."""
    if sent not in _own:
        mine = load_settings(env=env)
        _own.clear()
        _own[sent] = worker_settings(dataclasses.replace(sent, **{n: getattr(mine, n) for n in SECRET_FIELDS}))
    return _own[sent]


class DaskTokenChannel:
    """A worker's channel to the coordinator: the request goes on the run's queue, the answer comes
    back in a variable named for the request (deleted once read)."""

    def __init__(self, queue_name: str):
        self.queue_name = queue_name

    def request(self, service: str, stale: str | None) -> AccessToken:
        from distributed import Queue, Variable

        request_id = uuid.uuid4().hex
        Queue(self.queue_name).put((request_id, service, stale))
        variable = Variable(f"{self.queue_name}-{request_id}")
        try:
            token, error = variable.get(timeout=TOKEN_TIMEOUT)
        except TimeoutError:
            raise AuthError(f"{service}: the coordinator did not answer a request for a fresh token in "
                            f"{TOKEN_TIMEOUT:.0f} s") from None
        finally:
            with contextlib.suppress(Exception):
                variable.delete()
        if token is None:
            raise_reply(*(error or ("AuthError", f"{service}: no token")))
        return token


@contextlib.contextmanager
def cluster_slot(name: str, limit: int) -> Iterator[None]:
    """One of `limit` leases of the cluster-wide semaphore `name` (released by Dask if its holder dies)."""
    from distributed import Semaphore

    with Semaphore(max_leases=limit, name=f"ingester-slot-{name}"):
        yield


def run_job(path: str, job: Any, settings: Settings, context: RunContext) -> JobResult:
    """The Dask task: run a worker function on a job, as the local pool's worker processes do."""
    global _watching
    from distributed import get_worker

    from ingester.providers.slots import shared_slots

    if context.parent is not None and not _watching and os.getppid() == context.parent:
        _die_with_parent(context.parent)  # a LocalCluster's worker must not outlive its coordinator
        _watching = True
    try:
        address = get_worker().address
    except ValueError:  # not on a worker (a test calling it directly)
        address = ""
    try:
        mine = own_settings(settings)
    except IngesterError as exc:
        return JobResult("error", f"the Dask worker {address} cannot read its own settings: {exc}",
                         details={"ran_on": address})
    global _clients
    if _clients is None:  # the worker process's: what its jobs learn about servers (as the local pool's)
        from ingester.http.clients import Clients

        _clients = Clients()
    with shared_slots(cluster_slot):
        result = call_worker(path, job, mine, _cache, DaskTokenChannel(context.token_queue), clients=_clients)
    result.details["ran_on"] = address
    return result


# --- the coordinator's side ----------------------------------------------------------------------

def _quiet_dask_logs() -> dict[str, int]:
    """Silence Dask's loggers in this process (those Dask sets a level of its own on too); returns
    their levels to restore."""
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        if name == "distributed" or logger.level != logging.NOTSET:
            saved[name] = logger.level
            logger.setLevel(logging.CRITICAL + 1)
    return saved


class DaskExecutor:
    """Runs jobs on a Dask cluster (see the module docstring)."""

    # jobs the coordinator keeps in flight per worker thread: a task's round trip through the scheduler
    # is long next to a no-op job; queued tasks wait in the scheduler (leased, their leases renewed)
    in_flight_per_worker = 16

    def __init__(self, workers: int = 0, settings: Settings | None = None, scheduler: str = "",
                 connect_timeout: float = 30.0):
        distributed = require_distributed()
        import dask

        # Dask's own log lines (reconnect attempts, restarted workers, …) would interleave with the
        # run's messages: what matters reaches the run as an outcome or as ExecutorBroken
        self._log_levels = _quiet_dask_logs()

        self.settings = settings or Settings()
        self.token_source: TokenSourceFn | None = None
        self.deaths = 0
        self._sent = sent_settings(self.settings)
        self._cluster: Any = None
        self._closed = False
        self._broken = ""
        self._lock = threading.Lock()
        self._futures: dict[Any, Future[JobResult]] = {}  # Dask future → the workflow's future
        self._outbox: list[tuple[Future[JobResult], str, Any]] = []  # submitted, not yet sent
        self._wake = threading.Event()
        self._sent_some = threading.Event()
        self._stopping = False
        name = f"ingester-tokens-{uuid.uuid4().hex[:12]}"
        try:
            if scheduler:
                self.client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
                parent = None
            else:
                n = workers if workers > 0 else (os.cpu_count() or 1)
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    with warnings.catch_warnings():  # e.g. "port 8787 in use": Dask's notes, not the user's
                        warnings.simplefilter("ignore")
                        self._cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                                 dashboard_address=":0", silence_logs=50)
                self.client = distributed.Client(self._cluster, set_as_default=False)
                parent = os.getpid()
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise ExecutorBroken(f"cannot reach the Dask scheduler {scheduler or '(local cluster)'}: {exc}") from None
        if scheduler:
            try:
                self.client.wait_for_workers(1, timeout=connect_timeout)
            except (OSError, TimeoutError):
                self.client.close()
                raise ExecutorBroken(f"the Dask cluster at {scheduler} has no worker (waited "
                                     f"{connect_timeout:.0f} s)") from None
        try:
            check_worker_threads(self.client.nthreads())
        except ConfigError:
            self.client.close()
            self._close_cluster()
            raise
        self.capacity = max(1, sum(self.client.nthreads().values()))
        self._context = RunContext(name, parent)
        self._tokens = distributed.Queue(name, client=self.client)
        self._done = distributed.as_completed([], loop=self.client.loop)
        self._threads = [threading.Thread(target=self._collect, name="ingester-dask-results", daemon=True),
                         threading.Thread(target=self._serve_tokens, name="ingester-dask-tokens", daemon=True),
                         threading.Thread(target=self._send, name="ingester-dask-send", daemon=True)]
        for thread in self._threads:
            thread.start()

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, worker: str, job: Any) -> Future[JobResult]:
        """Queue the job; a sender thread hands the jobs queued meanwhile to the scheduler in one graph
        (one `update_graph` per batch, not per job: the scheduler's cost per submission dominates)."""
        future: Future[JobResult] = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            if self._broken:
                raise ExecutorBroken(self._broken)
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._outbox.append((future, worker, job))
        self._wake.set()
        return future

    def _send(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._outbox = self._outbox, []
                closed = self._closed
            if batch and not closed:
                groups: dict[tuple[tuple[str, float], ...], list[tuple[Future[JobResult], str, Any]]] = {}
                for item in batch:
                    groups.setdefault(tuple(sorted(job_resources(item[2]).items())), []).append(item)
                for resources, items in groups.items():
                    self._send_group(items, dict(resources))
            elif batch:
                for future, _worker, _job in batch:
                    future.set_result(JobResult("error", "executor shut down before the job ran"))
            if closed:
                return

    def _send_group(self, items: list[tuple[Future[JobResult], str, Any]], resources: dict[str, float]) -> None:
        n = len(items)
        try:
            tasks = self.client.map(run_job, [w for _, w, _ in items], [j for _, _, j in items], [self._sent] * n,
                                    [self._context] * n, key=[job_key(j) for _, _, j in items], pure=False,
                                    retries=0, resources=resources or None, batch_size=None)
        except Exception as exc:  # noqa: BLE001
            if self.client.status != "running":  # the cluster is gone: not the jobs' fault
                self._break(f"the Dask cluster was lost: {type(exc).__name__}: {exc}", [f for f, _, _ in items])
            elif n > 1:  # one job that cannot be sent (unpicklable): it fails alone
                for item in items:
                    self._send_group([item], resources)
            else:
                items[0][0].set_result(JobResult("error", f"cannot send the job to the Dask cluster: {exc}"))
            return
        with self._lock:
            for (future, _, _), task in zip(items, tasks, strict=True):
                self._futures[task] = future
        self._done.update(tasks)
        self._sent_some.set()

    # -- results --------------------------------------------------------------------------------
    def _collect(self) -> None:
        """Settle the tasks that finished, in batches (`as_completed` follows them in the client's
        event loop: no thread hop per task)."""
        while not self._stopping:
            if self._done.is_empty():
                self._sent_some.wait(0.2)
                self._sent_some.clear()
                continue
            try:
                batch = self._done.next_batch(block=True)
            except StopIteration:
                continue
            self._settle(batch)

    def _settle(self, tasks: list[Any]) -> None:
        finished = [t for t in tasks if t.status == "finished"]
        results: dict[Any, JobResult] = {}
        if finished:
            try:
                results = dict(zip(finished, self.client.gather(finished), strict=True))
            except Exception:  # noqa: BLE001 - one by one: only the culprit fails
                for t in finished:
                    try:
                        results[t] = t.result()
                    except Exception as exc:  # noqa: BLE001
                        results[t] = self._outcome_of(exc)
        for task in tasks:
            with self._lock:
                future = self._futures.pop(task, None)
                closed = self._closed
            if future is None or future.done():
                continue
            if task in results:
                future.set_result(results[task])
            elif task.status == "cancelled":
                if closed:
                    future.set_result(JobResult("error", "executor shut down while the job ran"))
                else:
                    self._break(f"the Dask cluster was lost: {task.key} was cancelled "
                                "(the connection to the scheduler was lost)")
            else:
                try:
                    error = task.exception(timeout=10)
                except Exception as lost:  # noqa: BLE001
                    error = lost
                future.set_result(self._outcome_of(error))

    def _outcome_of(self, exc: BaseException | None) -> JobResult:
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            self.deaths += 1
            worker = getattr(exc, "last_worker", None)
            where = getattr(worker, "address", worker) or "a Dask worker"
            return JobResult("temporary", f"the Dask worker running the job died ({where})",
                             details={"ran_on": str(where) if worker else ""})
        return JobResult("error", f"the Dask task failed: {type(exc).__name__}: {exc}")

    def _break(self, reason: str, also: list[Future[JobResult]] | None = None) -> None:
        """The cluster is gone: every waiting future raises ExecutorBroken (the jobs are not charged)."""
        with self._lock:
            if not self._broken:
                self._broken = reason
            waiting = list(self._futures.values()) + [f for f, _, _ in self._outbox] + list(also or [])
            self._futures.clear()
            self._outbox.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(ExecutorBroken(self._broken))

    # -- tokens ---------------------------------------------------------------------------------
    def _serve_tokens(self) -> None:
        """Answer the workers' requests for fresh tokens from the coordinator's token source."""
        from distributed import Variable

        while not self._closed:
            try:  # no timeout: the scheduler would log each one; shutdown() puts a None to end the wait
                request = self._tokens.get()
            except Exception:  # noqa: BLE001 - the scheduler is gone: the results side reports it
                if self._closed:
                    return
                time.sleep(1)
                continue
            if request is None:
                return
            request_id, service, stale = request
            try:
                if self.token_source is None:
                    raise AuthError(f"{service}: no token source: the job cannot get a token")
                reply: tuple[AccessToken | None, tuple[str, str] | None] = (self.token_source(service, stale), None)
            except Exception as exc:  # noqa: BLE001 - sent to the worker, which raises it in its job
                reply = (None, error_reply(exc))
            with contextlib.suppress(Exception):
                Variable(f"{self._context.token_queue}-{request_id}", client=self.client).set(reply)

    # -- the end --------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True) -> None:
        """Stop; with `wait` the jobs in flight finish first, else their tasks are cancelled (an
        interrupted run: the coordinator has already put their jobs back in the queue). After the
        scheduler was lost nothing more is asked of it."""
        with self._lock:
            if self._closed:
                return
            if not wait:
                self._closed = True
            waiting = [f for f, _, _ in self._outbox] + list(self._futures.values())
            lost = bool(self._broken)
        if wait:
            for future in waiting:
                with contextlib.suppress(Exception):
                    future.exception()
            with self._lock:
                self._closed = True
        self._wake.set()
        self._threads[2].join(timeout=30)
        with self._lock:
            tasks = list(self._futures)
        if tasks and not lost:
            with contextlib.suppress(Exception):
                self.client.cancel(tasks, force=True)
        self._stopping = True
        self._sent_some.set()
        self._threads[0].join(timeout=30)
        if not lost:
            with contextlib.suppress(Exception):
                self._tokens.put(None, timeout=5)
        self._break("executor is shut down")
        with contextlib.suppress(Exception):
            self.client.close(timeout=2 if lost else 10)
        self._close_cluster()
        if not lost:
            self._threads[1].join(timeout=5)
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=10)
            self._cluster = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
