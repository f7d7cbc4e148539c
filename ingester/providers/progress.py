"""Download progress (rich bars on stderr, only when stderr is a terminal): one bar per download with
its bytes, throughput and time remaining, and a total for the run.

Downloads run in the worker processes of the pool, which must not draw (they would draw over each
other): a worker process given a queue by the executor (`forward_to`) sends its transfers' progress
there (`QueueProgress`), and the coordinator's `RunDisplay` draws them with `RichProgress`. Without a
terminal there is no queue and no display at all."""

from __future__ import annotations

import itertools
import os
import queue as queues
import sys
import threading
import time
from typing import Any

from ingester.http import TransferProgress

_lock = threading.Lock()
_shared: dict[str, Any] = {}
console: Any = None  # a rich Console to draw on (default: stderr)
_sink: Any = None  # in a worker process: the queue to the coordinator's display
_keys = itertools.count()


def _bars():
    """The process's rich Progress with its run-total task (started on first use)."""
    with _lock:
        if "progress" not in _shared:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), TimeRemainingColumn(),
                                console=console or Console(stderr=True), transient=False)
            progress.start()
            _shared["progress"] = progress
            _shared["total"] = progress.add_task("run total", total=0)
        return _shared["progress"], _shared["total"]


class RichProgress(TransferProgress):
    """One download's bar; every byte also advances the run total."""

    def __init__(self) -> None:
        self.task: Any = None
        self.done = 0

    def start(self, name: str, total: int | None, done: int) -> None:
        progress, run = _bars()
        self.task = progress.add_task(name[:48], total=total, completed=done)
        self.done = done
        if total:
            progress.update(run, total=(progress.tasks[run].total or 0) + total, advance=done)

    def advance(self, nbytes: int) -> None:
        progress, run = _bars()
        self.done += nbytes
        progress.update(self.task, advance=nbytes)
        progress.update(run, advance=nbytes)

    def restart(self) -> None:
        if self.task is not None:
            progress, run = _bars()
            progress.update(run, advance=-self.done)
            progress.update(self.task, completed=0)
            self.done = 0

    def finish(self) -> None:
        if self.task is not None:
            progress, _ = _bars()
            progress.update(self.task, visible=False)


def stop() -> None:
    """End the run's bars (the last frame stays on the terminal)."""
    with _lock:
        progress = _shared.pop("progress", None)
        _shared.pop("total", None)
    if progress is not None:
        progress.stop()


def forward_to(events: Any) -> None:
    """Called in a worker process: its downloads report to `events` (a multiprocessing queue read by
    the coordinator's RunDisplay until the pool has stopped, so that the last events are delivered)."""
    global _sink
    _sink = events


class QueueProgress(TransferProgress):
    """A worker process's transfer, sent as events `(kind, key, …)` to the coordinator: start (name,
    total, done), advance (bytes, at most every `every` seconds), restart, finish. Progress is never
    worth failing a download for: a full or closed queue drops events."""

    def __init__(self, events: Any, every: float = 0.2):
        self.events = events
        self.every = every
        self.key = f"{os.getpid()}-{next(_keys)}"
        self.pending = 0
        self.last = 0.0

    def _put(self, event: tuple) -> None:
        try:
            self.events.put_nowait(event)
        except (queues.Full, OSError, ValueError, AssertionError):
            pass

    def _flush(self) -> None:
        if self.pending:
            self._put(("advance", self.key, self.pending))
            self.pending = 0
        self.last = time.monotonic()

    def start(self, name: str, total: int | None, done: int) -> None:
        self.pending = 0
        self.last = time.monotonic()
        self._put(("start", self.key, name, total, done))

    def advance(self, nbytes: int) -> None:
        self.pending += nbytes
        if time.monotonic() - self.last >= self.every:
            self._flush()

    def restart(self) -> None:
        self.pending = 0
        self._put(("restart", self.key))

    def finish(self) -> None:
        self._flush()
        self._put(("finish", self.key))


class RunDisplay:
    """The coordinator's live display of a run on a terminal: the run-total line (whose text says how
    many jobs finished) and one bar per download running in any worker process (bytes, throughput,
    time remaining). `queue` goes to the executor; `status(text)` updates the run line."""

    def __init__(self, draw_on: Any):
        import multiprocessing

        self.console = draw_on
        self.queue = multiprocessing.get_context("spawn").Queue()
        self.bars: dict[str, RichProgress] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="ingester-progress", daemon=True)
        self._previous: Any = None

    def __enter__(self) -> RunDisplay:
        global console
        self._previous, console = console, self.console
        _bars()
        self._thread.start()
        return self

    def status(self, text: str) -> None:
        progress, run = _bars()
        progress.update(run, description=text)

    def _listen(self) -> None:
        while True:
            try:
                event = self.queue.get(timeout=0.1)
            except queues.Empty:
                if self._stop.is_set():
                    return
                continue
            except (OSError, EOFError, ValueError):
                return
            self._apply(event)

    def _apply(self, event: tuple) -> None:
        kind, key = event[0], event[1]
        if kind == "start":
            bar = self.bars.get(key) or RichProgress()
            if bar.task is None:
                bar.start(str(event[2]), event[3], int(event[4] or 0))
            self.bars[key] = bar
        elif key in self.bars:
            bar = self.bars[key]
            if kind == "advance":
                bar.advance(int(event[2]))
            elif kind == "restart":
                bar.restart()
            elif kind == "finish":
                bar.finish()
                del self.bars[key]

    def __exit__(self, *exc: object) -> None:
        global console
        self._stop.set()
        self._thread.join(timeout=5)
        stop()
        console = self._previous
        self.queue.close()
        self.queue.cancel_join_thread()


def default_progress() -> TransferProgress | None:
    """Bars only for people at a terminal (cron jobs and pipes get none), drawn by the main process:
    a worker process forwards its progress to the coordinator when the executor gave it a queue."""
    import multiprocessing

    if _sink is not None:
        return QueueProgress(_sink)
    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return RichProgress() if interactive and multiprocessing.parent_process() is None else None
