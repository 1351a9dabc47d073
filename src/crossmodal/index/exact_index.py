"""The exact vector index: a numpy scan over a float32 matrix, the oracle for the FAISS kinds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError
from crossmodal.index.vector_common import (
    BoolArray,
    FloatArray,
    IdArray,
    SlotTable,
    check_ids,
    check_k,
    check_pairs,
    check_vectors,
    empty_result,
    labels_of,
    unique_allowed_ids,
)
from crossmodal.index.vector_file import SectionSource, array_source, header_dict, write_index_file

__all__ = ["ExactIndex"]

_CHUNK_FLOATS = 1 << 24  # score-matrix floats per chunk in the exact scans (64 MiB)


# --------------------------------------------------------------------------------------------
# top-k


def _top_k(scores: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
    """The best ``min(k, M)`` columns of each row of ``scores`` (Q, M), best first."""
    Q, M = scores.shape
    kk = min(k, M)
    if kk < M:
        cols = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        cols = np.broadcast_to(np.arange(M), (Q, M))
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def _merge_top_k(
    best: tuple[FloatArray, IdArray], scores: FloatArray, rows: IdArray, k: int
) -> tuple[FloatArray, IdArray]:
    """``best`` (Q, k) updated with a new block of ``scores`` (Q, c) over ``rows`` (c,)."""
    vals, cols = _top_k(scores, k)
    merged_s = np.concatenate([best[0], vals], axis=1)
    merged_r = np.concatenate([best[1], rows[cols]], axis=1)
    vals, cols = _top_k(merged_s, k)
    return vals, np.take_along_axis(merged_r, cols, axis=1)


# --------------------------------------------------------------------------------------------
# exact numpy index


class ExactIndex:
    """Brute-force numpy index: a contiguous float32 matrix and its ids. Exact; the oracle.

    Removal compacts the matrix at once, so ``needs_rebuild`` is always false.
    """

    kind = "exact"

    def __init__(self, dim: int, *, generation: int = 0) -> None:
        if dim < 1:
            raise ConfigError(f"dim: expected a positive vector width, got {dim}")
        self._dim = dim
        self._vectors: FloatArray = np.zeros((0, dim), np.float32)  # (capacity, D)
        self._table = SlotTable()
        self.generation = generation  # set by load_vector_index and save

    @property
    def dim(self) -> int:
        """Width of the stored vectors."""
        return self._dim

    @property
    def needs_rebuild(self) -> bool:
        """Always false: removal compacts eagerly."""
        return False

    def __len__(self) -> int:
        return self._table.n_live

    def ids(self) -> IdArray:
        """The stored ids, in storage order."""
        return self._table.labels.copy()

    def vectors(self) -> FloatArray:
        """The stored vectors (N, D), in storage order (a view; do not modify)."""
        return self._vectors[: len(self)]

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Store ``vectors`` under ``ids``; an id already stored is replaced."""
        id_arr, vec = check_pairs(ids, vectors, self._dim)
        if len(id_arr) == 0:
            return
        self.remove(id_arr)
        n, m = len(self), len(id_arr)
        if n + m > len(self._vectors):  # grow by doubling: amortised O(1) per added row
            grown = np.empty((max(n + m, 2 * len(self._vectors), 1024), self._dim), np.float32)
            grown[:n] = self._vectors[:n]
            self._vectors = grown
        self._vectors[n : n + m] = vec
        self._table.append(id_arr)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (unknown ones are ignored); return how many were removed."""
        slots = self._table.slots_of(np.unique(check_ids(ids, "ids")))
        if len(slots) == 0:
            return 0
        n = len(self)
        keep = np.ones(n, bool)
        keep[slots] = False
        self._vectors[: n - len(slots)] = self._vectors[:n][keep]
        self._table.compact(keep)
        return len(slots)

    def search(
        self, queries: npt.ArrayLike, k: int, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Best ``k`` ids per query, exactly (see :meth:`VectorIndex.search`)."""
        q = check_vectors(queries, self._dim, "queries")
        k = check_k(k)
        n = len(self)
        rows: IdArray | None = None  # the allowed rows, gathered; None: every row, in place
        keep: BoolArray | None = None  # the allowed rows as a mask over every row
        if allowed is not None:
            rows = self._table.slots_of(unique_allowed_ids(allowed))
            if 4 * len(rows) >= n:  # most rows allowed: scoring all beats gathering
                keep = np.zeros(n, bool)
                keep[rows] = True
                rows = None
        best = empty_result(len(q), k)
        total = n if rows is None else len(rows)
        step = max(1, _CHUNK_FLOATS // max(1, len(q)))  # score block under 64 MiB
        for start in range(0, total, step):
            stop = min(total, start + step)
            if rows is None:
                chunk = np.arange(start, stop, dtype=np.int64)
                scores = q @ self._vectors[start:stop].T  # (Q, c)
                if keep is not None:
                    scores[:, ~keep[start:stop]] = -np.inf
            else:
                chunk = rows[start:stop]
                scores = q @ self._vectors[chunk].T  # (Q, c)
            best = _merge_top_k(best, scores, chunk, k)
        found = np.where(np.isneginf(best[0]), -1, best[1])  # masked rows that made the top k
        return best[0], labels_of(self._table, found)

    def save(self, path: str | os.PathLike[str], *, generation: int = 0) -> Path:
        """Write ids and vectors as raw little-endian arrays (no pickle), atomically."""
        n = len(self)
        header = header_dict("exact", self._dim, n, 0, generation, None)
        sections: list[tuple[str, SectionSource]] = [
            ("labels", array_source(self._table.labels, "<i8")),
            ("vectors", array_source(self._vectors[:n], "<f4")),
        ]
        out = write_index_file(path, header, sections)
        self.generation = generation
        return out
