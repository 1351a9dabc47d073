"""The index database's schema and its rows: migrations, file, vector and problem records,
and the two conversions at the SQL boundary (a row to a record; roots to a ``WHERE``), where
paths take their stored text form (:mod:`crossmodal.paths`).

Schema changes go through :data:`MIGRATIONS`: version ``n`` is reached from ``n - 1`` by the
``n``-th script, which :class:`crossmodal.index.store.Store` runs in one transaction on open.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crossmodal.paths import from_text, to_text

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STILL",
    "FileRecord",
    "Problem",
    "VectorRecord",
    "file_record",
    "under_roots",
]

STILL = -1.0  # the frame time stored for a still image

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        root TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'video')),
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash TEXT NOT NULL,
        caption TEXT,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX files_hash ON files (hash);
    CREATE INDEX files_root ON files (root);
    CREATE TABLE vectors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL,
        time REAL NOT NULL DEFAULT -1,
        vector BLOB NOT NULL,
        UNIQUE (hash, time)
    );
    CREATE TABLE problems (
        path TEXT PRIMARY KEY,
        root TEXT NOT NULL,
        reason TEXT NOT NULL,
        size INTEGER,
        mtime_ns INTEGER,
        seen_at REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
DB_NAME = "index.sqlite"


@dataclass(frozen=True)
class FileRecord:
    """One indexed file."""

    path: str
    root: str
    kind: str  # "image" or "video"
    size: int
    mtime_ns: int
    hash: str
    caption: str | None = None


@dataclass(frozen=True)
class VectorRecord:
    """One embedded picture: a still (``time`` is ``None``) or a video frame."""

    hash: str
    time: float | None
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Problem:
    """A file that could not be indexed, and why."""

    path: str
    root: str
    reason: str


def file_record(row: Sequence[object]) -> FileRecord:
    """A ``files`` row (path, root, kind, size, mtime_ns, hash, caption) as a record."""
    path, root, kind, size, mtime_ns, digest, caption = row
    return FileRecord(
        from_text(str(path)),
        from_text(str(root)),
        str(kind),
        int(str(size)),
        int(str(mtime_ns)),
        str(digest),
        None if caption is None else str(caption),
    )


def under_roots(roots: Sequence[str]) -> tuple[str, tuple[object, ...]]:
    """``WHERE`` text matching rows found through ``roots``, or whose path lies under one."""
    if not roots:
        return "1", ()
    clauses = []
    params: list[object] = []
    for root in roots:
        root = to_text(root)
        prefix = root.rstrip(os.sep) + os.sep
        clauses.append("(root = ? OR path = ? OR substr(path, 1, ?) = ?)")
        params += [root, root, len(prefix), prefix]
    return " OR ".join(clauses), tuple(params)
