"""One writer per index directory: an advisory ``flock`` that dies with its process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from crossmodal.errors import InputError

__all__ = ["writer_lock"]

LOCK_NAME = "writer.lock"


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold the index's writer lock, or raise at once if another process holds it.

    The kernel releases a ``flock`` when its process dies (even by SIGKILL), so a killed
    indexer never leaves the index locked. Readers take no lock (SQLite WAL lets them read
    while the writer commits).

    Raises:
        InputError: Another process is indexing into ``directory``.
    """
    import fcntl  # POSIX only; imported here so that importing the module works anywhere

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise InputError(
                f"{directory}: process {holder} is indexing into this index; wait for it to "
                "finish (searching meanwhile is fine)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
