"""Executors: run worker functions on job descriptions, away from the coordinator.

The interface is small so that a Dask back-end can implement it later:

    executor = LocalExecutor(workers=4, settings=settings)
    future = executor.submit("ingester.graph.worker:run_tile_job", job)   # concurrent.futures.Future
    result: JobResult = future.result()
    executor.shutdown()

A worker is named by an import path `module:function` and called as `fn(job, settings) -> JobResult`
in a worker process. Every failure becomes a `JobResult`, never an exception in the coordinator: an
import error is an `error` outcome naming what is missing, an exception raised by the worker gets the
outcome `ingester.failures.classify` gives it (a bug: `error`) with its text, and a worker process
that dies (os._exit, SIGKILL, the OOM killer, segfault) gives the job it was running a `temporary`
outcome with the exit code in the message (the workflow re-queues it, at most `max_temporary_retries`
times); a fresh process replaces it. The jobs queued behind it, or sent to it in the instant between
its death and the dispatcher seeing it (a broken pipe), never started: they go back to the head of the
queue, uncharged. Only a job that cannot be pickled is an `error` of its own.

A breakdown of the executor itself (its dispatcher thread dies) is not charged to the jobs: every
waiting future raises `ExecutorBroken` (exit 1), the coordinator gives the leases back and the run stops.

`LocalExecutor` keeps one pipe per worker process (not `ProcessPoolExecutor`, which breaks the whole
pool when one process dies and cannot say which job killed it). Each process has at most
`prefetch` jobs queued, in order, so the job at the head of its queue is the one running.

Tokens (`ingester.http.tokens`): a job carries short-lived access tokens; a worker whose token expired
or was refused asks for a fresh one on its pipe (`_TokenRequest`), and the dispatcher thread answers from
`token_source` (the coordinator's, which holds the only login of the run). Workers are started with
`worker_settings`: without the CDSE password. The worker function finds the job's tokens, their channel
and the progress queue in the job's context (`ingester.job_context`), set around each call.
"""

from __future__ import annotations

import collections
import importlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Protocol

from ingester.config import Settings
from ingester.errors import AuthError, IngesterError
from ingester.failures import failure_result
from ingester.http.clients import Clients
from ingester.http.tokens import AccessToken, JobTokens, TokenChannel, error_reply, raise_reply
from ingester.job_context import JobContext, running
from ingester.jobs import JobResult
from ingester.times import format_time

TokenSourceFn = Callable[[str, "str | None"], AccessToken]


def now_text() -> str:
    return format_time(datetime.now(UTC))


class ExecutorBroken(IngesterError):
    """The executor cannot run jobs any more (not the jobs' fault): the run stops, the jobs stay queued."""


class Executor(Protocol):
    capacity: int
    token_source: TokenSourceFn | None  # answers the workers' requests for fresh tokens

    def submit(self, worker: str, job: Any) -> Future[JobResult]: ...

    def shutdown(self, wait: bool = True) -> None: ...


