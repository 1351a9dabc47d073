"""Keeping the derived vector index in step with the database, without rebuilding it each time.

The database (:mod:`crossmodal.index.store`) is the source of truth; the vector index is a
derived file saved with the database generation it reflects. When the generation has moved
on (files were indexed or removed), :func:`sync_vector_index` brings a stale index up to
date by the difference of ids: vector ids are never reused (``AUTOINCREMENT``) and a stored
vector never changes, so the ids the index holds but the database does not were removed, and
the ids the database holds but the index does not are new. Adding ten photos to an index of
a million then costs ten vector insertions, not a rebuild of the HNSW graph (minutes).

It rebuilds from every stored vector instead when updating would give a worse index than a
rebuild:

* the kind no longer fits the size: ``auto`` switches from ``exact`` to ``ivfpq`` past
  :data:`~crossmodal.index.vectors.AUTO_EXACT_MAX_SCALARS` (and an ``hnsw`` index that an
  older ``auto`` built becomes ``ivfpq``), and a ``hnsw`` or ``ivfpq`` asked for while too
  small to train was built as ``flat`` and is trained once large enough;
* an ``ivfpq`` index has outgrown its lists: it was trained with ``sqrt(N)`` lists and the
  collection has since grown so that the automatic count is more than twice that (a fourfold
  growth); ever longer lists would make every query slower;
* more than :data:`REBUILD_CHANGED_FRACTION` of the index changes at once (an HNSW graph and
  IVF lists are trained on the vectors they were built with);
* removals leave too many tombstones (``needs_rebuild``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from crossmodal.errors import CrossmodalError
from crossmodal.index.faiss_index import FaissIndex, ivf_lists
from crossmodal.index.store import Store
from crossmodal.index.vectors import (
    MIN_TRAIN_VECTORS,
    VectorIndex,
    VectorIndexOptions,
    build_vector_index,
    choose_kind,
    load_vector_index,
)

__all__ = [
    "NULL_SAMPLE",
    "BackendChoice",
    "REBUILD_CHANGED_FRACTION",
    "VECTORS_NAME",
    "DerivedVectors",
    "SyncResult",
    "sync_vector_index",
    "vector_backend",
]

log = logging.getLogger(__name__)

BACKEND_KEY = "vector_backend"  # index meta: the kind asked for (and milvus's place), as JSON
REBUILD_CHANGED_FRACTION = 0.5  # rebuild when more than this share of the vectors changes
IVF_OUTGROWN = 2  # rebuild an ivfpq index once sqrt(N) lists is more than this times its own
VECTORS_NAME = "vectors.idx"  # the derived vector index, beside the database
NULL_SAMPLE = 2048  # stored vectors a query is compared with to learn its score spread


@dataclass(frozen=True)
class SyncResult:
    """The index in step with the database, and how it got there."""

    index: VectorIndex
    added: int  # vectors inserted into the stale index (all of them on a rebuild)
    removed: int  # vectors taken out of the stale index (0 on a rebuild)
    rebuilt: bool  # built from every stored vector rather than updated


def kind_fits(
    index: VectorIndex, backend: str, n: int, options: VectorIndexOptions | None = None
) -> bool:
    """Whether ``index`` is what ``backend`` would build for ``n`` vectors."""
    if backend == "milvus" or index.kind == "milvus":  # the same collection, or a rebuild
        theirs = getattr(index, "options", None)
        return (
            backend == index.kind == "milvus"
            and theirs is not None
            and options is not None
            and (theirs.milvus_uri, theirs.milvus_collection)
            == (options.milvus_uri, options.milvus_collection)
        )
    wanted = choose_kind(n, index.dim) if backend == "auto" else backend
    if wanted in ("hnsw", "ivfpq") and n < MIN_TRAIN_VECTORS:
        wanted = "flat"  # build_vector_index does the same
    if index.kind != wanted:
        return False
    if wanted == "ivfpq" and isinstance(index, FaissIndex) and not (options and options.nlist):
        automatic = ivf_lists(n, replace(index.options, nlist=0))  # what a rebuild would get
        return automatic <= IVF_OUTGROWN * index.options.nlist
    return True


def sync_vector_index(
    store: Store,
    stale: VectorIndex | None,
    backend: str,
    dim: int,
    options: VectorIndexOptions | None = None,
) -> SyncResult:
    """An index of every vector in ``store``: ``stale`` updated in place, or a new one.

    Args:
        store: The database (the source of truth).
        stale: An index built from an earlier state of this database, or ``None``.
        backend: The kind asked for (``auto`` or one of the kinds).
        dim: The width of the stored vectors.
        options: Build settings (the milvus kind's URI and collection).
    """
    if stale is not None and stale.dim == dim:
        stored = store.vector_ids()  # ascending
        have = np.sort(stale.ids())
        gone = np.setdiff1d(have, stored, assume_unique=True)
        new = np.setdiff1d(stored, have, assume_unique=True)
        changed = len(gone) + len(new)
        if kind_fits(
            stale, backend, len(stored), options
        ) and changed <= REBUILD_CHANGED_FRACTION * max(len(have), 1):
            stale.remove(gone)
            ids, vectors = store.vectors_by_id(new, dim)
            stale.add(ids, vectors)
            if not stale.needs_rebuild:
                log.info("vector index updated: +%d -%d vectors", len(ids), len(gone))
                return SyncResult(stale, len(ids), len(gone), rebuilt=False)
    ids, vectors = store.all_vectors(dim)
    index = build_vector_index(ids, vectors, kind=backend, dim=dim, options=options)
    return SyncResult(index, len(ids), 0, rebuilt=True)


@dataclass(frozen=True)
class BackendChoice:
    """The vector index asked for: a kind, and where Milvus keeps it when the kind is milvus."""

    kind: str = "auto"  # auto, exact, flat, hnsw, ivfpq, milvus
    milvus_uri: str | None = None  # a Milvus Lite file or http://host:port; None: DB/milvus.db
    milvus_collection: str | None = None  # None: "crossmodal"


def vector_backend(store: Store, config: BackendChoice) -> tuple[str, VectorIndexOptions | None]:
    """The vector index kind and settings: the choice's, or the one recorded.

    An explicit kind (``--backend hnsw``, ``milvus`` with its URI and collection) is recorded
    in the database, so that later opens (searches, a plain ``crossmodal index``) keep it
    without being told again; ``auto`` means "as recorded" (and the size-based default when
    nothing is). A change of kind is logged as a warning.
    """
    recorded = _recorded_backend(store)
    if config.kind == "auto":
        target = recorded or {"kind": "auto"}
    else:
        target = {"kind": config.kind}
        if config.kind == "milvus":
            uri = config.milvus_uri or str(store.directory / "milvus.db")
            if "://" not in uri:
                uri = os.path.abspath(os.path.expanduser(uri))
            target |= {"uri": uri, "collection": config.milvus_collection or "crossmodal"}
        if recorded != target:
            if recorded is not None:
                log.warning(
                    "vector index: %s until now, %s from now on (as asked; later runs keep it)",
                    _describe(recorded),
                    _describe(target),
                )
            with store.transaction():
                store.set_meta(BACKEND_KEY, json.dumps(target))
    if target["kind"] != "milvus":
        return target["kind"], None
    options = VectorIndexOptions(milvus_uri=target["uri"], milvus_collection=target["collection"])
    return "milvus", options


def _recorded_backend(store: Store) -> dict[str, str] | None:
    text = store.get_meta(BACKEND_KEY) or ""
    if not text:
        return None
    recorded: dict[str, str] = json.loads(text)
    if "kind" not in recorded:  # written before other kinds were recorded: milvus's target
        recorded = {"kind": "milvus", **recorded}
    return recorded


def _describe(target: dict[str, str]) -> str:
    if target["kind"] == "milvus":
        return f"milvus ({target['uri']}, collection {target['collection']})"
    return target["kind"]


class DerivedVectors:
    """The vector index of one index directory, kept in step with its database.

    In memory while the database generation is unchanged; otherwise loaded from
    ``vectors.idx`` if that is current, else brought up to date (:func:`sync_vector_index`)
    and saved atomically with the generation it reflects. Also holds the fixed sample of
    stored vectors that relevance scores compare a query with.
    """

    def __init__(
        self, store: Store, backend: str, options: VectorIndexOptions | None = None
    ) -> None:
        self.store = store
        self.backend = backend
        self.options = options
        self.path = store.directory / VECTORS_NAME
        self._index: VectorIndex | None = None
        self._generation = -1
        self._null: npt.NDArray[np.float32] | None = None
        if store.created:  # a vector index left beside a new database is not derived from it
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Let go of what the index holds open (a Milvus connection); reopened on use."""
        close = getattr(self._index, "close", None)
        if close is not None:
            close()
            self._index, self._generation = None, -1

    def current(self) -> VectorIndex | None:
        """The index, in step with the database; ``None`` while nothing is indexed."""
        self.refresh()
        return self._index

    def refresh(self) -> SyncResult | None:
        """Bring the index in step; how, or ``None`` if it was (or nothing is indexed)."""
        generation = self.store.generation
        if self._index is not None and self._generation == generation:
            return None
        dim_text = self.store.get_meta("dim")
        if dim_text is None:
            return None
        dim = int(dim_text)
        stale, self._index = self._index, None  # in memory but behind, or None
        if stale is None and self.path.is_file():
            try:
                stale, saved_generation = load_vector_index(self.path)
                # a kind asked for by name must be the saved one (moving to or from Milvus,
                # or --backend exact over a saved HNSW); "auto" takes what was saved
                fits = self.backend == "auto" or kind_fits(
                    stale, self.backend, len(stale), self.options
                )
                if saved_generation == generation and stale.dim == dim and fits:
                    self._index, self._generation = stale, generation
                    return None
                if saved_generation > generation:
                    stale = None  # from another database: its ids mean nothing here
            except CrossmodalError as exc:
                log.warning("%s: %s; rebuilding it from the database", self.path, exc)
        synced = sync_vector_index(self.store, stale, self.backend, dim, self.options)
        try:
            synced.index.save(self.path, generation=generation)
        except OSError as exc:  # a read-only index directory: search from memory
            log.warning("%s: cannot save the vector index (%s)", self.path, exc)
        self._null = None
        self._index, self._generation = synced.index, generation
        return synced

    def null_sample(self, dim: int) -> npt.NDArray[np.float32]:
        """A fixed sample of stored vectors (evenly spaced by id) for relevance scores."""
        if self._null is None:
            self._null = self.store.sample_vectors(dim, NULL_SAMPLE)
        return self._null
