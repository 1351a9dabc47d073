"""One searcher behind every front door: the CLI, ``POST /api/search`` and ``/knn-service``.

    searcher = Searcher(index, reranker)
    query = searcher.query([QueryPart(1.0, text="a red car"), QueryPart(-0.5, text="night")])
    found = searcher.search(query, k=10, where=SearchFilter(suffixes=(".jpg",)), rerank=20)

A front door turns its request into weighted :class:`QueryPart` s (texts, and pictures as
unit vectors: an image file embedded, an upload, an indexed file's stored vector) and calls
:meth:`Searcher.search`. The :class:`SearchQuery` knows its vector and whether it is made of
texts only, which decides how relevance is judged (against the query bank in the texts'
language, else against the collection) and whether it can be re-ranked (one text, nothing
else). So the same query and filters give the same hits and relevance through every door.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError, InputError
from crossmodal.search.query import unit_sum
from crossmodal.search.results import Hit, SearchFilter

if TYPE_CHECKING:
    from crossmodal.heads.rerank import Reranker
    from crossmodal.search.index import Index
    from crossmodal.search.query import Query

__all__ = ["Found", "QueryPart", "SearchQuery", "Searcher", "parse_date", "search_filter"]


@dataclass(frozen=True)
class QueryPart:
    """One weighted part of a query: a text, or a picture's unit vector."""

    weight: float
    text: str | None = None
    vector: npt.NDArray[np.float32] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.vector is None):
            raise InputError("a query part is either a text or a picture's vector")


@dataclass(frozen=True)
class SearchQuery:
    """A query ready to search: its unit vector; its texts when it is made of texts only."""

    vector: npt.NDArray[np.float32] = field(compare=False)
    texts: tuple[str, ...] | None = None  # texts only: relevance against the query bank
    rerankable: bool = False  # one text of positive weight and nothing else


@dataclass
class Found:
    """What a search found: the hits, best first, and how long re-ranking took."""

    hits: list[Hit]
    rerank_ms: float | None = None  # None: not re-ranked
    reranked: int = 0  # hits re-scored (some may lie past the k shown)


class Searcher:
    """Searches one :class:`~crossmodal.search.index.Index`, re-ranking on request."""

    def __init__(self, index: Index, reranker: Reranker | None = None) -> None:
        self.index = index
        self.reranker = reranker

    def query(self, parts: Sequence[QueryPart]) -> SearchQuery:
        """The normalised weighted sum of the parts (texts embedded by the index's model).

        Raises:
            InputError: No parts, or parts that cancel out.
        """
        if not parts:
            raise InputError("empty query: give a text, a picture, or both")
        texts = [p.text for p in parts if p.text is not None]
        vectors: Iterator[npt.NDArray[np.float32]] = iter(
            self.index.text_vectors(texts) if texts else []
        )
        weighted = [(p.weight, next(vectors) if p.vector is None else p.vector) for p in parts]
        only_texts = len(texts) == len(parts)
        one_text = only_texts and len(parts) == 1 and parts[0].weight > 0
        return SearchQuery(unit_sum(weighted), tuple(texts) if only_texts else None, one_text)

    def parsed(self, query: Query) -> SearchQuery:
        """A parsed query (``a red car + 0.5:photo.jpg - night``): image terms embedded
        from their files (an undecodable file raises, naming it)."""
        vector = self.index.query_vector(query)
        texts = tuple(t.text for t in query.terms if t.text is not None)
        only_texts = len(texts) == len(query.terms)
        one_text = only_texts and len(texts) == 1 and query.terms[0].weight > 0
        return SearchQuery(vector, texts if only_texts else None, one_text)

    def vector(self, vector: npt.ArrayLike) -> SearchQuery:
        """A query given as an embedding (clip-retrieval's ``embedding_input``).

        Raises:
            InputError: Not ``dim`` finite numbers, or all zero.
        """
        array = np.asarray(vector, dtype=np.float64)
        dim = self.index.encoder.dim
        norm = float(np.linalg.norm(array)) if array.shape == (dim,) else 0.0
        if array.shape != (dim,) or not np.isfinite(norm) or norm == 0:
            raise InputError(f"the query vector must be {dim} finite numbers, not all zero")
        return SearchQuery((array / norm).astype(np.float32))

    def search(
        self, query: SearchQuery, k: int = 10, where: SearchFilter | None = None, rerank: int = 0
    ) -> Found:
        """The ``k`` best hits for ``query`` that pass ``where``; ``rerank`` > 0 re-scores
        the top ``rerank`` with the re-ranker first.

        Raises:
            ConfigError: ``k`` < 1, ``rerank`` < 0, or ``rerank`` asked of a searcher without
                a re-ranker.
            InputError: ``rerank`` asked for a query that is not one text.
        """
        if k < 1 or rerank < 0:
            raise ConfigError(f"k must be at least 1 and rerank at least 0, not {k} and {rerank}")
        if rerank:
            if self.reranker is None:
                raise ConfigError(
                    f"no re-ranker for {self.index.model}: train one (crossmodal train --task "
                    "rerank) and give it to the search (--reranker PATH)"
                )
            if not query.rerankable:
                raise InputError("re-ranking re-scores a text query: give one text, nothing else")
        hits = self.index.search(
            vector=query.vector, texts=query.texts, k=max(k, rerank), where=where
        )
        if not rerank or self.reranker is None:
            return Found(hits[:k])
        from crossmodal.search.rerank import rerank_hits

        started = time.perf_counter()
        rescored = rerank_hits(self.index, self.reranker, query.vector, hits, rerank)
        took = round((time.perf_counter() - started) * 1e3, 1)
        return Found(rescored[:k], took, min(rerank, len(hits)))


def parse_date(text: str | None, name: str) -> float | None:
    """``YYYY-MM-DD`` (or an ISO date-time) as a POSIX time; None stays None.

    Raises:
        InputError: Not a date (the message names ``name``, the field or flag).
    """
    if text is None:
        return None
    try:
        day = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"{name} {text!r}: not a date; use YYYY-MM-DD") from exc
    return day.timestamp()


def search_filter(
    folder: str | None = None,
    kind: Literal["image", "video"] | None = None,
    suffixes: Sequence[str] = (),
    after: str | None = None,
    before: str | None = None,
    *,
    prefix: str = "",
) -> SearchFilter:
    """The filter every front door accepts: a folder, stills or video frames, file types
    (``jpg`` or ``.JPG``), modified on or after / before a ``YYYY-MM-DD`` date.

    Raises:
        InputError: A date that is not one (named with ``prefix``, e.g. ``--after``).
    """
    return SearchFilter(
        folder=folder,
        kind=kind,
        suffixes=tuple("." + s.lower().lstrip(".") for s in suffixes if s.strip(".")),
        after=parse_date(after, f"{prefix}after"),
        before=parse_date(before, f"{prefix}before"),
    )
