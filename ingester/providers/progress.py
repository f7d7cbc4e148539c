"""Download progress bars (rich, on stderr, only when stderr is a terminal): one bar per download
and a total for the run (all downloads of this process)."""

from __future__ import annotations

import sys
import threading
from typing import Any

from ingester.http import TransferProgress

_lock = threading.Lock()
_shared: dict[str, Any] = {}
console: Any = None  # a rich Console to draw on (default: stderr)


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


def default_progress() -> TransferProgress | None:
    """Bars only for people at a terminal (cron jobs and pipes get none), and only in the main
    process: worker processes of a pool would draw over each other."""
    import multiprocessing

    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return RichProgress() if interactive and multiprocessing.parent_process() is None else None