def resolve_worker(path: str) -> Any:
    """`module:function` → the function; raises ImportError/AttributeError with a clear text."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportError(f"worker {path!r} is not an import path of the form 'module:function'")
    module = importlib.import_module(module_name)
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no function {attr!r}") from None
    if not callable(fn):
        raise ImportError(f"worker {path!r} is not callable")
    return fn


def call_worker(path: str, job: Any, settings: Settings, cache: dict[str, Any] | None = None,
                channel: TokenChannel | None = None, progress_events: Any = None,
                clients: Clients | None = None) -> JobResult:
    """Resolve and call a worker in the job's context (its tokens, their channel, the progress queue, the
    worker process's `clients`); every failure becomes an `error` JobResult. The result's details carry
    when the worker started and finished (`started_at`, `finished_at`: the attempt's duration)."""
    started = now_text()
    result = _call_worker(path, job, settings, cache, channel, progress_events, clients)
    result.details.setdefault("started_at", started)
    result.details.setdefault("finished_at", now_text())
    return result


def _call_worker(path: str, job: Any, settings: Settings, cache: dict[str, Any] | None = None,
                 channel: TokenChannel | None = None, progress_events: Any = None,
                 clients: Clients | None = None) -> JobResult:
    cache = {} if cache is None else cache
    try:
        fn = cache.get(path) or resolve_worker(path)
        cache[path] = fn
    except (ImportError, AttributeError) as exc:
        return JobResult("error", f"worker {path!r} is not available: {exc}")
    try:
        tokens = JobTokens(dict(getattr(job, "tokens", None) or {}), channel)
        with running(JobContext(tokens, progress_events, clients)):
            result = fn(job, settings)
    except Exception as exc:  # a worker bug must not stop the run; a failure it let through is classified
        tb = traceback.format_exc(limit=5)
        return failure_result(exc, message=f"worker {path} raised {type(exc).__name__}: {exc}", traceback=tb)
    if not isinstance(result, JobResult):
        return JobResult("error", f"worker {path} returned {type(result).__name__}, not a JobResult")
    return result


def _die_with_parent(parent: int, every: float = 0.5) -> None:
    """Exit when the coordinator is gone (kill -9, OOM): an orphan worker would go on downloading and
    collide with the next run's jobs. A thread polls the parent pid (PR_SET_PDEATHSIG is tied to the
    creating thread, which is not the coordinator's life)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        try:  # a graph step runs in a session of its own: it would outlive us
            from ingester.graph.engines import kill_active_steps

            kill_active_steps()
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _TokenRequest:
    """Worker → coordinator: a fresh token for `service` (`stale`: the one refused or expired)."""

    def __init__(self, service: str, stale: str | None):
        self.service = service
        self.stale = stale


class _TokenReply:
    """Coordinator → worker: the token, or the error (class name, message) that prevented it."""

    def __init__(self, service: str, token: AccessToken | None, error: tuple[str, str] | None):
        self.service = service
        self.token = token
        self.error = error


class _PipeChannel:
    """A worker's channel to the coordinator over its pipe; job messages sent ahead meanwhile are kept."""

    def __init__(self, conn: Connection, ahead: collections.deque):
        self.conn = conn
        self.ahead = ahead

    def request(self, service: str, stale: str | None) -> AccessToken:
        self.conn.send(_TokenRequest(service, stale))
        while True:
            message = self.conn.recv()
            if isinstance(message, _TokenReply):
                if message.token is None:
                    raise_reply(*(message.error or ("AuthError", f"{service}: no token")))
                assert message.token is not None
                return message.token
            self.ahead.append(message)


class _DirectChannel:
    """The channel of a job run in the coordinator's own process (InlineExecutor)."""

    def __init__(self, executor: Any):
        self.executor = executor

    def request(self, service: str, stale: str | None) -> AccessToken:
        if self.executor.token_source is None:
            raise AuthError(f"{service}: no token source: the job cannot get a token")
        return self.executor.token_source(service, stale)


def _worker_main(conn: Connection, settings: Settings, parent: int | None = None, progress: Any = None) -> None:
    """Loop of a worker process: receive (path, job), send the JobResult; stop on None or EOF.

    Ctrl-C is the coordinator's to handle (it stops the workers itself), so workers ignore SIGINT.
    With a `progress` queue (the coordinator draws on a terminal), downloads report to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _die_with_parent(parent)
    cache: dict[str, Any] = {}
    ahead: collections.deque = collections.deque()
    channel = _PipeChannel(conn, ahead)
    with Clients() as clients:  # the process's: what its jobs learn about servers
        while True:
            try:
                message = ahead.popleft() if ahead else conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            if isinstance(message, _TokenReply):  # an answer that came too late for its request
                continue
            path, job = message
            result = call_worker(path, job, settings, cache, channel, progress, clients)
            try:
                conn.send(result)
            except (BrokenPipeError, OSError):
                return
            except Exception as exc:  # an unpicklable result
                conn.send(JobResult("error", f"worker {path} returned a result that cannot be sent back: {exc}"))


class _Proc:
    def __init__(self, ctx: Any, settings: Settings, progress: Any = None):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, settings, os.getpid(), progress), daemon=True)
        self.process.start()
        child.close()
        self.queue: collections.deque[tuple[Future[JobResult], tuple[str, Any]]] = collections.deque()
        self.dead = False  # its pipe broke: nothing more is sent to it until it is replaced


class LocalExecutor:
    """A local pool of worker processes with per-process pipes (see the module docstring)."""

    def __init__(self, workers: int = 0, settings: Settings | None = None, prefetch: int = 2,
                 start_method: str = "spawn", progress_queue: Any = None):
        self.capacity = workers if workers > 0 else (os.cpu_count() or 1)
        self.settings = settings or Settings()
        self.token_source: TokenSourceFn | None = None
        self.prefetch = max(prefetch, 1)
        self._ctx = multiprocessing.get_context(start_method)
        self._pending: collections.deque[tuple[Future[JobResult], tuple[str, Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._woken = False  # a wake-up byte is in the pipe and the dispatcher has not looked at the queue yet
        self._closed = False
        self._abort = False
        self._broken = ""
        self.progress_queue = progress_queue  # downloads report there (providers.progress.RunDisplay)
        self._procs = [_Proc(self._ctx, self.settings, progress_queue) for _ in range(self.capacity)]
        self.deaths = 0
        self._thread = threading.Thread(target=self._loop, name="ingester-executor", daemon=True)
        self._thread.start()

    def submit(self, worker: str, job: Any) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        with self._lock:
            if self._broken:
                raise ExecutorBroken(self._broken)
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._pending.append((future, (worker, job)))
            wake, self._woken = not self._woken, True
        if wake:  # one byte wakes the dispatcher for every job submitted until it looks at the queue
            self._wake_w.send_bytes(b"x")
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool; with `wait` the jobs in flight finish first, else their processes are killed
        (an interrupted run: the coordinator has already put their jobs back in the queue)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not wait:
            self._abort = True
            for proc in self._procs:
                proc.process.kill()
        self._wake_w.send_bytes(b"x")
        self._thread.join(timeout=30)
        for proc in self._procs:
            try:
                proc.conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.process.join(timeout=5)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(timeout=5)
            proc.conn.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- dispatcher thread ----------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Send queued jobs to the processes with room. A job is pickled and sent outside the lock, so
        that the caller's `submit` never waits for it."""
        if self._abort:
            return
        with self._lock:
            self._woken = False
        for proc in self._procs:
            while not proc.dead and len(proc.queue) < self.prefetch:
                with self._lock:
                    if not self._pending:
                        return
                    future, message = self._pending.popleft()
                if not future.running() and not future.set_running_or_notify_cancel():
                    continue  # cancelled before it started (re-queued futures are already running)
                try:
                    data = ForkingPickler.dumps(message)
                except Exception as exc:  # an unpicklable job: its own fault, and it fails alone
                    future.set_result(JobResult("error", f"cannot send the job to a worker process: {exc}"))
                    continue
                try:
                    proc.conn.send_bytes(data)
                except OSError:
                    # a process that died an instant ago (its death not seen yet): not the job's
                    # fault. The job goes back to the head of the queue; the process is replaced
                    # when its death is seen (and charges only the job it was running).
                    with self._lock:
                        self._pending.appendleft((future, message))
                    proc.dead = True
                    proc.process.kill()  # a broken pipe cannot carry results any more
                    break
                proc.queue.append((future, message))

    def _answer(self, proc: _Proc, request: _TokenRequest) -> None:
        """A worker asks for a fresh token: answer from the coordinator's token source."""
        try:
            if self.token_source is None:
                raise AuthError(f"{request.service}: no token source: the job cannot get a token")
            reply = _TokenReply(request.service, self.token_source(request.service, request.stale), None)
        except Exception as exc:  # noqa: BLE001 - sent to the worker, which raises it in its job
            reply = _TokenReply(request.service, None, error_reply(exc))
        try:
            proc.conn.send(reply)
        except OSError:  # the process died meanwhile: _replace handles its job
            pass

    def _replace(self, index: int) -> None:
        proc = self._procs[index]
        proc.process.join(timeout=1)
        if proc.process.is_alive():  # its pipe closed but it lingers: it can never report again
            proc.process.kill()
            proc.process.join(timeout=5)
        code = proc.process.exitcode
        with self._lock:
            closing = self._closed
        if closing:  # killed by shutdown(wait=False): nothing is restarted
            while proc.queue:
                future, _ = proc.queue.popleft()
                future.set_result(JobResult("error", "executor shut down while the job ran"))
            return
        self.deaths += 1
        if proc.queue:
            future, (path, _job) = proc.queue.popleft()
            future.set_result(JobResult("temporary", f"the worker process running {path} died (exit code {code})"))
        with self._lock:  # the jobs queued behind it never started: run them elsewhere
            for item in reversed(proc.queue):
                self._pending.appendleft(item)
        proc.conn.close()
        self._procs[index] = _Proc(self._ctx, self.settings, self.progress_queue)

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # never leave a caller waiting on a future forever
            with self._lock:
                self._closed = True
                self._broken = f"the executor failed: {type(exc).__name__}: {exc}"
                items = list(self._pending) + [item for p in self._procs for item in p.queue]
                self._pending.clear()
                for p in self._procs:
                    p.queue.clear()
            for future, _ in items:  # not the jobs' fault: the caller re-queues them
                if not future.done():
                    future.set_exception(ExecutorBroken(self._broken))

    def _serve(self) -> None:
        while True:
            self._dispatch()
            with self._lock:
                closing = self._closed
            busy = any(p.queue for p in self._procs)
            if closing and not busy:
                break
            waitables: list[Any] = [self._wake_r]
            for proc in self._procs:
                waitables.append(proc.conn)
                waitables.append(proc.process.sentinel)
            ready = wait(waitables, timeout=1.0)
            if self._wake_r in ready:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
            for i, proc in enumerate(list(self._procs)):
                if proc.conn in ready:
                    try:
                        while proc.conn.poll():
                            result = proc.conn.recv()
                            if isinstance(result, _TokenRequest):
                                self._answer(proc, result)
                                continue
                            future, _ = proc.queue.popleft()
                            future.set_result(result)
                    except (EOFError, OSError):
                        self._replace(i)
                        continue
                if proc.process.sentinel in ready and not proc.process.is_alive():
                    self._replace(i)
        with self._lock:
            for future, _ in self._pending:
                future.set_result(JobResult("error", "executor shut down before the job ran"))
            self._pending.clear()


class InlineExecutor:
    """Runs workers in the coordinator's process, one at a time (debugging and small tests)."""

    capacity = 1

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._cache: dict[str, Any] = {}
        self._clients = Clients()  # as a worker process's: lives until shutdown
        self.token_source: TokenSourceFn | None = None

    def submit(self, worker: str, job: Any) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        future.set_result(call_worker(worker, job, self.settings, self._cache, _DirectChannel(self),
                                      clients=self._clients))
        return future

    def shutdown(self, wait: bool = True) -> None:
        self._clients.close()
