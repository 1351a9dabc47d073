"""Query sets: free-text queries with known answers, scored as success@k over a gallery.

A query set is a JSONL file, one query a line::

    {"query": "a puppy", "lang": "en", "kind": "synonym", "answers": ["1F436", "1F415"]}

``answers`` name gallery images by file stem (case-insensitive: ``1f436.png`` answers
``1F436``); ``kind`` (optional) groups the results, e.g. synonym, description, hypernym. A
query succeeds at k when any of its answers is among the k images most similar to it. Every
rate comes with its chance level: for a query with ``a`` answers in a gallery of ``N``
(answers the gallery holds),
images, ``1 - C(N-a, k) / C(N, k)``, averaged over the queries.

The paraphrase set of the default model is ``benchmarks/queries/paraphrases.jsonl``
(``crossmodal eval queries``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.encoders.base import Encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import InputError

__all__ = [
    "QUERY_KS",
    "Query",
    "QueryOutcome",
    "QuerySetResult",
    "chance_success",
    "load_queries",
    "run_queries",
]

QUERY_KS = (1, 5, 10)  # the k of success@k
TOP_KEPT = 5  # images kept per query for the report


@dataclass(frozen=True)
class Query:
    """One query of a query set."""

    text: str  # what the user types
    answers: tuple[str, ...]  # gallery image stems that count as found (upper case)
    lang: str = ""  # its language, "en" or "zh" ("" when not said)
    kind: str = ""  # synonym, description, hypernym, ... ("" when not said)


@dataclass(frozen=True)
class QueryOutcome:
    """How one query fared."""

    query: Query
    rank: int | None  # 1-based rank of its best-ranked answer; None: no answer in the gallery
    top: tuple[str, ...]  # the gallery images ranked first (paths)
    present: int = 1  # how many of its answers the gallery holds (its chance level's a)


@dataclass
class QuerySetResult:
    """A query set's success@k over one gallery, overall and by kind, with chance levels."""

    model: str  # the model's spec
    queries_file: str  # the query set
    gallery: str  # the gallery folder
    n_images: int  # gallery size
    outcomes: list[QueryOutcome]  # one per scored query, in file order
    unanswerable: list[str] = field(default_factory=list)  # queries none of whose answers exist
    seconds: float = 0.0  # wall time of the run

    def chosen(self, kind: str | None = None, lang: str | None = None) -> list[QueryOutcome]:
        """The outcomes of the queries of ``kind`` and ``lang`` (None: any)."""
        return [
            o
            for o in self.outcomes
            if (kind is None or o.query.kind == kind) and (lang is None or o.query.lang == lang)
        ]

    def success(self, k: int, kind: str | None = None, lang: str | None = None) -> float:
        """Share of the chosen queries with an answer in the top ``k``."""
        chosen = self.chosen(kind, lang)
        return sum(o.rank is not None and o.rank <= k for o in chosen) / max(1, len(chosen))

    def chance(self, k: int, kind: str | None = None, lang: str | None = None) -> float:
        """Mean chance level of success@k over the chosen queries."""
        chosen = self.chosen(kind, lang)
        rates = [chance_success(self.n_images, o.present, k) for o in chosen]
        return float(np.mean(rates)) if rates else 0.0

    def kinds(self) -> list[str]:
        """The query kinds present, sorted."""
        return sorted({o.query.kind for o in self.outcomes if o.query.kind})

    def languages(self) -> list[str]:
        """The query languages present, sorted."""
        return sorted({o.query.lang for o in self.outcomes if o.query.lang})

    def to_dict(self) -> dict[str, Any]:
        """The numbers (``results.json``): overall, by kind, and every query's rank."""

        def group(kind: str | None, lang: str | None) -> dict[str, Any]:
            return {
                "n": len(self.chosen(kind, lang)),
                **{f"success@{k}": self.success(k, kind, lang) for k in QUERY_KS},
                **{f"chance@{k}": self.chance(k, kind, lang) for k in QUERY_KS},
            }

        return {
            "task": "queries",
            "model": self.model,
            "queries_file": self.queries_file,
            "gallery": self.gallery,
            "n_images": self.n_images,
            "n_queries": len(self.outcomes),
            "metrics": {f"success@{k}": self.success(k) for k in QUERY_KS},
            "chance": {f"success@{k}": self.chance(k) for k in QUERY_KS},
            "by_lang": {lang: group(None, lang) for lang in self.languages()},
            "by_kind": {kind: group(kind, None) for kind in self.kinds()},
            "queries": [
                {
                    "query": o.query.text,
                    "lang": o.query.lang,
                    "kind": o.query.kind,
                    "answers": list(o.query.answers),
                    "rank": o.rank,
                    "top": list(o.top),
                }
                for o in self.outcomes
            ],  # fmt: skip
            "unanswerable": self.unanswerable,
            "seconds": round(self.seconds, 2),
        }


