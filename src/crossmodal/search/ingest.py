"""One commit's worth of indexing: hash files, reuse what is stored, embed the rest.

:class:`~crossmodal.search.index.Index` walks the roots and decides what changed; each chunk
of ``commit_every`` changed files comes here and leaves as one database transaction (files
and their vectors together), so a killed run loses at most the chunk in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crossmodal.data.video import sample_frames
from crossmodal.errors import CrossmodalError, InputError
from crossmodal.index.store import FileRecord, Problem, Store, VectorRecord
from crossmodal.search.entries import Entry, hash_or_reason, problem_of, record_of
from crossmodal.search.results import IndexConfig, IndexReport

if TYPE_CHECKING:
    from crossmodal.encoders.embedder import Embedder

__all__ = ["ChunkIngest"]


@dataclass
class ChunkIngest:
    """Writes chunks of changed files into ``store`` with ``embedder``'s vectors."""

    store: Store
    make_embedder: Callable[[], Embedder]  # called once, only if something is to be embedded
    config: IndexConfig
    _embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.make_embedder()
        return self._embedder

    def run(
        self,
        chunk: list[Entry],
        report: IndexReport,
        problems: list[tuple[Problem, int | None, int | None]],
        features: Mapping[str, npt.NDArray[np.float32]],
    ) -> None:
        """Hash ``chunk``, reuse stored or given vectors, embed the rest, commit them together.

        Files that fail are appended to ``problems``; ``report`` counts the rest.
        """
        records: list[FileRecord] = []
        vectors: list[VectorRecord] = []
        to_embed: dict[str, list[Entry]] = {}  # content hash → files with it
        with ThreadPoolExecutor(self.config.workers) as pool:  # hashlib releases the GIL
            digests = list(pool.map(hash_or_reason, chunk))
        for entry, (digest, reason) in zip(chunk, digests, strict=True):
            if digest is None:
                problems.append(problem_of(entry, reason))
                continue
            if digest in to_embed or not self.store.has_vectors(digest):
                to_embed.setdefault(digest, []).append(entry)
            else:
                records.append(record_of(entry, digest))
                report.reused += 1
        images = [(d, files[0]) for d, files in to_embed.items() if files[0].kind == "image"]
        videos = [(d, files[0]) for d, files in to_embed.items() if files[0].kind == "video"]
        embedded: set[str] = set()
        given = [d for d, _ in images if d in features]  # vectors extracted earlier
        for digest in given:
            vectors.append(VectorRecord(digest, None, features[digest]))
            records += [record_of(f, digest) for f in to_embed[digest]]
            report.precomputed += 1
            report.reused += len(to_embed[digest]) - 1
        images = [(d, f) for d, f in images if d not in features]
        if images:
            embedder = self.embedder
            result = embedder.embed_images([str(f.path) for _, f in images])
            for row, position in enumerate(result.indices.tolist()):
                digest = images[position][0]
                vectors.append(VectorRecord(digest, None, result.vectors[row]))
                embedded.add(digest)
            for position, reason in result.failures:
                problems += [problem_of(f, reason) for f in to_embed[images[position][0]]]
        for digest, entry in videos:
            try:
                frames = self._embed_video(entry, digest)
            except CrossmodalError as exc:
                problems += [problem_of(f, str(exc)) for f in to_embed[digest]]
                continue
            vectors.extend(frames)
            report.frames += len(frames)
            embedded.add(digest)
        for digest in embedded:
            files = to_embed[digest]
            records += [record_of(f, digest) for f in files]
            report.embedded += 1
            report.reused += len(files) - 1
        if records:
            self.store.put_files(records, vectors)

    def _embed_video(self, entry: Entry, digest: str) -> list[VectorRecord]:
        frames = list(sample_frames(entry.path, self.config.video))
        if not frames:
            raise InputError(f"{entry.path}: no frame could be decoded")
        result = self.embedder.embed_images([f.image for f in frames])
        return [
            VectorRecord(digest, frames[position].time, result.vectors[row])
            for row, position in enumerate(result.indices.tolist())
        ]
