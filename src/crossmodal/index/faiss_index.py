"""FAISS vector indexes (``flat``, ``hnsw``, ``ivfpq``) keyed by our int64 ids through a slot table.

How the kinds are built, searched with ``allowed`` and tombstoned is in the docstring of
:mod:`crossmodal.index.vectors`, the public entry point.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal.errors import BackendUnavailableError, ConfigError
from crossmodal.index.vector_common import (
    FloatArray,
    IdArray,
    SlotTable,
    VectorIndexOptions,
    check_ids,
    check_k,
    check_pairs,
    check_vectors,
    empty_result,
    labels_of,
    unique_allowed_ids,
)
from crossmodal.index.vector_file import (
    SectionSource,
    array_source,
    faiss_source,
    header_dict,
    write_index_file,
)

__all__ = ["FaissIndex", "ivf_lists"]

_REBUILD_FRACTION = 0.25  # needs_rebuild once tombstones exceed this share of stored vectors
_MAX_FILTERED_EF = 1_024  # widest HNSW beam a filtered search uses before the exact scan
_IVF_PROBE_DIVISOR = 5  # automatic nprobe: at least nlist / this (module docstring of vectors)
_IVF_MIN_SCANNED = 50_000  # ... and at least this many vectors' worth of lists


# --------------------------------------------------------------------------------------------
# FAISS index


def import_faiss() -> Any:
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
        table: SlotTable,
        *,
        generation: int = 0,
    ) -> None:
        self._index = index
        self._faiss = import_faiss()
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

    def ids(self) -> IdArray:
        """The live ids, in storage order."""
        return self._table.labels[self._table.alive].copy()

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Store ``vectors`` under ``ids``; an id already stored is replaced."""
        id_arr, vec = check_pairs(ids, vectors, self.dim)
        if len(id_arr) == 0:
            return
        self.remove(id_arr)
        self._index.add(vec)  # FAISS numbers them n_slots, n_slots + 1, ...
        self._table.append(id_arr)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (unknown ones are ignored); return how many were removed.

        ``flat`` compacts at once; ``hnsw`` and ``ivfpq`` keep tombstones (``needs_rebuild``).
        """
        slots = self._table.slots_of(np.unique(check_ids(ids, "ids")))
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
        q = check_vectors(queries, self.dim, "queries")
        k = check_k(k)
        table = self._table
        if len(q) == 0 or table.n_live == 0:
            return empty_result(len(q), k)
        bitmap: npt.NDArray[np.uint8] | None = None  # the slots a result may come from
        if allowed is not None:
            slots = table.slots_of(unique_allowed_ids(allowed))
            if len(slots) == 0:
                return empty_result(len(q), k)
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
        return scores, labels_of(table, found)

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
            nprobe = min(nlist, math.ceil(_ivf_nprobe(opts, nlist, self._table.n_slots) * widen))
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
        header = header_dict(self._kind, self.dim, t.n_live, t.n_dead, generation, self.options)
        sections: list[tuple[str, SectionSource]] = [
            ("labels", array_source(t.labels, "<i8")),
            ("alive", array_source(t.alive.view(np.uint8), "u1")),
            ("faiss", faiss_source(self._faiss, self._index)),
        ]
        out = write_index_file(path, header, sections)
        self.generation = generation
        return out


def _bitmap(slots: IdArray, n_slots: int) -> npt.NDArray[np.uint8]:
    mask = np.zeros(n_slots, bool)
    mask[slots] = True
    return np.packbits(mask, bitorder="little")


def _ivf_nprobe(options: VectorIndexOptions, nlist: int, n_slots: int) -> int:
    """``options.nprobe``, or a fifth of the lists and at least ~50,000 vectors' worth."""
    if options.nprobe:
        return max(1, min(nlist, options.nprobe))
    floor = math.ceil(nlist * _IVF_MIN_SCANNED / max(n_slots, 1))
    return max(1, min(nlist, max(nlist // _IVF_PROBE_DIVISOR, floor)))


# --------------------------------------------------------------------------------------------
# building


def new_faiss_index(
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
    nlist = ivf_lists(len(vectors), options)
    pq_m = options.pq_m or _largest_divisor_at_most(dim, max(1, dim // 8))
    if dim % pq_m:
        raise ConfigError(f"VectorIndexOptions.pq_m: {pq_m} does not divide dim {dim}")
    nbits = options.pq_nbits or 4
    # 4-bit codes use FAISS's fast-scan kernels (SIMD table lookups in registers): several
    # times faster a list than 8-bit PQ, at equal bytes a vector with twice the sub-quantisers
    pq = f"PQ{pq_m}x4fs" if nbits == 4 else f"PQ{pq_m}x{nbits}"
    spec = f"IVF{nlist},{pq}" + (",Refine(SQ8)" if options.refine_k_factor else "")
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False  # minutes of training for a filter we do not use
    index.train(train)
    return index, replace(options, nlist=nlist, pq_m=pq_m, pq_nbits=nbits)


def ivf_lists(n: int, options: VectorIndexOptions) -> int:
    """The IVF lists an ``ivfpq`` index of ``n`` vectors gets: ``options.nlist``, or sqrt(n).

    At most one list per 39 training vectors (FAISS's minimum for k-means).
    """
    n_train = min(n, options.train_size)
    return max(1, min(options.nlist or round(math.sqrt(n)), n_train // 39))


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)
