"""``crossmodal demo``: the main job on the default model (see crossmodal.search.demo)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the command."""
    p = sub.add_parser(
        "demo",
        help="index the held-out emoji style and search it in English and Chinese",
        description="Build a gallery of OpenMoji drawings (a style the default model never "
        "saw), index it, run English and Chinese queries, print the hits and write a page "
        "of thumbnails (OUT/search.html).",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="work folder (out/demo)")
    p.add_argument("-m", "--model", default=None, help="model spec (the default model)")
    p.add_argument("-k", "--top", type=int, default=5, help="hits printed per query (5)")
    p.add_argument("--offline", action="store_true", help="use only cached emoji sources")
    p.add_argument("--cache-dir", type=Path, default=None, help="emoji source cache")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what it found."""
    from crossmodal.search.demo import RERANK_TOP, run_demo

    result = run_demo(
        args.out,
        model=args.model,
        k=10,
        progress=not args.no_progress and sys.stderr.isatty(),
        offline=args.offline,
        cache_dir=args.cache_dir,
    )
    print(f"indexed {result.gallery} OpenMoji drawings into {result.index_dir}")

    def where(rank: int | None) -> str:
        return f"rank {rank}" if rank is not None else "not in the top 10"

    for q in result.queries:
        found = where(q.rank)
        if q.reranked is not None:
            found += f"; re-ranked: {where(q.reranked_rank)}"
        print(f"\n{q.query!r}  (looking for {q.target!r}: {found})")
        for rank, hit in enumerate(q.hits[: args.top], 1):
            weak = "  (weak match)" if hit.weak else ""
            print(f"  {rank}. {hit.score:.3f}  {hit.caption or hit.path}{weak}")
    n = len(result.queries)
    top10 = sum(q.rank is not None for q in result.queries)
    first = sum(q.rank == 1 for q in result.queries)
    print(f"\n{top10} of {n} queries found their emoji in the top 10 ({first} first)")
    if any(q.reranked is not None for q in result.queries):
        top10 = sum(q.reranked_rank is not None for q in result.queries)
        first = sum(q.reranked_rank == 1 for q in result.queries)
        print(
            f"re-ranking the top {RERANK_TOP} with the shipped re-ranker: {top10} of {n} in the "
            f"top 10 ({first} first)"
        )
    print(f"wrote {result.page}")
    return 0
