"""What the vector index modules share: kinds, options, argument checks and the slot table.

The public entry point is :mod:`crossmodal.index.vectors`; its docstring explains the kinds,
the options' measured defaults and how ``allowed`` and removal work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError, InputError

__all__ = [  # the vector backends' shared checks and slot table (crossmodal.index only)
    "KINDS",
    "BoolArray",
    "FloatArray",
    "IdArray",
    "SlotTable",
    "VectorIndexOptions",
    "check_ids",
    "check_k",
    "check_pairs",
    "check_vectors",
    "dim_from",
    "empty_result",
    "labels_of",
    "unique_allowed_ids",
]

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

KINDS = ("exact", "flat", "hnsw", "ivfpq", "milvus")  # build_vector_index's kinds, and "auto"


# --------------------------------------------------------------------------------------------
# configuration


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
    nlist: int = 0  # IVF lists; 0: sqrt(N), at most one per 39 training vectors
    nprobe: int = 0  # IVF lists scanned per query; 0: nlist // 5, and >= 50,000 vectors' worth
    pq_m: int = 0  # PQ sub-quantisers; 0: dim // 8 (32 bytes a 512-d vector at 4 bits)
    pq_nbits: int = 0  # bits per PQ code; 0: 4, FAISS's fast-scan kernels (only 4 uses them)
    refine_k_factor: int = 32  # IVF-PQ re-ranks k * this candidates on SQ8 codes; 0: PQ only
    train_size: int = 100_000  # vectors sampled to train SQ8, IVF and PQ
    exact_scan_limit: int = 10_000  # allowed sets up to this size are scanned exactly
    seed: int = 0  # of the training sample
    milvus_uri: str = ""  # the milvus kind: a Milvus Lite file or http(s)://host:port
    milvus_collection: str = "crossmodal"  # the milvus kind's collection
    milvus_index: str = "HNSW"  # the milvus kind's index: HNSW, or FLAT (exact)

    def __post_init__(self) -> None:
        if self.milvus_index not in ("HNSW", "FLAT"):
            raise ConfigError(
                f"VectorIndexOptions.milvus_index: HNSW or FLAT, not {self.milvus_index!r}"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", self.milvus_collection):
            raise ConfigError(
                f"VectorIndexOptions.milvus_collection: {self.milvus_collection!r} is not a "
                "Milvus name (letters, digits and _, not starting with a digit)"
            )
        for f in fields(self):
            if f.name.startswith("milvus_"):
                continue
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


# --------------------------------------------------------------------------------------------
# argument checks


def check_ids(ids: npt.ArrayLike, name: str) -> IdArray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InputError(
            f"{name}: expected a 1-D integer array, got shape {arr.shape} and dtype {arr.dtype}"
        )
    out = arr.astype(np.int64, copy=False)
    if out.size and out.min() < 0:
        raise InputError(f"{name}: ids must be non-negative, got {int(out.min())}")
    return out


def check_vectors(vectors: npt.ArrayLike, dim: int, name: str) -> FloatArray:
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


def check_pairs(ids: npt.ArrayLike, vectors: npt.ArrayLike, dim: int) -> tuple[IdArray, FloatArray]:
    id_arr = check_ids(ids, "ids")
    vec = check_vectors(vectors, dim, "vectors")
    if len(id_arr) != len(vec):
        raise InputError(f"ids: {len(id_arr)} ids for {len(vec)} vectors")
    uniq, counts = np.unique(id_arr, return_counts=True)
    if len(uniq) != len(id_arr):
        raise InputError(f"ids: id {int(uniq[counts > 1][0])} appears more than once")
    return id_arr, vec


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected a positive int, got {k!r}")
    return int(k)


def unique_allowed_ids(allowed: npt.ArrayLike) -> IdArray:
    return np.unique(check_ids(allowed, "allowed"))


def dim_from(vectors: npt.ArrayLike, dim: int | None) -> int:
    shape = np.shape(vectors)
    if len(shape) != 2:
        raise InputError(f"vectors: expected a 2-D (N, D) array, got shape {shape}")
    if dim is None:
        dim = int(shape[1])
    if dim < 1:
        raise ConfigError(f"dim: expected a positive vector width, got {dim}")
    return dim


# --------------------------------------------------------------------------------------------
# shared pieces: slot table, results


class SlotTable:
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


def empty_result(n_queries: int, k: int) -> tuple[FloatArray, IdArray]:
    return np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)


def labels_of(table: SlotTable, slots: IdArray) -> IdArray:
    """Our ids for FAISS / row labels (-1 stays -1)."""
    if table.n_slots == 0:
        return np.full(slots.shape, -1, np.int64)
    return np.where(slots >= 0, table.labels[np.maximum(slots, 0)], -1).astype(np.int64)
