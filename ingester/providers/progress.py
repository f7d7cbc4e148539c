"""Download progress (rich bars on stderr, only when stderr is a terminal): one bar per download with
its bytes, throughput and time remaining, and a total for the run.

Downloads run in the worker processes of the pool, which must not draw (they would draw over each
other): a job run by an executor that was given the coordinator's queue finds it in its context
(`job_context.current().progress_events`) and sends its transfers' progress there (`QueueProgress`);
the coordinator's `RunDisplay` draws them on its `Bars`. Without a terminal there is no queue and no
display at all."""

from __future__ import annotations

import itertools
import os
import queue as queues
import sys
import threading
import time
from typing import Any

from ingester.http.transfer import TransferProgress

_keys = itertools.count()  # unique keys of a process's transfers (only ever compared, never reset)


class Bars:
    """The bars of one display: a rich Progress on `console` (stderr by default) with its run-total task,
    started on first use and stopped by `stop()` (the last frame stays on the terminal)."""

    def __init__(self, console: Any = None):
        self.console = console
        self._lock = threading.Lock()
        self._progress: Any = None
        self._total: Any = None

    def get(self) -> tuple[Any, Any]:
        """(rich Progress, run-total task id)."""
        with self._lock:
            if self._progress is None:
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
                                    console=self.console or Console(stderr=True), transient=False)
                progress.start()
                self._progress = progress
                self._total = progress.add_task("run total", total=0)
            return self._progress, self._total

    def stop(self) -> None:
        with self._lock:
            progress, self._progress, self._total = self._progress, None, None
        if progress is not None:
            progress.stop()


class RichProgress(TransferProgress):
    """One download's bar on `bars`; every byte also advances the run total. Without `bars`, the
    download has bars of its own, stopped by `close()`."""

    def __init__(self, bars: Bars | None = None) -> None:
        self.owned = bars is None
        self.bars = bars or Bars()
        self.task: Any = None
        self.done = 0

    def start(self, name: str, total: int | None, done: int) -> None:
        progress, run = self.bars.get()
        self.task = progress.add_task(name[:48], total=total, completed=done)
        self.done = done
        if total:
            progress.update(run, total=(progress.tasks[run].total or 0) + total, advance=done)

    def advance(self, nbytes: int) -> None:
        progress, run = self.bars.get()
        self.done += nbytes
        progress.update(self.task, advance=nbytes)
        progress.update(run, advance=nbytes)

    def restart(self) -> None:
        if self.task is not None:
            progress, run = self.bars.get()
            progress.update(run, advance=-self.done)
            progress.update(self.task, completed=0)
            self.done = 0

    def finish(self) -> None:
        if self.task is not None:
            progress, _ = self.bars.get()
            progress.update(self.task, visible=False)

    def close(self) -> None:
        if self.owned:
            self.bars.stop()


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
        self.drawn = Bars(draw_on)
        self.bars: dict[str, RichProgress] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="ingester-progress", daemon=True)

    def __enter__(self) -> RunDisplay:
        self.drawn.get()
        self._thread.start()
        return self

    def status(self, text: str) -> None:
        progress, run = self.drawn.get()
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
            bar = self.bars.get(key) or RichProgress(self.drawn)
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
        self._stop.set()
        self._thread.join(timeout=5)
        self.drawn.stop()
        self.queue.close()
        self.queue.cancel_join_thread()


def default_progress(events: Any = None) -> TransferProgress | None:
    """Bars only for people at a terminal (cron jobs and pipes get none), drawn by the main process:
    a job run by a worker process forwards its progress to the coordinator's `events` queue (from the
    job's context when not given). The caller closes what it gets (`close()`)."""
    import multiprocessing

    if events is None:
        from ingester.job_context import current

        events = current().progress_events
    if events is not None:
        return QueueProgress(events)
    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return RichProgress() if interactive and multiprocessing.parent_process() is None else None
