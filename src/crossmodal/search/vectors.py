"""Vector indexes for search: an exact numpy scan (the oracle) and FAISS flat, HNSW and IVF-PQ.

Every index maps arbitrary non-negative int64 ids (SQLite rowids) to unit vectors and answers
top-k inner-product queries (cosine, since the vectors are unit-normalised)::

    index = build_vector_index(ids, vectors)            # kind "auto": by size, see choose_kind
    scores, ids = index.search(queries, k=10, allowed=ids_in_folder)
    index.save("vectors.idx", generation=7)
    index, generation = load_vector_index("vectors.idx")

Kinds (see :data:`KINDS`):

* ``exact``: numpy brute force, no optional dependency; the reference the others are tested on.
* ``flat``: FAISS ``IndexFlatIP``; exact too.
* ``hnsw``: FAISS ``HNSW32`` graph over 8-bit scalar-quantised vectors (``HNSW32,SQ8``): about
  780 bytes a 512-d vector (512 of codes, 256 of level-0 links) instead of 2,048 + 256 with
  float storage, which is what keeps 1M vectors under the issue's 1.3 GB. Scores carry the SQ8
  error (about 1e-3).
* ``ivfpq``: FAISS IVF-PQ (``nlist`` about ``4 * sqrt(N)`` lists trained on a sample), its
  candidates re-ranked with SQ8 codes (``refine_k_factor``; 0 keeps PQ codes only, the compact
  option). Never chosen by ``auto``; on isotropic data it needs a large ``nprobe``.

``hnsw`` and ``ivfpq`` train on the vectors they are built with; asked for with fewer than
:data:`MIN_TRAIN_VECTORS`, they are built as ``flat`` (logged; ``index.kind`` says which).

Adding an id that is already stored replaces its vector. Removing is eager for ``exact`` and
``flat`` (the arrays are compacted) and lazy for ``hnsw`` and ``ivfpq``: FAISS cannot take a
node out of an HNSW graph, so removed vectors stay as tombstones that searches skip, and
``needs_rebuild`` turns true once they are more than a quarter of what is stored; rebuild with
:func:`build_vector_index` from the source vectors to compact.

``allowed`` restricts a search to some ids (filters by folder, date, type). The approximate
kinds still return ``k`` results whenever at least ``k`` allowed ids are stored. The allowed
slots become a FAISS ``IDSelectorBitmap``; a set of at most ``exact_scan_limit`` live ids is
scanned exactly (a pass over the flat array of stored codes that computes a distance only
for allowed slots), a larger one goes through the graph or lists with a search beam widened
by ``stored / allowed`` (``efSearch`` up to 1,024, ``nprobe`` up to ``nlist``), and any query
that still comes back short is answered by the exact scan. At 20,000 vectors the scan took
0.2 / 0.5 / 3.5 ms for 200 / 2,000 / 10,000 allowed ids and the widened HNSW about 5 ms,
hence ``exact_scan_limit=10_000``. Removed vectors are skipped the same way.

Defaults, measured on 512-d low-rank proxies of CLIP embeddings (rank 32 Gaussian latents
times a random matrix, 1% noise, unit norm; 2 shared CPU cores, single queries):

* ``auto`` picks ``exact`` up to :data:`AUTO_EXACT_MAX_SCALARS` (20,000 vectors of 512-d):
  the numpy scan took 2-3 ms a query at 10,000, 11 ms at 50,000 and 24 ms at 100,000, HNSW
  0.7 / 1.2 / 2.0 ms (``benchmarks/search_vectors.py``). Up to 20,000 the scan stays near
  5 ms, quick enough for an interactive search, and HNSW would save a few ms for a build of
  seconds and a recall under 1; past it the scan grows linearly and HNSW barely grows.
* ``ef_search=128``: HNSW32 over SQ8 at 100,000 vectors gave Recall@10 0.945 / 0.975 /
  0.985 / 0.993 against the exact scan at efSearch 64 / 96 / 128 / 192 (0.979 at 128 with
  other seeds in the benchmark; 96 is a quarter faster if 1M misses 2 ms; rank 64 latents are
  harder: 0.88 at 128, 0.96 at 256). ``ef_construction=40`` (the FAISS default): 100 gave
  +0.05 recall at equal efSearch for 2.8x the build time.
* ``ivfpq``: ``nprobe = nlist // 2`` and ``refine_k_factor=16`` gave Recall@10 0.97 at 3,000
  vectors (76 lists, PQ64x6); a quarter of the lists gave 0.84 whatever the re-ranking, and
  re-ranking 8 candidates a result 0.95. Isotropic latents have no clusters for IVF to use.

Saved files are one blob: the sections (the FAISS index through ``faiss.write_index``, or raw
little-endian arrays for ``exact``; never pickle), then a JSON footer (format, kind, dim,
count, tombstones, the caller's ``generation``, options, each section's offset, size and
CRC-32), its length and a magic tag. A truncated or corrupt file raises :class:`InputError`
naming the file; the checksums are verified before FAISS parses a byte.

Searches may run from several threads at once; ``add``, ``remove`` and ``save`` must not run
concurrently with anything else on the same index. One query is one core's work: on a busy
machine, multi-threaded BLAS (exact) or OpenMP (FAISS scans) add stalls of several ms to a
single query, so an interactive caller may want them at one thread (threadpoolctl).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from crossmodal.atomic import atomic_write
from crossmodal.errors import BackendUnavailableError, ConfigError, InputError

__all__ = [
    "AUTO_EXACT_MAX_SCALARS",
    "KINDS",
    "MIN_TRAIN_VECTORS",
    "ExactIndex",
    "FaissIndex",
    "VectorIndex",
    "VectorIndexHeader",
    "VectorIndexOptions",
    "build_vector_index",
    "choose_kind",
    "load_vector_index",
    "read_vector_index_header",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

KINDS = ("exact", "flat", "hnsw", "ivfpq")  # what build_vector_index accepts, besides "auto"
AUTO_EXACT_MAX_SCALARS = 20_000 * 512  # "auto" scans exactly up to this many stored floats
MIN_TRAIN_VECTORS = 1_000  # fewer than this and a trained kind is built as "flat"
FORMAT_VERSION = 1  # of the saved file; bumped on any incompatible change

_REBUILD_FRACTION = 0.25  # needs_rebuild once tombstones exceed this share of stored vectors
_MAX_FILTERED_EF = 1_024  # widest HNSW beam a filtered search uses before the exact scan
_CHUNK_FLOATS = 1 << 24  # score-matrix floats per chunk in the exact scans (64 MiB)
_MAGIC = b"CMVINDEX"
_TAIL = struct.Struct("<Q8s")  # footer length, magic
_IO_CHUNK = 1 << 20  # small enough that freed read buffers go back to the OS


# --------------------------------------------------------------------------------------------
# configuration and protocol


@dataclass(frozen=True)
class VectorIndexOptions:
    """Build and search settings of the FAISS kinds (``exact`` has none). 0 means automatic.

    Search-time fields (``ef_search``, ``nprobe``, ``refine_k_factor``, ``exact_scan_limit``)
    can be changed on a built index with ``index.options = replace(index.options, ...)``;
    the others only matter when building.
    """

    hnsw_m: int = 32  # HNSW links per node (level 0 keeps 2*M, 4 bytes each)
    ef_construction: int = 40  # HNSW build beam: better graph, slower build
    ef_search: int = 128  # HNSW search beam: Recall@10 0.985 at 100k (module docstring)
    nlist: int = 0  # IVF lists; 0: 4 * sqrt(N), at most one per 39 training vectors
    nprobe: int = 0  # IVF lists scanned per query; 0: nlist // 2 (isotropic data needs many)
    pq_m: int = 0  # PQ sub-quantisers; 0: dim // 8 (64 bytes a 512-d vector)
    pq_nbits: int = 0  # bits per PQ code; 0: 8, fewer when there is too little to train
    refine_k_factor: int = 16  # IVF-PQ re-ranks k * this candidates on SQ8 codes; 0: PQ only
    train_size: int = 100_000  # vectors sampled to train SQ8, IVF and PQ
    exact_scan_limit: int = 10_000  # allowed sets up to this size are scanned exactly
    seed: int = 0  # of the training sample

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(
                    f"VectorIndexOptions.{f.name}: expected a non-negative int, got {value!r}"
                )
        for name in ("hnsw_m", "ef_construction", "ef_search", "train_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"VectorIndexOptions.{name}: must be at least 1")
        if self.pq_nbits > 16:
            raise ConfigError(f"VectorIndexOptions.pq_nbits: at most 16, got {self.pq_nbits}")


@dataclass(frozen=True)
class VectorIndexHeader:
    """What a saved index file says about itself (read without loading the index)."""

    format: int  # FORMAT_VERSION of the writer
    kind: str  # one of KINDS
    dim: int  # vector width
    count: int  # live vectors
    tombstones: int  # removed vectors still stored (hnsw, ivfpq)
    generation: int  # the caller's value given to save()
    options: VectorIndexOptions | None  # None for "exact"


@runtime_checkable
class VectorIndex(Protocol):
    """Top-k inner-product search over unit vectors keyed by non-negative int64 ids."""

    @property
    def dim(self) -> int:
        """Width of the stored vectors."""
        ...

    @property
    def kind(self) -> str:
        """One of :data:`KINDS`."""
        ...

    @property
    def generation(self) -> int:
        """The caller's value last saved with or loaded from a file (0 for a new index)."""
        ...

    @property
    def needs_rebuild(self) -> bool:
        """True when removed vectors take enough room that a rebuild should compact them."""
        ...

    def __len__(self) -> int:
        """Number of live (searchable) vectors."""
        ...

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Store ``vectors`` (N, D) under ``ids`` (N,); an id already stored is replaced."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (unknown ones are ignored); return how many were removed."""
        ...

    def search(
        self, queries: npt.ArrayLike, k: int, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Best ``k`` ids per query: ``(scores (Q, k) float32, ids (Q, k) int64)``.

        Scores are inner products, best first; missing results are id -1 with score -inf.
        ``allowed``, when given, is the only ids that may be returned.
        """
        ...

    def save(self, path: str | os.PathLike[str], *, generation: int = 0) -> Path:
        """Write the index to ``path`` atomically, with the caller's ``generation``."""
        ...


# --------------------------------------------------------------------------------------------
# argument checks


def _check_ids(ids: npt.ArrayLike, name: str) -> IdArray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InputError(
            f"{name}: expected a 1-D integer array, got shape {arr.shape} and dtype {arr.dtype}"
        )
    out = arr.astype(np.int64, copy=False)
    if out.size and out.min() < 0:
        raise InputError(f"{name}: ids must be non-negative, got {int(out.min())}")
    return out


def _check_vectors(vectors: npt.ArrayLike, dim: int, name: str) -> FloatArray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (N, {dim}) array, got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise ConfigError(
            f"{name}: the index holds {dim}-d vectors, got {arr.shape[1]}-d; was the "
            "embedding model changed? Rebuild the index with the new vectors"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(
            f"{name}: row {row} has a NaN or infinite value ({int((~finite).sum())} rows in "
            "all); re-embed those items"
        )
    return out


def _check_pairs(
    ids: npt.ArrayLike, vectors: npt.ArrayLike, dim: int
) -> tuple[IdArray, FloatArray]:
    id_arr = _check_ids(ids, "ids")
    vec = _check_vectors(vectors, dim, "vectors")
    if len(id_arr) != len(vec):
        raise InputError(f"ids: {len(id_arr)} ids for {len(vec)} vectors")
    uniq, counts = np.unique(id_arr, return_counts=True)
    if len(uniq) != len(id_arr):
        raise InputError(f"ids: id {int(uniq[counts > 1][0])} appears more than once")
    return id_arr, vec


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected a positive int, got {k!r}")
    return int(k)


def _allowed_ids(allowed: npt.ArrayLike) -> IdArray:
    return np.unique(_check_ids(allowed, "allowed"))


def _dim_from(vectors: npt.ArrayLike, dim: int | None) -> int:
    shape = np.shape(vectors)
    if len(shape) != 2:
        raise InputError(f"vectors: expected a 2-D (N, D) array, got shape {shape}")
    if dim is None:
        dim = int(shape[1])
    if dim < 1:
        raise ConfigError(f"dim: expected a positive vector width, got {dim}")
    return dim


# --------------------------------------------------------------------------------------------
# shared pieces: slot table, top-k


class _SlotTable:
    """The id stored in each slot (a backend's internal row), and which slots are live."""

    def __init__(self, labels: IdArray | None = None, alive: BoolArray | None = None) -> None:
        self.labels: IdArray = np.zeros(0, np.int64) if labels is None else labels
        self.alive: BoolArray = np.ones(len(self.labels), bool) if alive is None else alive
        self.n_live = int(self.alive.sum())
        self._lookup: tuple[IdArray, IdArray] | None = None  # live labels sorted, their slots
        self._bitmap: npt.NDArray[np.uint8] | None = None

    @property
    def n_slots(self) -> int:
        return len(self.labels)

    @property
    def n_dead(self) -> int:
        return self.n_slots - self.n_live

    def _changed(self) -> None:
        self._lookup = None
        self._bitmap = None

    def append(self, ids: IdArray) -> None:
        self.labels = np.concatenate([self.labels, ids])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), bool)])
        self.n_live += len(ids)
        self._changed()

    def slots_of(self, ids: IdArray) -> IdArray:
        """Slots of the live ones among ``ids`` (unique), in slot order."""
        if self._lookup is None:
            live = np.flatnonzero(self.alive)
            order = np.argsort(self.labels[live], kind="stable")
            self._lookup = (self.labels[live][order], live[order].astype(np.int64))
        sorted_labels, sorted_slots = self._lookup
        if len(sorted_labels) == 0 or len(ids) == 0:
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(sorted_labels, ids), len(sorted_labels) - 1)
        hit = sorted_labels[pos] == ids
        return np.sort(sorted_slots[pos[hit]])

    def live_slots(self) -> IdArray:
        return np.flatnonzero(self.alive).astype(np.int64)

    def kill(self, slots: IdArray) -> None:
        self.alive[slots] = False
        self.n_live = int(self.alive.sum())
        self._changed()

    def compact(self, keep: BoolArray) -> None:
        self.labels = self.labels[keep]
        self.alive = self.alive[keep]
        self.n_live = int(self.alive.sum())
        self._changed()

    def live_bitmap(self) -> npt.NDArray[np.uint8]:
        """Live slots as the little-endian bitmap FAISS's ``IDSelectorBitmap`` reads."""
        if self._bitmap is None:
            self._bitmap = np.packbits(self.alive, bitorder="little")
        return self._bitmap


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


