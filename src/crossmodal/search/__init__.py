"""Local multimodal search: index files, find them by text, image or both.

    from crossmodal.search import Index, SearchFilter, parse_query

    with Index.open("~/.local/share/crossmodal/index") as index:
        index.add(["~/Pictures"])
        hits = index.search(text="a dog on the beach", k=10)

Modules: ``index`` (the :class:`Index`: incremental indexing and search), ``searcher`` (one
searcher behind the CLI and the HTTP doors), ``results`` (config, filter, hits, report),
``entries`` (what to index), ``ingest`` (embedding a chunk of files), ``query`` (the query
language), ``relevance`` (weak-match flags), ``rerank`` (the memory re-ranker on hits),
``page`` (the HTML page of hits) and ``demo`` (``crossmodal demo``). The store, the vector
indexes and their sync are :mod:`crossmodal.index`. Finding files and
sampling video frames are media I/O: :mod:`crossmodal.data.walk`, :mod:`crossmodal.data.video`.
"""

from __future__ import annotations

from crossmodal.index.store import Problem
from crossmodal.search.index import Hit, Index, IndexConfig, IndexReport, SearchFilter
from crossmodal.search.query import Query, Term, parse_query

__all__ = [
    "Hit",
    "Index",
    "IndexConfig",
    "IndexReport",
    "Problem",
    "Query",
    "SearchFilter",
    "Term",
    "parse_query",
]
