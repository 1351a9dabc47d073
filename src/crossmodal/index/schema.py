"""The index database's schema and its rows: migrations, file, vector and problem records.

Schema changes go through :data:`MIGRATIONS`: version ``n`` is reached from ``n - 1`` by the
``n``-th script, which :class:`crossmodal.index.store.Store` runs in one transaction on open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STILL",
    "FileRecord",
    "Problem",
    "VectorRecord",
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