def _empty_result(n_queries: int, k: int) -> tuple[FloatArray, IdArray]:
    return np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)


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
        self._table = _SlotTable()
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
        id_arr, vec = _check_pairs(ids, vectors, self._dim)
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
        slots = self._table.slots_of(np.unique(_check_ids(ids, "ids")))
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
        q = _check_vectors(queries, self._dim, "queries")
        k = _check_k(k)
        n = len(self)
        rows: IdArray | None = None  # the allowed rows, gathered; None: every row, in place
        keep: BoolArray | None = None  # the allowed rows as a mask over every row
        if allowed is not None:
            rows = self._table.slots_of(_allowed_ids(allowed))
            if 4 * len(rows) >= n:  # most rows allowed: scoring all beats gathering
                keep = np.zeros(n, bool)
                keep[rows] = True
                rows = None
        best = _empty_result(len(q), k)
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
        return best[0], _labels_of(self._table, found)

    def save(self, path: str | os.PathLike[str], *, generation: int = 0) -> Path:
        """Write ids and vectors as raw little-endian arrays (no pickle), atomically."""
        n = len(self)
        header = _header_dict("exact", self._dim, n, 0, generation, None)
        sections: list[tuple[str, _SectionSource]] = [
            ("labels", _array_source(self._table.labels, "<i8")),
            ("vectors", _array_source(self._vectors[:n], "<f4")),
        ]
        out = _write_file(path, header, sections)
        self.generation = generation
        return out


