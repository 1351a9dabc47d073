"""Local multimodal search: index files, find them by text, image or both.

    from crossmodal.search import Index, SearchFilter, parse_query

    with Index.open("~/.local/share/crossmodal/index") as index:
        index.add(["~/Pictures"])
        hits = index.search(text="a dog on the beach", k=10)

Modules: ``index`` (the :class:`Index`: incremental indexing and search), ``results``
(config, filter, hits, report), ``entries`` (what to index), ``store`` (SQLite,
the source of truth), ``vectors`` (exact and FAISS vector indexes), ``sync`` (keeping
them in step with the database), ``query`` (the query language), ``page`` (the HTML page
of hits), ``lock`` (one writer) and ``demo`` (``crossmodal demo``). Finding files and
sampling video frames are media I/O: :mod:`crossmodal.data.walk`, :mod:`crossmodal.data.video`.
"""

from __future__ import annotations

from crossmodal.search.index import Hit, Index, IndexConfig, IndexReport, SearchFilter
from crossmodal.search.query import Query, Term, parse_query
from crossmodal.search.store import Problem

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
