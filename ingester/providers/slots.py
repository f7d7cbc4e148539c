"""A cap on concurrent downloads that holds across threads AND worker processes: N lock files in a
slot directory under the work folder; a download holds an exclusive `flock` on one of them.

`flock` locks belong to an open file description, so two threads or two processes that each open a
slot file exclude each other, and the kernel drops a lock when its holder dies (no stale slots after
`kill -9`).

On a Dask cluster the workers share no disk: the Dask back-end makes the slots of the jobs it runs
cluster-wide (`shared_slots`: a `distributed.Semaphore` per slot directory, named by its path under
`.slots/`)."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path

SlotFactory = Callable[[str, int], AbstractContextManager]
_shared: ContextVar[SlotFactory | None] = ContextVar("ingester_shared_slots", default=None)


@contextmanager
def shared_slots(factory: SlotFactory) -> Iterator[None]:
    """Within the block, `slot` holds `factory(name, limit)` instead of a lock file (the name: the slot
    directory's path under `.slots/`, e.g. `cdse`)."""
    token = _shared.set(factory)
    try:
        yield
    finally:
        _shared.reset(token)


@contextmanager
def slot(directory: str | Path, limit: int, *, poll: float = 0.05, sleep=time.sleep) -> Iterator[int]:
    """Hold one of `limit` slots of `directory` for the duration of the block; yields its number."""
    if limit <= 0:
        yield -1
        return
    factory = _shared.get()
    if factory is not None:
        with factory(Path(directory).as_posix().rpartition("/.slots/")[2] or Path(directory).name, limit):
            yield -1
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    order = list(range(limit))
    while True:
        random.shuffle(order)  # spread waiters over the slots
        for number in order:
            fd = os.open(directory / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield number
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        sleep(poll)
