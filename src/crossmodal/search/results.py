"""What the search index is configured with and what it returns: config, filter, hits, report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from crossmodal.data.video import VideoSampling
from crossmodal.data.walk import WalkConfig
from crossmodal.errors import ConfigError
from crossmodal.index.store import Problem
from crossmodal.index.sync import BackendChoice
from crossmodal.paths import to_text
from crossmodal.search.relevance import WEAK_RELEVANCE

__all__ = ["WEAK_RELEVANCE", "Hit", "IndexConfig", "IndexReport", "SearchFilter"]


@dataclass(frozen=True)
class IndexConfig:
    """How an index embeds and stores."""

    model: str | None = None  # model spec; None: the index's own, or the default model
    backend: str = "auto"  # vector index kind: auto, exact, flat, hnsw, ivfpq, milvus
    milvus_uri: str | None = (
        None  # milvus: a Milvus Lite file or http://host:port; None: DB/milvus.db
    )
    milvus_collection: str | None = None  # milvus: the collection; None: "crossmodal"
    walk: WalkConfig = field(default_factory=WalkConfig)
    video: VideoSampling = field(default_factory=VideoSampling)
    batch_size: int = 32  # images per forward pass
    workers: int = 2  # decoding threads
    commit_every: int = 256  # files embedded per database transaction
    progress: bool = False  # a progress bar (files/s, ETA) on stderr

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1 or self.commit_every < 1:
            raise ConfigError("batch_size, workers and commit_every must be at least 1")

    @property
    def vectors(self) -> BackendChoice:
        """The vector index this config asks for."""
        return BackendChoice(self.backend, self.milvus_uri, self.milvus_collection)


@dataclass
class IndexReport:
    """What one :meth:`Index.add` did."""

    embedded: int = 0  # files whose content was embedded
    reused: int = 0  # new or changed files whose content was already embedded
    precomputed: int = 0  # files whose vector came from extracted features (not embedded)
    unchanged: int = 0  # files skipped because path, size and mtime were unchanged
    removed: int = 0  # files that left the index (deleted from disk)
    frames: int = 0  # video frames embedded
    problems: list[Problem] = field(default_factory=list)  # files not indexed, with reasons
    vectors_added: int = 0  # vectors put into the search index (all of them on a rebuild)
    vectors_removed: int = 0  # vectors taken out of the search index
    index_rebuilt: bool = False  # the search index was rebuilt rather than updated
    cancelled: bool = False  # embedding stopped early on request (see Index.add's should_stop)
    seconds: float = 0.0  # wall time of the run

    @property
    def files_per_second(self) -> float:
        """Embedded files per second of the whole run."""
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class SearchFilter:
    """Which files a search may return."""

    folder: str | None = None  # only files under this folder
    kind: Literal["image", "video"] | None = None  # stills or video frames only
    suffixes: tuple[str, ...] = ()  # file types, e.g. (".png", ".jpg")
    after: float | None = None  # modified at or after this POSIX time
    before: float | None = None  # modified before this POSIX time

    def sql(self) -> tuple[str, list[object]]:
        """A ``WHERE`` clause over ``files f`` and its parameters (``"1"`` when empty)."""
        clauses: list[str] = []
        params: list[object] = []
        if self.folder is not None:
            folder = os.path.abspath(os.path.expanduser(self.folder)).rstrip(os.sep) + os.sep
            folder = to_text(folder)  # paths are stored in their text form (crossmodal.paths)
            clauses.append("substr(f.path, 1, ?) = ?")
            params += [len(folder), folder]
        if self.kind is not None:
            clauses.append("f.kind = ?")
            params.append(self.kind)
        if self.suffixes:
            ors = " OR ".join("lower(f.path) LIKE ?" for _ in self.suffixes)
            clauses.append(f"({ors})")
            params += ["%" + s.lower() for s in self.suffixes]
        if self.after is not None:
            clauses.append("f.mtime_ns >= ?")
            params.append(int(self.after * 1e9))
        if self.before is not None:
            clauses.append("f.mtime_ns < ?")
            params.append(int(self.before * 1e9))
        return (" AND ".join(clauses) or "1"), params

    @property
    def empty(self) -> bool:
        """True when the filter lets everything through."""
        return self == SearchFilter()


@dataclass(frozen=True)
class Hit:
    """One search result.

    ``score`` is the cosine similarity of the query and the picture. ``relevance`` says how
    far the score stands out, in standard deviations: for a text query, above the picture's
    scores for a fixed bank of everyday texts; for an image or mixed query, above the
    query's scores over a sample of the collection (:mod:`crossmodal.search.relevance`).
    Raw cosine scores drift with the model, the query and the picture; a true match stands
    out. ``weak`` is ``relevance < WEAK_RELEVANCE`` for text queries and ``relevance <
    WEAK_RELEVANCE_COLLECTION`` for the others (never set for them over fewer than
    ``MIN_SAMPLE`` pictures); see the README for how the thresholds were calibrated.
    """

    path: str
    score: float
    relevance: float
    weak: bool
    kind: str  # "image" or "video"
    time: float | None  # seconds into the video, for a video frame
    caption: str | None
    size: int
    mtime: float  # POSIX seconds
    rerank: float | None = None  # the re-ranker's score, when the hit was re-ranked

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "relevance": round(self.relevance, 3),
            "weak": self.weak,
            "kind": self.kind,
            "time": self.time,
            "caption": self.caption,
            "size": self.size,
            "mtime": self.mtime,
            **({} if self.rerank is None else {"rerank": round(self.rerank, 4)}),
        }
