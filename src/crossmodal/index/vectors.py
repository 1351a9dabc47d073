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
* ``ivfpq``: FAISS IVF with 4-bit fast-scan PQ (``IVF{sqrt N},PQ{dim/8}x4fs``: 32 bytes a
  512-d vector, scanned with FAISS's SIMD table lookups), its candidates re-ranked on SQ8
  codes (``Refine(SQ8)``, ``refine_k_factor``; 0 keeps the PQ codes only, the compact option):
  about 570 bytes a 512-d vector. The kind ``auto`` picks above the exact range.

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
  the numpy scan took 1-3 ms a query at 10,000 and 16-24 ms at 100,000
  (``benchmarks/search_vectors.py``, on two CPUs of different speeds). Up to 20,000 the scan
  stays within a few ms, quick enough for an interactive search, and an approximate index
  would save a few ms for a recall under 1; past it the scan grows linearly. Above it
  ``auto`` picks ``ivfpq``, not ``hnsw``: at 100,000 vectors IVF-PQ answered in 0.58 ms at
  Recall@10 0.985 against HNSW's 1.8 ms at 0.979, and at 1M in 1.5 ms at 0.975 against
  3.8 ms at 0.927 (3.2 ms at 0.972 for a graph built three times longer), built in 13 s
  instead of 9-36 minutes and held in 573 MB instead of 789-911 MB.
* ``ivfpq``: ``nlist = sqrt(N)`` lists, ``nprobe`` a fifth of them and at least 50,000
  vectors' worth (at 100,000 vectors, half), PQ with ``dim / 8`` sub-quantisers of 4 bits,
  ``refine_k_factor=32``. At 1M (1,000 lists): nprobe 128 / 200 / 250 / 320 gave Recall@10
  0.940 / 0.975 / 0.980 / 0.983 at 1.2 / 1.5 / 1.7 / 2.0 ms. Twice the sub-quantisers
  (``dim / 4``, 64 bytes) with half the re-ranking (16) gave about 0.005 more recall at
  equal nprobe for 1.5-1.8 times the time: the scan of the codes is most of a query, and
  re-ranking 160 more candidates on SQ8 costs about 0.2 ms. 8-bit PQ (``pq_nbits=8``, no
  fast scan) took 73 ms a query at 1M. The proxies are isotropic, without the clusters IVF
  feeds on, so recall follows the share of lists probed (real embeddings cluster, which
  helps); rank 64 latents are harder (0.946 at nprobe 256 with the 64-byte codes).
  ``sync`` rebuilds an ``ivfpq`` index once it has grown fourfold, so that the lists stay
  about ``sqrt(N)`` long.
* ``hnsw``: ``ef_search=128``: HNSW32 over SQ8 at 100,000 vectors gave Recall@10 0.945 /
  0.975 / 0.985 / 0.993 against the exact scan at efSearch 64 / 96 / 128 / 192; at 1M
  0.927 at 128 (rank 64 latents are harder: 0.88 at 128, 0.96 at 256 at 100,000).
  ``ef_construction=40`` (the FAISS default): 100 gave +0.05 recall at equal efSearch for
  2.8x the build time.

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

import logging
import os
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError
from crossmodal.index.exact_index import ExactIndex
from crossmodal.index.faiss_index import FaissIndex, import_faiss, new_faiss_index
from crossmodal.index.milvus_index import read_handle
from crossmodal.index.vector_common import (
    KINDS,
    FloatArray,
    IdArray,
    SlotTable,
    VectorIndexOptions,
    check_pairs,
    dim_from,
)
from crossmodal.index.vector_file import IndexFile, VectorIndexHeader, open_index_file

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

AUTO_EXACT_MAX_SCALARS = 20_000 * 512  # "auto" scans exactly up to this many stored floats
MIN_TRAIN_VECTORS = 1_000  # fewer than this and a trained kind is built as "flat"


# --------------------------------------------------------------------------------------------
# protocol


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

    def ids(self) -> IdArray:
        """The live ids, in storage order."""
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
# building


def choose_kind(n: int, dim: int) -> str:
    """The kind ``auto`` builds for ``n`` vectors of width ``dim``.

    ``exact`` while the scan reads at most :data:`AUTO_EXACT_MAX_SCALARS` floats (20,000
    vectors of 512-d: a few ms a query on two cores), ``ivfpq`` above (faster than ``hnsw``
    at every size measured, and built a hundred times sooner; see the module docstring).
    """
    if n < 0 or dim < 1:
        raise ConfigError(f"choose_kind: expected n >= 0 and dim >= 1, got n={n}, dim={dim}")
    return "exact" if n * dim <= AUTO_EXACT_MAX_SCALARS else "ivfpq"


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
    dim = dim_from(vectors, dim)
    id_arr, vec = check_pairs(ids, vectors, dim)
    n = len(id_arr)
    if kind == "auto":
        kind = choose_kind(n, dim)
    if kind == "exact":
        exact = ExactIndex(dim)
        exact.add(id_arr, vec)
        return exact
    options = options or VectorIndexOptions()
    if kind == "milvus":
        from crossmodal.index.milvus_index import MilvusIndex

        milvus = MilvusIndex(dim, options, create=True)
        milvus.add(id_arr, vec)
        return milvus
    faiss = import_faiss()
    if kind in ("hnsw", "ivfpq") and n < MIN_TRAIN_VECTORS:
        log.info("%d vectors are too few to train %r: building 'flat'", n, kind)
        kind = "flat"
    start = time.perf_counter()
    index, options = new_faiss_index(faiss, kind, dim, vec, options)
    index.add(vec)
    log.info("built a %s index of %d vectors in %.1f s", kind, n, time.perf_counter() - start)
    return FaissIndex(index, kind, options, SlotTable(id_arr.copy()))


# --------------------------------------------------------------------------------------------
# loading


def read_vector_index_header(path: str | os.PathLike[str]) -> VectorIndexHeader:
    """The header of a saved index (kind, dim, count, generation...) without loading it.

    Raises:
        InputError: the file is missing, truncated or not a vector index.
    """
    handle = read_handle(Path(path))
    if handle is not None:
        return VectorIndexHeader(
            format=1,
            kind="milvus",
            dim=int(handle["dim"]),
            count=int(handle["count"]),
            tombstones=0,
            generation=int(handle["generation"]),
            options=VectorIndexOptions(**handle["options"]),
        )
    with open_index_file(path) as f:
        return IndexFile(Path(path), f).header


def load_vector_index(path: str | os.PathLike[str]) -> tuple[VectorIndex, int]:
    """Load a saved index; return it and the ``generation`` it was saved with.

    Raises:
        InputError: the file is missing, truncated, corrupt or from another format version
            (the message names the file; rebuild the index from the source vectors).
        BackendUnavailableError: a FAISS index without ``faiss-cpu`` installed.
    """
    handle = read_handle(Path(path))
    if handle is not None:  # a milvus index: reconnect to its collection
        from crossmodal.index.milvus_index import MilvusIndex

        options = VectorIndexOptions(**handle["options"])
        generation = int(handle["generation"])
        return MilvusIndex(int(handle["dim"]), options, generation=generation), generation
    with open_index_file(path) as f:
        file = IndexFile(Path(path), f)
        h = file.header
        slots = h.count + h.tombstones
        labels = file.array("labels", "<i8", slots)
        if h.kind == "exact":
            exact = ExactIndex(h.dim, generation=h.generation)
            vectors = file.array("vectors", "<f4", slots * h.dim).reshape(slots, h.dim)
            if len(np.unique(labels)) != slots:
                raise file.error("repeated ids")
            exact._vectors = vectors
            exact._table = SlotTable(labels)
            return exact, h.generation
        faiss = import_faiss()
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
            index, h.kind, h.options, SlotTable(labels, alive), generation=h.generation
        )
        return loaded, h.generation
