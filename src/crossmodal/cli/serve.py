"""``crossmodal serve``: the HTTP API over a search index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from crossmodal.cli.argtypes import port

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the command."""
    p = sub.add_parser(
        "serve",
        help="serve search over HTTP (JSON API)",
        description="Serve the index over HTTP: POST /api/search, POST /api/search/upload, "
        "GET /api/thumb/ID, GET /api/file/ID, GET /api/health, index jobs under /api/index, "
        "clip-retrieval's /knn-service; the search page at /; schema at /openapi.json. "
        "Binds 127.0.0.1 unless --host says otherwise, which then needs a bearer token.",
    )
    p.add_argument("--db", type=Path, default=None, help="index directory (as for index)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port (8000; 0: any free port)")
    p.add_argument(
        "--token",
        default=os.environ.get("CROSSMODAL_TOKEN"),
        help="bearer token every /api call must carry (default $CROSSMODAL_TOKEN)",
    )
    p.add_argument("--max-k", type=int, default=200, help="the most hits per search (200)")
    p.add_argument(
        "--root",
        action="append",
        default=[],
        help="a folder POST /api/index may index (repeatable; none: management off)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin allowed to call the API from a browser (repeatable; none: no CORS)",
    )
    p.add_argument(
        "--reranker",
        type=Path,
        default=None,
        help='re-ranker weights (.safetensors) for text searches that ask for "rerank": N '
        "(default: the one shipped for emoji-mini, when the index uses it)",
    )
    p.add_argument(
        "--fetch-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a host image_url may fetch pictures from (repeatable; none: fetching off). "
        "A name must resolve to public addresses; name a private server by its IP address",
    )
    p.add_argument("--fetch-max-mb", type=float, default=10.0, help="largest fetched picture")
    p.add_argument("--fetch-timeout", type=float, default=5.0, help="seconds per fetch (5)")
    p.add_argument(
        "--public-url",
        help="the URL clients reach this server at, for the links in /knn-service answers "
        "(default: this server's address on loopback, else relative links)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from crossmodal.cli.search import default_db
    from crossmodal.service.app import serve
    from crossmodal.service.settings import ServiceSettings

    settings = ServiceSettings(
        db=args.db or default_db(),
        host=args.host,
        port=args.port,
        token=args.token or None,
        max_k=args.max_k,
        roots=tuple(args.root),
        cors_origins=tuple(args.cors_origin),
        reranker=args.reranker,
        fetch_hosts=tuple(args.fetch_host),
        fetch_max_bytes=int(args.fetch_max_mb * 2**20),
        fetch_timeout=args.fetch_timeout,
        public_url=args.public_url,
    )
    serve(settings)
    return 0
