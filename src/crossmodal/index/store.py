"""The index's source of truth: one SQLite database (WAL) of files, vectors and problems.

    files     one row per indexed path: root, kind, size, mtime_ns, content hash, caption
    vectors   one row per embedded picture: content hash, frame time (-1 for a still), the
              float32 vector; shared by every file with that content (duplicates, renames)
    problems  files that could not be indexed, with the reason (``index --report``)
    meta      schema version, model spec, vector dimension, generation

Every change happens in a transaction, so a killed writer leaves the database as of its last
commit: files are only recorded together with their vectors, and re-running the indexer
finishes the job. ``generation`` grows with every commit that changes vectors; a derived
vector index (FAISS, or the exact matrix) saved with the generation it was built at is
known to be stale when the numbers differ, and is brought up to date from here
(:mod:`crossmodal.index.sync`: vector ids are never reused and vectors never change).

Schema changes go through :data:`~crossmodal.index.schema.MIGRATIONS` (with the row
records, in :mod:`crossmodal.index.schema`), run in one transaction on open. A database
newer than this code is refused.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError, InputError
from crossmodal.index.schema import (
    DB_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    STILL,
    FileRecord,
    Problem,
    VectorRecord,
    file_record,
    under_roots,
)
from crossmodal.paths import from_text, printable, to_text

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "FileRecord",
    "Problem",
    "Store",
    "VectorRecord",
]


class Store:
    """The SQLite database of one index directory (one connection; one thread).

    Open several for several readers; one writer at a time (the indexer holds
    :func:`crossmodal.index.lock.writer_lock`).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, create: bool = True, threads: bool = False
    ) -> None:
        """Open (and with ``create``, make) ``directory/index.sqlite``, migrating it if older.

        With ``threads=True`` the connection may be used from any thread; the caller must
        then serialise the calls (the HTTP service holds one lock around its index).

        Raises:
            InputError: No index there (``create=False``), or the file is not a database.
            ConfigError: The database was written by a newer crossmodal.
        """
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if not create and not self.path.is_file():
            raise InputError(
                f"{self.directory}: no crossmodal index here; build one with "
                f"`crossmodal index PATH --db {self.directory}`"
            )
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(
                f"{self.directory}: a file, not an index folder; give --db a folder (new or "
                "holding a crossmodal index)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=not threads
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL-safe
            self.db.execute("PRAGMA foreign_keys=ON")
            self.created = self._version() == 0  # a new database (or an empty file)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{self.path}: not a readable crossmodal index ({exc}); "
                "move it away and index again"
            ) from exc

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ schema

    def _migrate(self) -> None:
        for target in range(1, SCHEMA_VERSION + 1):
            if self._version() >= target:
                continue
            with self.transaction() as db:  # re-checked under the write lock: one migrator
                if self._version() >= target:
                    continue
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
        if self._version() > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} has schema version {self._version()}, newer than this "
                f"crossmodal ({SCHEMA_VERSION}); upgrade crossmodal"
            )

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or ``None``."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (inside or outside a transaction)."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def generation(self) -> int:
        """How many committed changes the vectors have seen (0: none yet)."""
        return int(self.get_meta("generation") or 0)

    def _bump_generation(self) -> None:
        self.set_meta("generation", str(self.generation + 1))

    # ------------------------------------------------------------------ files

    def files_under(self, roots: Sequence[str]) -> dict[str, FileRecord]:
        """Indexed files under (or found through) ``roots`` — all files when empty — by path."""
        sql, params = under_roots(roots)
        rows = self.db.execute(
            f"SELECT path, root, kind, size, mtime_ns, hash, caption FROM files WHERE {sql}",
            params,
        )
        return {from_text(row[0]): file_record(row) for row in rows}

    def roots(self) -> list[str]:
        """The roots files were indexed through (folders, files, manifests), sorted."""
        rows = self.db.execute("SELECT DISTINCT root FROM files ORDER BY root")
        return [from_text(str(row[0])) for row in rows]

    def files_with_hashes(self, hashes: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        """``{hash: [(file id, path), …]}`` for the given content hashes."""
        out: dict[str, list[tuple[int, str]]] = {}
        wanted = list(set(hashes))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for file_id, path, digest in self.db.execute(
                f"SELECT id, path, hash FROM files WHERE hash IN ({marks}) ORDER BY path", chunk
            ):
                out.setdefault(digest, []).append((file_id, from_text(path)))
        return out

    def file_rows(self, ids: Iterable[int]) -> dict[int, sqlite3.Row | tuple[object, ...]]:
        """Full ``files`` rows by id."""
        out: dict[int, sqlite3.Row | tuple[object, ...]] = {}
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT id, path, root, kind, size, mtime_ns, hash, caption FROM files "
                f"WHERE id IN ({marks})",
                chunk,
            ):
                out[int(row[0])] = (row[0], from_text(row[1]), from_text(row[2]), *row[3:])
        return out

    def file_by_id(self, file_id: int) -> tuple[str, str] | None:
        """``(path, root)`` of the file with this id, or None."""
        row = self.file_rows([file_id]).get(file_id)
        return None if row is None else (str(row[1]), str(row[2]))

    def caption_of(self, path: str) -> str | None:
        """The caption an indexed file came with (from a manifest), or None."""
        row = self.db.execute(
            "SELECT caption FROM files WHERE path = ?", (to_text(path),)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def file_ids(self, paths: Iterable[str]) -> dict[str, int]:
        """Ids of the given indexed paths (paths not indexed are left out)."""
        out: dict[str, int] = {}
        wanted = list(paths)
        for start in range(0, len(wanted), 500):
            chunk = [to_text(p) for p in wanted[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT path, id FROM files WHERE path IN ({marks})"
            out.update((from_text(path), int(i)) for path, i in self.db.execute(query, chunk))
        return out

    def has_vectors(self, digest: str) -> bool:
        """Whether pictures of this content are already embedded."""
        row = self.db.execute("SELECT 1 FROM vectors WHERE hash = ? LIMIT 1", (digest,))
        return row.fetchone() is not None

    def put_files(self, files: Sequence[FileRecord], vectors: Sequence[VectorRecord]) -> None:
        """Record ``files`` and the new ``vectors`` of their content in one transaction.

        A file row replaces any earlier row of the same path; its problem entry is cleared.
        Vectors whose (hash, time) is already stored are kept as they are.
        """
        now = time.time()
        with self.transaction() as db:
            if vectors:
                db.executemany(
                    "INSERT OR IGNORE INTO vectors (hash, time, vector) VALUES (?, ?, ?)",
                    [
                        (
                            v.hash,
                            STILL if v.time is None else float(v.time),
                            np.ascontiguousarray(v.vector, dtype=np.float32).tobytes(),
                        )
                        for v in vectors
                    ],
                )
            db.executemany(
                "INSERT INTO files (path, root, kind, size, mtime_ns, hash, caption, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "root = excluded.root, kind = excluded.kind, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, hash = excluded.hash, "
                "caption = excluded.caption, indexed_at = excluded.indexed_at",
                [
                    (to_text(f.path), to_text(f.root), f.kind, f.size, f.mtime_ns, f.hash)
                    + (f.caption, now)
                    for f in files
                ],
            )
            db.executemany(
                "DELETE FROM problems WHERE path = ?", [(to_text(f.path),) for f in files]
            )
            removed = self._drop_orphan_vectors(db)
            if vectors or removed:
                self._bump_generation()

    def remove_files(self, paths: Sequence[str]) -> int:
        """Forget ``paths`` (and vectors no other file shares); returns the vectors removed."""
        with self.transaction() as db:
            stored = [(to_text(p),) for p in paths]
            db.executemany("DELETE FROM files WHERE path = ?", stored)
            db.executemany("DELETE FROM problems WHERE path = ?", stored)
            removed = self._drop_orphan_vectors(db)
            if removed:
                self._bump_generation()
        return removed

    def _drop_orphan_vectors(self, db: sqlite3.Connection) -> int:
        cursor = db.execute("DELETE FROM vectors WHERE hash NOT IN (SELECT hash FROM files)")
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ problems

    def put_problems(self, problems: Sequence[tuple[Problem, int | None, int | None]]) -> None:
        """Record files that could not be indexed: ``(problem, size, mtime_ns)``.

        A problem file keeps no stale ``files`` row: what was indexed under its path before
        it broke is removed, so search never returns a file the index could not read.
        """
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO problems (path, root, reason, size, mtime_ns, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "root = excluded.root, reason = excluded.reason, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, seen_at = excluded.seen_at",
                [
                    (to_text(p.path), to_text(p.root), printable(p.reason), size, mtime, now)
                    for p, size, mtime in problems
                ],
            )
            db.executemany(
                "DELETE FROM files WHERE path = ?", [(to_text(p.path),) for p, _, _ in problems]
            )
            if self._drop_orphan_vectors(db):
                self._bump_generation()

    def problem_stamps(self, roots: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        """``{path: (size, mtime_ns)}`` of the recorded problems under ``roots``."""
        sql, params = under_roots(roots)
        rows = self.db.execute(f"SELECT path, size, mtime_ns FROM problems WHERE {sql}", params)
        return {from_text(row[0]): (row[1], row[2]) for row in rows}

    def problems(self) -> list[Problem]:
        """Every recorded problem, by path."""
        rows = self.db.execute("SELECT path, root, reason FROM problems ORDER BY path")
        return [Problem(from_text(path), from_text(root), reason) for path, root, reason in rows]

    def forget_problems(self, paths: Sequence[str]) -> None:
        """Drop problem entries (files that are gone)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM problems WHERE path = ?", [(to_text(p),) for p in paths])

    # ------------------------------------------------------------------ vectors

    def vector_count(self) -> int:
        """Number of stored vectors."""
        return int(self.db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def file_count(self) -> int:
        """Number of indexed files."""
        return int(self.db.execute("SELECT count(*) FROM files").fetchone()[0])

    def all_vectors(self, dim: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every stored vector: ``(ids (N,), vectors (N, dim))``, by id."""
        n = self.vector_count()
        ids = np.empty(n, dtype=np.int64)
        out = np.empty((n, dim), dtype=np.float32)
        i = 0
        for vid, blob in self.db.execute("SELECT id, vector FROM vectors ORDER BY id"):
            if i == n:
                break  # rows added since the count (a concurrent writer): next time
            ids[i] = vid
            out[i] = np.frombuffer(blob, dtype=np.float32, count=dim)
            i += 1
        return ids[:i], out[:i]

    def vector_ids(self) -> npt.NDArray[np.int64]:
        """Every stored vector's id, ascending."""
        rows = self.db.execute("SELECT id FROM vectors ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors_by_id(
        self, ids: Sequence[int] | npt.NDArray[np.int64], dim: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The stored vectors of ``ids``: ``(ids found (M,), vectors (M, dim))``, by id."""
        wanted = sorted({int(i) for i in ids})
        found_ids = np.empty(len(wanted), dtype=np.int64)
        out = np.empty((len(wanted), dim), dtype=np.float32)
        found = 0
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for vid, blob in self.db.execute(
                f"SELECT id, vector FROM vectors WHERE id IN ({marks}) ORDER BY id", chunk
            ):
                found_ids[found] = vid
                out[found] = np.frombuffer(blob, dtype=np.float32, count=dim)
                found += 1
        return found_ids[:found], out[:found]

    def sample_vectors(self, dim: int, n: int) -> npt.NDArray[np.float32]:
        """At most ``n`` stored vectors, evenly spaced by id (all of them when fewer)."""
        ids = self.vector_ids()
        if len(ids) > n:
            ids = ids[np.linspace(0, len(ids) - 1, n).astype(np.int64)]
        return self.vectors_by_id(ids, dim)[1]

    def vectors_for(self, ids: Iterable[int]) -> dict[int, tuple[str, float | None]]:
        """``{vector id: (hash, frame time or None)}``."""
        out: dict[int, tuple[str, float | None]] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for vid, digest, t in self.db.execute(
                f"SELECT id, hash, time FROM vectors WHERE id IN ({marks})", chunk
            ):
                out[int(vid)] = (str(digest), None if t == STILL else float(t))
        return out

    def vector_of_file(
        self, path: str, time: float | None = None
    ) -> npt.NDArray[np.float32] | None:
        """The stored vector of an indexed file: its first (for "more like this"), or the
        frame at ``time`` seconds of a video."""
        at, params = "", list[object]([to_text(path)])
        if time is not None:
            at, params = " AND v.time = ?", [to_text(path), float(time)]
        row = self.db.execute(
            "SELECT v.vector FROM files f JOIN vectors v ON v.hash = f.hash "
            f"WHERE f.path = ?{at} ORDER BY v.time LIMIT 1",
            params,
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def vector_ids_where(self, sql: str, params: Sequence[object]) -> npt.NDArray[np.int64]:
        """Ids of the vectors of files matching ``WHERE sql`` (over ``files`` as ``f``)."""
        rows = self.db.execute(
            f"SELECT DISTINCT v.id FROM files f JOIN vectors v ON v.hash = f.hash WHERE {sql}",
            tuple(params),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)
