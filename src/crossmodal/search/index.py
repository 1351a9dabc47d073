"""The search index: incremental indexing of folders, manifests and videos, and search.

    index = Index.open("~/.local/share/crossmodal/index")
    report = index.add(["~/Pictures"])           # only new or changed files are embedded
    hits = index.search(text="a dog on a beach", k=10)
    hits = index.search(query=parse_query("beach + 0.5:./sunset.jpg - people"))

How indexing stays incremental (the rclip recipe, plus content hashes):

* a file whose path, size and mtime are unchanged since it was indexed is skipped unread;
* otherwise its content is hashed; content already embedded (a renamed, copied or touched
  file) reuses the stored vectors, and only content never seen is embedded;
* indexed files under the given roots that no longer exist leave the index (with their
  vectors, unless another file shares the content);
* files that cannot be read are recorded as problems with the reason, and retried only
  once they change (``problems()``, ``crossmodal index --report``).

Embedded files are committed to SQLite every ``commit_every`` files, each batch in one
transaction with its vectors, so a killed run loses at most the batch in flight and the
next run finishes the job; nothing is duplicated (paths and (content, frame) are unique
keys). The vector index used for search is brought up to date from the database whenever
its saved generation is behind: updated by the vectors added and removed since, or rebuilt
when that would give a worse index (see :mod:`crossmodal.index.sync`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from crossmodal.errors import ConfigError, InputError, StaleWeightsError
from crossmodal.index.lock import writer_lock
from crossmodal.index.store import Problem, Store
from crossmodal.index.sync import NULL_SAMPLE, VECTORS_NAME, DerivedVectors, vector_backend
from crossmodal.search.entries import Entry, find_entries, is_manifest_file
from crossmodal.search.hits import expand_hits
from crossmodal.search.ingest import ChunkIngest
from crossmodal.search.query import Query, unit_sum
from crossmodal.search.relevance import (
    WEAK_RELEVANCE,
    WEAK_RELEVANCE_COLLECTION,
    QueryBank,
    hit_relevance,
)
from crossmodal.search.results import Hit, IndexConfig, IndexReport, SearchFilter

if TYPE_CHECKING:
    from crossmodal.encoders.base import Encoder
    from crossmodal.encoders.embedder import Embedder

__all__ = [
    "NULL_SAMPLE",
    "VECTORS_NAME",
    "WEAK_RELEVANCE",
    "WEAK_RELEVANCE_COLLECTION",
    "Hit",
    "Index",
    "IndexConfig",
    "IndexReport",
    "SearchFilter",
]

log = logging.getLogger(__name__)


class Index:
    """A search index in one directory: SQLite metadata plus a derived vector index."""

    def __init__(self, store: Store, config: IndexConfig) -> None:
        self.store = store
        self.config = config
        self.directory = store.directory
        recorded = store.get_meta("model")
        if config.model is not None and recorded is not None and config.model != recorded:
            raise ConfigError(
                f"{self.directory} was indexed with model {recorded!r}, not {config.model!r}; "
                "search it with that model, or index into another --db"
            )
        from crossmodal.encoders import DEFAULT_MODEL

        self.model = recorded or config.model or DEFAULT_MODEL
        self._encoder: Encoder | None = None
        self._vectors = DerivedVectors(store, *vector_backend(store, config.vectors))
        self._bank: QueryBank | None = None
        self._weights: str | None = None  # fingerprint of the model's weights, when read

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        config: IndexConfig | None = None,
        *,
        create: bool = True,
        threads: bool = False,
    ) -> Index:
        """Open the index in ``directory`` (made when missing and ``create``).

        ``threads=True`` allows calls from several threads, one at a time (see :class:`Store`).
        """
        path = Path(os.path.expanduser(directory))
        return cls(Store(path, create=create, threads=threads), config or IndexConfig())

    def close(self) -> None:
        """Close the database (and a Milvus connection, which frees a Milvus Lite file)."""
        self._vectors.close()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Number of indexed files."""
        return self.store.file_count()

    @property
    def encoder(self) -> Encoder:
        """The index's model, loaded on first use."""
        if self._encoder is None:
            from crossmodal.encoders import load_encoder

            self.check_weights()
            self._encoder = load_encoder(self.model)
            dim = self.store.get_meta("dim")
            if dim is not None and int(dim) != self._encoder.dim:
                raise ConfigError(
                    f"{self.directory}: stored vectors have {dim} dimensions but model "
                    f"{self.model!r} makes {self._encoder.dim}"
                )
        return self._encoder

    def weights(self) -> str:
        """The fingerprint of the weights this index's model loads now ("" when unknown)."""
        if self._weights is None:
            from crossmodal.encoders.fingerprint import weights_fingerprint

            self._weights = weights_fingerprint(self.model)
        return self._weights

    def check_weights(self) -> None:
        """Refuse to mix vectors of other weights under the same model name.

        Raises:
            StaleWeightsError: The index recorded other weights than the model loads now (the
                package's bundled weights changed, or the ``@file`` was replaced).
        """
        recorded = self.store.get_meta("weights")
        if recorded and self.weights() and recorded != self.weights():
            raise StaleWeightsError(
                f"{self.directory}: its vectors were made by other weights of {self.model!r} "
                f"than it loads now (recorded {recorded}, now {self.weights()}; a new release's "
                "bundled weights, or a replaced weights file): remove the index folder and "
                "index again, or index into another --db"
            )

    # ------------------------------------------------------------------ indexing

    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        features: Mapping[str, npt.NDArray[np.float32]] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Bring the index up to date with ``paths`` (folders, files): see the module doc.

        ``features`` maps file content hashes to image vectors made earlier by the index's
        model (:func:`crossmodal.prep.extract.load_image_features`): a new image whose
        content has one is stored with it instead of being embedded again.

        ``should_stop`` is asked between commits; when it answers True, embedding stops there
        (``report.cancelled``). What was committed stays, the search index is brought up to
        date with it, and a later ``add`` of the same paths finishes the job.

        Raises:
            InputError: A path does not exist, or another process is indexing here.
        """
        started = time.perf_counter()
        report = IndexReport()
        roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        for root in roots:
            if not os.path.lexists(root):
                raise InputError(f"{root}: no such file or directory")
        with writer_lock(self.directory):
            self._record_model()
            known = self.store.files_under(roots)
            old_problems = self.store.problem_stamps(roots)
            manifests = {r for r in roots if is_manifest_file(r)}
            seen: set[str] = set()
            todo: list[Entry] = []
            problems: list[tuple[Problem, int | None, int | None]] = []
            for entry in find_entries(roots, manifests, self.config.walk):
                path = str(entry.path)
                seen.add(path)
                if isinstance(entry, Problem):
                    problems.append((entry, None, None))
                    continue
                record = known.get(path)
                stamp = (entry.size, entry.mtime_ns)
                if record and (record.size, record.mtime_ns, record.caption) == (
                    *stamp,
                    entry.caption,
                ):
                    report.unchanged += 1
                elif old_problems.get(path) == stamp:
                    continue  # still broken, unchanged since: not retried
                else:
                    todo.append(entry)
            gone = [
                p
                for p, record in known.items()
                if p not in seen and (record.root in manifests or not os.path.lexists(p))
            ]
            # new files first, so that renamed files find their old content's vectors
            self._index_files(todo, report, problems, features or {}, should_stop)
            if gone:
                self.store.remove_files(gone)
                report.removed = len(gone)
            vanished = [p for p in old_problems if p not in seen and not os.path.lexists(p)]
            if vanished:
                self.store.forget_problems(vanished)
            if problems:
                self.store.put_problems(problems)
            report.problems = [p for p, _, _ in problems]
            synced = self._vectors.refresh()
            if synced is not None:
                report.vectors_added = synced.added
                report.vectors_removed = synced.removed
                report.index_rebuilt = synced.rebuilt
        report.seconds = time.perf_counter() - started
        return report

    def refresh(
        self,
        allowed: Callable[[str], bool] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Re-index every root the index already has (the folders and manifests once added).

        Changed files are embedded again, deleted ones leave, new ones come in, as ``add``
        does; a root that no longer exists takes its files out of the index. ``allowed``
        limits the roots (the service passes its ``--root`` check).
        """
        roots = [r for r in self.store.roots() if allowed is None or allowed(r)]
        present = [r for r in roots if os.path.lexists(r)]
        report = self.add(present, should_stop=should_stop) if present else IndexReport()
        gone = [r for r in roots if r not in present]
        if gone:
            report.removed += self.remove(gone)
        return report

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Forget files (by path, or every file under a folder); returns how many."""
        targets = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        with writer_lock(self.directory):
            indexed = self.store.files_under([])
            drop = [
                p
                for p in indexed
                if any(p == t or p.startswith(t.rstrip(os.sep) + os.sep) for t in targets)
            ]
            if drop:
                self.store.remove_files(drop)
                self._vectors.refresh()
        return len(drop)

    def problems(self) -> list[Problem]:
        """Files that could not be indexed, with the reason."""
        return self.store.problems()

    def _record_model(self) -> None:
        if self.store.get_meta("model") is None:
            with self.store.transaction():
                self.store.set_meta("model", self.model)
                self.store.set_meta("dim", str(self.encoder.dim))
        if self.store.get_meta("weights") is None and self.weights():
            with self.store.transaction():  # an older index learns its weights here
                self.store.set_meta("weights", self.weights())

    def _index_files(
        self,
        todo: list[Entry],
        report: IndexReport,
        problems: list[tuple[Problem, int | None, int | None]],
        features: Mapping[str, npt.NDArray[np.float32]],
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Hash, reuse or embed ``todo``, committing every ``commit_every`` files."""
        bar = tqdm(
            total=len(todo),
            desc="indexing",
            unit="file",
            disable=not self.config.progress,
            dynamic_ncols=True,
        )
        ingest = ChunkIngest(self.store, self._embedder, self.config)
        with bar:
            for start in range(0, len(todo), self.config.commit_every):
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    break
                chunk = todo[start : start + self.config.commit_every]
                ingest.run(chunk, report, problems, features)
                bar.update(len(chunk))

    def _embedder(self) -> Embedder:
        from crossmodal.encoders.embedder import EmbedConfig, Embedder

        config = EmbedConfig(
            batch_size=self.config.batch_size, workers=self.config.workers, on_error="skip"
        )
        return Embedder(self.encoder, config)

    # ------------------------------------------------------------------ search

    def text_vectors(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(N, D) unit vectors of ``texts`` by the index's model."""
        return self._embedder().embed_texts(texts)

    def query_vector(self, query: Query) -> npt.NDArray[np.float32]:
        """The unit vector of a query: the normalised weighted sum of its terms.

        Raises:
            InputError: The terms cancel out, or an image term does not decode.
        """
        texts = [t for t in query.terms if t.text is not None]
        images = [t for t in query.terms if t.image is not None]
        parts: list[tuple[float, npt.NDArray[np.float32]]] = []
        if texts:
            vectors = self.text_vectors([t.text for t in texts if t.text is not None])
            parts += [(t.weight, v) for t, v in zip(texts, vectors, strict=True)]
        if images:
            from crossmodal.encoders.embedder import EmbedConfig, Embedder

            strict = Embedder(self.encoder, EmbedConfig(on_error="raise"))
            result = strict.embed_images([str(t.image) for t in images])
            parts += [(t.weight, v) for t, v in zip(images, result.vectors, strict=True)]
        return unit_sum(parts)

    def search(
        self,
        text: str | Sequence[str] | None = None,
        image: str | Path | Sequence[str | Path] | None = None,
        *,
        query: Query | None = None,
        vector: npt.NDArray[np.float32] | None = None,
        texts: Sequence[str] | None = None,
        k: int = 10,
        where: SearchFilter | None = None,
    ) -> list[Hit]:
        """The ``k`` best files for a text, an image, both, a parsed query, or a vector.

        A file whose picture matches several times (video frames) appears once per frame;
        identical files (same content) each appear, with the same score. A query of texts
        only has its hits' relevance measured against the query bank (see
        :mod:`crossmodal.search.relevance`); pass ``texts`` with a ``vector`` made from
        texts only, so that it is too.
        """
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if vector is None:
            query = query if query is not None else Query.of(text, image)
            vector = self.query_vector(query)
            if all(term.text is not None for term in query.terms):
                texts = [term.text for term in query.terms if term.text is not None]
        index = self._vectors.current()
        if index is None or len(index) == 0:
            return []
        where = where or SearchFilter()
        allowed = None
        if not where.empty:
            sql, params = where.sql()
            allowed = self.store.vector_ids_where(sql, params)
            if len(allowed) == 0:
                return []
        hits: list[Hit] = []
        stored = len(index) if allowed is None else len(allowed)
        fetch = min(k, stored)  # never more than there is: k may be huge
        while True:
            scores, ids = index.search(vector[None, :], fetch, allowed=allowed)
            pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            relevance, threshold = hit_relevance(
                vector, pairs, texts, self.store, self._vectors, lambda: self.query_bank
            )
            hits = expand_hits(self.store, pairs, where, relevance, threshold)
            if len(hits) >= k or len(pairs) < fetch or fetch >= stored:
                return hits[:k]
            fetch = min(fetch * 4, stored)  # files filtered out after expansion: ask for more

    @property
    def query_bank(self) -> QueryBank:
        """The query bank's vectors for this index's model (kept in the index directory)."""
        if self._bank is None:
            embedder = self._embedder()
            self._bank = QueryBank(
                embedder.embed_texts, f"{self.model}\0{self.weights()}", self.directory
            )
        return self._bank

    def more_like(self, path: str | os.PathLike[str], k: int = 10) -> list[Hit]:
        """Image → image: files most like ``path`` (its stored vector if indexed)."""
        stored = self.store.vector_of_file(os.path.abspath(path))
        if stored is not None:
            return self.search(vector=stored, k=k)
        return self.search(image=Path(path), k=k)