def chance_success(n_images: int, n_answers: int, k: int) -> float:
    """Chance that a random ranking of ``n_images`` puts one of ``n_answers`` in its top ``k``."""
    if n_answers <= 0 or n_images <= 0:
        return 0.0
    k = min(k, n_images)
    if n_images - n_answers < k:
        return 1.0
    return 1.0 - math.comb(n_images - n_answers, k) / math.comb(n_images, k)


def load_queries(path: str | Path, lang: str | None = None) -> list[Query]:
    """The queries of a JSONL query set, those of ``lang`` only when given.

    Raises:
        InputError: Unreadable file, a line that is not a JSON object, or a query without
            ``query`` text or ``answers`` (named by line number).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the query set ({exc})") from exc
    queries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc})") from exc
        text, answers = (row.get("query"), row.get("answers")) if isinstance(row, dict) else ("", 0)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}:{number}: no 'query' text; each line needs one")
        if not isinstance(answers, list) or not answers:
            raise InputError(f"{path}:{number}: 'answers' must be a non-empty list of image names")
        query = Query(
            text.strip(),
            tuple(str(a).upper() for a in answers),
            str(row.get("lang", "")),
            str(row.get("kind", "")),
        )
        if lang is None or query.lang == lang:
            queries.append(query)
    if not queries:
        which = f" in language {lang!r}" if lang else ""
        raise InputError(f"{path}: no queries{which}")
    return queries


def run_queries(
    encoder: Encoder,
    queries: Sequence[Query],
    images: Sequence[Path],
    *,
    config: EmbedConfig | None = None,
    model_name: str | None = None,
    queries_file: str = "",
    gallery: str = "",
) -> QuerySetResult:
    """Embed the gallery and the queries; rank the gallery for each query.

    Raises:
        InputError: No gallery image, or no query with an answer in the gallery.
    """
    start = time.perf_counter()
    if not images:
        raise InputError(f"{gallery or 'the gallery'}: no images")
    embedder = Embedder(encoder, config or EmbedConfig())
    embedded = embedder.embed_images(list(images), desc="gallery")
    kept = [Path(images[int(i)]) for i in embedded.indices]
    stems = [p.stem.upper() for p in kept]
    answerable = [q for q in queries if set(q.answers) & set(stems)]
    unanswerable = [q.text for q in queries if q not in answerable]
    if not answerable:
        raise InputError(f"{gallery}: no query has an answer among its {len(kept)} images")
    vectors = embedder.embed_texts([q.text for q in answerable])
    scores = vectors @ embedded.vectors.T  # (Q, N)
    order = np.argsort(-scores, axis=1, kind="stable")
    outcomes = []
    for q, row in zip(answerable, order, strict=True):
        hits = [r + 1 for r, i in enumerate(row) if stems[i] in q.answers]
        top = tuple(str(kept[i]) for i in row[:TOP_KEPT])
        outcomes.append(QueryOutcome(q, hits[0] if hits else None, top, len(hits)))
    return QuerySetResult(
        model=model_name or encoder.spec,
        queries_file=queries_file,
        gallery=gallery,
        n_images=len(kept),
        outcomes=outcomes,
        unanswerable=unanswerable,
        seconds=time.perf_counter() - start,
    )