def _labels_of(table: _SlotTable, slots: IdArray) -> IdArray:
    """Our ids for FAISS / row labels (-1 stays -1)."""
    if table.n_slots == 0:
        return np.full(slots.shape, -1, np.int64)
    return np.where(slots >= 0, table.labels[np.maximum(slots, 0)], -1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# FAISS index


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailableError("faiss", "search", "faiss-cpu") from exc
    return faiss


class FaissIndex:
    """A FAISS index of kind ``flat``, ``hnsw`` or ``ivfpq`` keyed by our int64 ids.

    FAISS numbers vectors by insertion (its "slots"); a slot table maps them to our ids, tells
    which are tombstones, and turns ``allowed`` ids into a bitmap selector. Build it with
    :func:`build_vector_index`; load it with :func:`load_vector_index`.
    """

    def __init__(
        self,
        index: Any,
        kind: str,
        options: VectorIndexOptions,
        table: _SlotTable,
        *,
        generation: int = 0,
    ) -> None:
        self._index = index
        self._faiss = _faiss()
        self._dim = int(index.d)  # read once: a SWIG attribute costs microseconds a query
        self._kind = kind
        self._table = table
        self.options = options
        self.generation = generation  # set by load_vector_index and save

    @property
    def dim(self) -> int:
        """Width of the stored vectors."""
        return self._dim

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw`` or ``ivfpq``."""
        return self._kind

    @property
    def tombstones(self) -> int:
        """Removed vectors still stored (hnsw, ivfpq); a rebuild drops them."""
        return self._table.n_dead

    @property
    def needs_rebuild(self) -> bool:
        """True once tombstones are more than a quarter of the stored vectors."""
        return self._table.n_dead > _REBUILD_FRACTION * self._table.n_slots

    @property
    def faiss_index(self) -> Any:
        """The wrapped FAISS index (its labels are slots, not our ids)."""
        return self._index

    def __len__(self) -> int:
        return self._table.n_live

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Store ``vectors`` under ``ids``; an id already stored is replaced."""
        id_arr, vec = _check_pairs(ids, vectors, self.dim)
        if len(id_arr) == 0:
            return
        self.remove(id_arr)
        self._index.add(vec)  # FAISS numbers them n_slots, n_slots + 1, ...
        self._table.append(id_arr)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (unknown ones are ignored); return how many were removed.

        ``flat`` compacts at once; ``hnsw`` and ``ivfpq`` keep tombstones (``needs_rebuild``).
        """
        slots = self._table.slots_of(np.unique(_check_ids(ids, "ids")))
        if len(slots) == 0:
            return 0
        if self._kind == "flat":
            self._index.remove_ids(self._faiss.IDSelectorBatch(slots))  # keeps the order
            keep = np.ones(self._table.n_slots, bool)
            keep[slots] = False
            self._table.compact(keep)
        else:
            self._table.kill(slots)
        return len(slots)

    def search(
        self, queries: npt.ArrayLike, k: int, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Best ``k`` ids per query (see :meth:`VectorIndex.search` and the module docstring)."""
        q = _check_vectors(queries, self.dim, "queries")
        k = _check_k(k)
        table = self._table
        if len(q) == 0 or table.n_live == 0:
            return _empty_result(len(q), k)
        bitmap: npt.NDArray[np.uint8] | None = None  # the slots a result may come from
        if allowed is not None:
            slots = table.slots_of(_allowed_ids(allowed))
            if len(slots) == 0:
                return _empty_result(len(q), k)
            bitmap = _bitmap(slots, table.n_slots)
        elif table.n_dead:
            bitmap = table.live_bitmap()
        m = table.n_live if allowed is None else len(slots)
        if bitmap is not None and m <= self.options.exact_scan_limit:
            scores, found = self._scan(q, k, bitmap)
        else:
            scores, found = self._ann_search(q, k, bitmap, widen=table.n_slots / m)
            short = (found >= 0).sum(axis=1) < min(k, m)
            if short.any():  # a selective filter or tombstones starved the beam: scan exactly
                where = table.live_bitmap() if bitmap is None else bitmap
                scores[short], found[short] = self._scan(q[short], k, where)
        scores = np.where(found >= 0, scores, -np.inf).astype(np.float32)
        return scores, _labels_of(table, found)

    def _ann_search(
        self, q: FloatArray, k: int, bitmap: npt.NDArray[np.uint8] | None, widen: float
    ) -> tuple[FloatArray, IdArray]:
        """The index's own search, its beam widened by ``widen`` (stored / allowed)."""
        faiss, opts = self._faiss, self.options
        sel = None if bitmap is None else faiss.IDSelectorBitmap(bitmap)
        if self._kind == "flat":
            params = None if sel is None else faiss.SearchParameters(sel=sel)
        elif self._kind == "hnsw":
            ef = max(opts.ef_search, k, min(math.ceil(opts.ef_search * widen), _MAX_FILTERED_EF))
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
        else:
            nlist = int(faiss.extract_index_ivf(self._index).nlist)
            nprobe = min(nlist, math.ceil(_ivf_nprobe(opts, nlist) * widen))
            ivf_params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            params = ivf_params
            if opts.refine_k_factor:
                params = faiss.IndexRefineSearchParameters(
                    k_factor=opts.refine_k_factor, base_index_params=ivf_params
                )
        # sel, ivf_params and bitmap stay referenced here until FAISS is done with them
        scores, slots = self._index.search(q, k, params=params)
        return scores.astype(np.float32, copy=False), slots.astype(np.int64, copy=False)

    def _scan(
        self, q: FloatArray, k: int, bitmap: npt.NDArray[np.uint8]
    ) -> tuple[FloatArray, IdArray]:
        """Exact top-k over the stored codes of the slots in ``bitmap``.

        A brute-force pass over the flat array of codes (the vectors for ``flat``, the SQ8
        codes of ``hnsw`` and of ``ivfpq``'s re-ranking, every IVF list of a PQ-only index),
        skipping slots outside the bitmap: one bit test per stored vector, one distance per
        allowed one.
        """
        faiss = self._faiss
        sel = faiss.IDSelectorBitmap(bitmap)  # referenced until the search returns
        params = faiss.SearchParameters(sel=sel)
        if self._kind == "hnsw":
            codes = faiss.downcast_index(self._index.storage)
        elif self._kind == "ivfpq" and self.options.refine_k_factor:
            codes = faiss.downcast_index(self._index.refine_index)
        elif self._kind == "ivfpq":
            codes = self._index
            nlist = int(faiss.extract_index_ivf(self._index).nlist)
            params = faiss.SearchParametersIVF(nprobe=nlist, sel=sel)
        else:
            codes = self._index
        scores, slots = codes.search(q, k, params=params)
        return scores.astype(np.float32, copy=False), slots.astype(np.int64, copy=False)

    def save(self, path: str | os.PathLike[str], *, generation: int = 0) -> Path:
        """Write the FAISS index, slot table and header atomically."""
        t = self._table
        header = _header_dict(self._kind, self.dim, t.n_live, t.n_dead, generation, self.options)
        sections: list[tuple[str, _SectionSource]] = [
            ("labels", _array_source(t.labels, "<i8")),
            ("alive", _array_source(t.alive.view(np.uint8), "u1")),
            ("faiss", _faiss_source(self._faiss, self._index)),
        ]
        out = _write_file(path, header, sections)
        self.generation = generation
        return out


def _bitmap(slots: IdArray, n_slots: int) -> npt.NDArray[np.uint8]:
    mask = np.zeros(n_slots, bool)
    mask[slots] = True
    return np.packbits(mask, bitorder="little")


def _ivf_nprobe(options: VectorIndexOptions, nlist: int) -> int:
    return max(1, min(nlist, options.nprobe or nlist // 2))


# --------------------------------------------------------------------------------------------
# building


def choose_kind(n: int, dim: int) -> str:
    """The kind ``auto`` builds for ``n`` vectors of width ``dim``.

    ``exact`` while the scan reads at most :data:`AUTO_EXACT_MAX_SCALARS` floats (20,000
    vectors of 512-d: a few ms a query on two cores), ``hnsw`` above.
    """
    if n < 0 or dim < 1:
        raise ConfigError(f"choose_kind: expected n >= 0 and dim >= 1, got n={n}, dim={dim}")
    return "exact" if n * dim <= AUTO_EXACT_MAX_SCALARS else "hnsw"


def build_vector_index(
    ids: npt.ArrayLike,
    vectors: npt.ArrayLike,
    kind: str = "auto",
    *,
    dim: int | None = None,
    options: VectorIndexOptions | None = None,
) -> VectorIndex:
    """Build an index of ``vectors`` (N, D) float32 under ``ids`` (N,) int64.

    Args:
        ids: unique non-negative ids (SQLite rowids).
        vectors: unit-normalised vectors, one row per id.
        kind: ``auto`` (:func:`choose_kind`) or one of :data:`KINDS`.
        dim: expected vector width; needed only to check it (or for an empty index).
        options: FAISS settings; the defaults are the measured ones.

    Raises:
        ConfigError: unknown kind, or vectors of another width than ``dim``.
        InputError: bad ids, or non-finite vectors.
        BackendUnavailableError: a FAISS kind without ``faiss-cpu`` installed.
    """
    valid = ("auto", *KINDS)
    if kind not in valid:
        raise ConfigError(f"vector index kind {kind!r} is unknown; use one of {', '.join(valid)}")
    dim = _dim_from(vectors, dim)
    id_arr, vec = _check_pairs(ids, vectors, dim)
    n = len(id_arr)
    if kind == "auto":
        kind = choose_kind(n, dim)
    if kind == "exact":
        exact = ExactIndex(dim)
        exact.add(id_arr, vec)
        return exact
    faiss = _faiss()
    options = options or VectorIndexOptions()
    if kind in ("hnsw", "ivfpq") and n < MIN_TRAIN_VECTORS:
        log.info("%d vectors are too few to train %r: building 'flat'", n, kind)
        kind = "flat"
    start = time.perf_counter()
    index, options = _new_faiss_index(faiss, kind, dim, vec, options)
    index.add(vec)
    log.info("built a %s index of %d vectors in %.1f s", kind, n, time.perf_counter() - start)
    return FaissIndex(index, kind, options, _SlotTable(id_arr.copy()))


def _new_faiss_index(
    faiss: Any, kind: str, dim: int, vectors: FloatArray, options: VectorIndexOptions
) -> tuple[Any, VectorIndexOptions]:
    """An empty, trained FAISS index, and the options with automatic values resolved."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim), options
    rng = np.random.default_rng(options.seed)
    n_train = min(len(vectors), options.train_size)
    train = vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))]
    if kind == "hnsw":
        index = faiss.index_factory(dim, f"HNSW{options.hnsw_m},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = options.ef_construction
        index.hnsw.efSearch = options.ef_search
        index.train(train)
        return index, options
    nlist = options.nlist or round(4 * math.sqrt(len(vectors)))
    nlist = max(1, min(nlist, n_train // 39))  # FAISS wants 39 training points per centroid
    pq_m = options.pq_m or _largest_divisor_at_most(dim, max(1, dim // 8))
    if dim % pq_m:
        raise ConfigError(f"VectorIndexOptions.pq_m: {pq_m} does not divide dim {dim}")
    nbits = options.pq_nbits or max(1, min(8, int(math.log2(n_train / 39))))
    spec = f"IVF{nlist},PQ{pq_m}x{nbits}" + (",Refine(SQ8)" if options.refine_k_factor else "")
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.do_polysemous_training = False  # minutes of training for a Hamming filter we do not use
    index.train(train)
    return index, replace(options, nlist=nlist, pq_m=pq_m, pq_nbits=nbits)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


# --------------------------------------------------------------------------------------------
# the file: sections, then a JSON footer, its length and a magic tag


_SectionSource = Callable[[Callable[[bytes | memoryview], None]], None]


def _array_source(arr: npt.NDArray[Any], dtype: str) -> _SectionSource:
    data = np.ascontiguousarray(arr, dtype=np.dtype(dtype))

    def emit(write: Callable[[bytes | memoryview], None]) -> None:
        raw = data.reshape(-1).view(np.uint8).data
        for start in range(0, len(raw), _IO_CHUNK):
            write(raw[start : start + _IO_CHUNK])

    return emit


def _faiss_source(faiss: Any, index: Any) -> _SectionSource:
    def emit(write: Callable[[bytes | memoryview], None]) -> None:
        faiss.write_index(index, faiss.PyCallbackIOWriter(write))

    return emit


def _header_dict(
    kind: str,
    dim: int,
    count: int,
    tombstones: int,
    generation: int,
    options: VectorIndexOptions | None,
) -> dict[str, Any]:
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise ConfigError(f"generation: expected an int, got {generation!r}")
    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "dim": dim,
        "count": count,
        "tombstones": tombstones,
        "generation": generation,
        "options": None if options is None else asdict(options),
    }


def _write_file(
    path: str | os.PathLike[str],
    header: dict[str, Any],
    sections: list[tuple[str, _SectionSource]],
) -> Path:
    def write(f: BinaryIO) -> None:
        f.write(_MAGIC)
        offset = len(_MAGIC)
        table = []
        for name, emit in sections:
            sink = _Sink(f)
            emit(sink)
            table.append({"name": name, "offset": offset, "nbytes": sink.size, "crc32": sink.crc})
            offset += sink.size
        footer = json.dumps({**header, "sections": table}).encode("utf-8")
        f.write(footer)
        f.write(_TAIL.pack(len(footer), _MAGIC))

    return atomic_write(path, write)


class _Sink:
    """Writes chunks to a file, counting their bytes and CRC-32."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.size, self.crc = f, 0, 0

    def __call__(self, chunk: bytes | memoryview) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self.size += len(chunk)
        self.f.write(chunk)


class _IndexFile:
    """An open saved index: footer parsed, sections located; checks as it reads."""

    def __init__(self, path: Path, f: io.BufferedReader) -> None:
        self.path, self.f = path, f
        size = os.fstat(f.fileno()).st_size
        if size < len(_MAGIC) + _TAIL.size or f.read(len(_MAGIC)) != _MAGIC:
            raise self.error("not a crossmodal vector index (no header)")
        f.seek(size - _TAIL.size)
        footer_len, magic = _TAIL.unpack(f.read(_TAIL.size))
        footer_start = size - _TAIL.size - footer_len
        if magic != _MAGIC or footer_start < len(_MAGIC):
            raise self.error("truncated (no footer)")
        f.seek(footer_start)
        try:
            self.meta = json.loads(f.read(footer_len).decode("utf-8"))
            self.sections = {s["name"]: s for s in self.meta["sections"]}
            offset = len(_MAGIC)
            for s in self.meta["sections"]:
                if not all(isinstance(s[key], int) for key in ("offset", "nbytes", "crc32")):
                    raise ValueError("section table")
                if s["offset"] != offset or s["nbytes"] < 0:
                    raise ValueError("section table")
                offset += s["nbytes"]
            if offset != footer_start:
                raise ValueError("section sizes")
            self.header = _parse_header(self.meta)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON and Unicode too
            raise self.error(f"corrupt footer ({exc})") from None

    def error(self, what: str) -> InputError:
        return InputError(
            f"{self.path}: cannot load the vector index: {what}; delete it and rebuild the "
            "index from the stored vectors"
        )

    def section(self, name: str) -> dict[str, int]:
        if name not in self.sections:
            raise self.error(f"no {name!r} section")
        return dict(self.sections[name])

    def array(self, name: str, dtype: str, count: int) -> npt.NDArray[Any]:
        s = self.section(name)
        if s["nbytes"] != count * np.dtype(dtype).itemsize:
            raise self.error(f"section {name!r} holds {s['nbytes']} bytes, not {count} {dtype}")
        buf = np.empty(s["nbytes"], np.uint8)
        self.f.seek(s["offset"])
        if self.f.readinto(buf.data) != s["nbytes"] or zlib.crc32(buf.data) != s["crc32"]:
            raise self.error(f"section {name!r} is damaged (checksum mismatch)")
        return buf.view(np.dtype(dtype)).astype(np.dtype(dtype).newbyteorder("="), copy=False)

    def chunks(self, name: str) -> Iterator[bytes]:
        s = self.section(name)
        self.f.seek(s["offset"])
        left = s["nbytes"]
        while left:
            chunk = self.f.read(min(left, _IO_CHUNK))
            if not chunk:
                raise self.error(f"section {name!r} is truncated")
            left -= len(chunk)
            yield chunk

    def faiss_index(self, faiss: Any, name: str) -> Any:
        s = self.section(name)
        crc = 0
        for chunk in self.chunks(name):
            crc = zlib.crc32(chunk, crc)
        if crc != s["crc32"]:
            raise self.error(f"section {name!r} is damaged (checksum mismatch)")
        self.f.seek(s["offset"])
        left = s["nbytes"]

        def read(n: int) -> bytes:  # never past the section, whatever FAISS asks for
            nonlocal left
            data = self.f.read(min(n, left))
            left -= len(data)
            return data

        try:
            return faiss.read_index(faiss.PyCallbackIOReader(read))
        except RuntimeError as exc:
            raise self.error(f"FAISS cannot read it ({str(exc).splitlines()[0][:200]})") from None


def _parse_header(meta: dict[str, Any]) -> VectorIndexHeader:
    if meta["format"] != FORMAT_VERSION:
        raise ValueError(f"format {meta['format']}, this version reads {FORMAT_VERSION}")
    if meta["kind"] not in KINDS:
        raise ValueError(f"kind {meta['kind']!r}")
    ints = {name: meta[name] for name in ("dim", "count", "tombstones", "generation")}
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} {value!r}")
    if ints["dim"] < 1 or (meta["kind"] == "exact" and ints["tombstones"]):
        raise ValueError(f"dim {ints['dim']}, tombstones {ints['tombstones']}")
    options = None
    if meta["kind"] != "exact":
        known = {f.name for f in fields(VectorIndexOptions)}
        options = VectorIndexOptions(**{k: v for k, v in meta["options"].items() if k in known})
    return VectorIndexHeader(meta["format"], meta["kind"], options=options, **ints)


def _open(path: str | os.PathLike[str]) -> io.BufferedReader:
    try:
        return open(path, "rb")  # closed by the caller's with
    except OSError as exc:
        raise InputError(
            f"{path}: cannot open the vector index ({exc.strerror}); build it with "
            "build_vector_index"
        ) from exc


def read_vector_index_header(path: str | os.PathLike[str]) -> VectorIndexHeader:
    """The header of a saved index (kind, dim, count, generation...) without loading it.

    Raises:
        InputError: the file is missing, truncated or not a vector index.
    """
    with _open(path) as f:
        return _IndexFile(Path(path), f).header


def load_vector_index(path: str | os.PathLike[str]) -> tuple[VectorIndex, int]:
    """Load a saved index; return it and the ``generation`` it was saved with.

    Raises:
        InputError: the file is missing, truncated, corrupt or from another format version
            (the message names the file; rebuild the index from the source vectors).
        BackendUnavailableError: a FAISS index without ``faiss-cpu`` installed.
    """
    with _open(path) as f:
        file = _IndexFile(Path(path), f)
        h = file.header
        slots = h.count + h.tombstones
        labels = file.array("labels", "<i8", slots)
        if h.kind == "exact":
            exact = ExactIndex(h.dim, generation=h.generation)
            vectors = file.array("vectors", "<f4", slots * h.dim).reshape(slots, h.dim)
            if len(np.unique(labels)) != slots:
                raise file.error("repeated ids")
            exact._vectors = vectors
            exact._table = _SlotTable(labels)
            return exact, h.generation
        faiss = _faiss()
        alive = file.array("alive", "u1", slots).astype(bool)
        index = file.faiss_index(faiss, "faiss")
        if index.ntotal != slots or index.d != h.dim or int(alive.sum()) != h.count:
            raise file.error(
                f"its parts disagree ({index.ntotal} FAISS vectors of {index.d}-d, "
                f"{slots} ids, {int(alive.sum())} live of {h.count} expected)"
            )
        if len(np.unique(labels[alive])) != h.count:
            raise file.error("repeated ids")
        assert h.options is not None
        loaded = FaissIndex(
            index, h.kind, h.options, _SlotTable(labels, alive), generation=h.generation
        )
        return loaded, h.generation
