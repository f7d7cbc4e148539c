"""A cap on concurrent downloads that holds across threads AND worker processes: N lock files in a
slot directory under the work folder; a download holds an exclusive `flock` on one of them.

`flock` locks belong to an open file description, so two threads or two processes that each open a
slot file exclude each other, and the kernel drops a lock when its holder dies (no stale slots after
`kill -9`)."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def slot(directory: str | Path, limit: int, *, poll: float = 0.05, sleep=time.sleep) -> Iterator[int]:
    """Hold one of `limit` slots of `directory` for the duration of the block; yields its number."""
    if limit <= 0:
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
