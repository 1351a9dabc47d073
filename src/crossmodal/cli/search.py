"""``crossmodal index`` and ``crossmodal search``: the search index from the command line.

    crossmodal index ~/Pictures ~/Videos            # incremental: only new or changed files
    crossmodal index --report                       # files that could not be indexed, and why
    crossmodal index --refresh                      # re-index every folder already indexed
    crossmodal search a dog on the beach            # text (any language the model knows)
    crossmodal search beach + 0.5:./sunset.jpg - people --top 20 --json
    crossmodal search --like ./photo.jpg            # more like this

The index lives in ``--db`` (default ``$CROSSMODAL_DB``, else
``$XDG_DATA_HOME/crossmodal/index``, else ``~/.local/share/crossmodal/index``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from crossmodal.cli.argtypes import count
from crossmodal.cli.prep import add_engine_arguments, ray_config
from crossmodal.errors import InputError
from crossmodal.paths import json_text, printable

EXT_VIDEO_HELP = "seconds between sampled video frames (2)"


def default_db() -> Path:
    """Where the index lives when ``--db`` is not given."""
    if os.environ.get("CROSSMODAL_DB"):
        return Path(os.environ["CROSSMODAL_DB"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "crossmodal" / "index"


def add_parser(sub: Any) -> None:
    """Register ``index`` and ``search``."""
    _add_index_parser(sub)
    _add_search_parser(sub)


def _add_index_parser(sub: Any) -> None:
    p = sub.add_parser(
        "index",
        help="index folders, image files, manifests and videos for search",
        description="Index (or re-index) PATHs: only new or changed files are embedded; "
        "deleted files leave the index; renamed and duplicate files reuse their vectors.",
    )
    p.add_argument("paths", nargs="*", help="folders, image or video files")
    p.add_argument("--db", type=Path, default=None, help="index directory (see above)")
    p.add_argument("-m", "--model", default=None, help="model spec (new index: the default)")
    p.add_argument("--report", action="store_true", help="list the files that failed, and why")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="re-index every folder, file and manifest the index already has (no PATH)",
    )
    p.add_argument(
        "--exclude", action="append", default=[], help="a directory name or glob to skip"
    )
    p.add_argument("--include-hidden", action="store_true", help="index hidden files too")
    p.add_argument("--video-every", type=float, default=2.0, help=EXT_VIDEO_HELP)
    p.add_argument(
        "--video-scene",
        type=float,
        default=None,
        help="also sample a frame when the picture changes by this fraction (0..1)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "exact", "flat", "hnsw", "ivfpq", "milvus"),
        help="vector index (auto: exact up to 20,000 vectors, IVF-PQ above; milvus: "
        "vectors in Milvus, remembered by the index)",
    )
    p.add_argument(
        "--milvus-uri",
        default=None,
        help="with --backend milvus: a Milvus Lite file, or http://HOST:19530 for a Milvus "
        "server (token: $CROSSMODAL_MILVUS_TOKEN); default DB/milvus.db",
    )
    p.add_argument(
        "--milvus-collection", default=None, help="with --backend milvus: the collection name"
    )
    add_engine_arguments(p)
    p.add_argument(
        "--features",
        type=Path,
        action="append",
        default=[],
        help="reuse image vectors from a `crossmodal data extract` folder (same model)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads")
    p.add_argument(
        "--commit-every", type=int, default=256, help="files embedded per transaction (256)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run_index)


def _add_search_parser(sub: Any) -> None:
    s = sub.add_parser(
        "search",
        help="search the index by text, image, or both",
        description='Query words: texts, image paths, "+" and "-" between terms, and '
        "WEIGHT:term, e.g.  beach + 0.5:./sunset.jpg - people",
    )
    s.add_argument("query", nargs="*", help="the query (see above)")
    s.add_argument("--db", type=Path, default=None, help="index directory")
    s.add_argument("--like", help="more like this indexed (or any) image")
    s.add_argument("-k", "--top", type=count, default=10, help="how many hits (10)")
    s.add_argument("--folder", help="only files under this folder")
    s.add_argument("--type", dest="suffixes", action="append", default=[], help="e.g. jpg, png")
    s.add_argument("--videos", action="store_true", help="only video frames")
    s.add_argument("--stills", action="store_true", help="only still images")
    s.add_argument("--after", help="modified on or after this date (YYYY-MM-DD)")
    s.add_argument("--before", help="modified before this date (YYYY-MM-DD)")
    s.add_argument("--json", action="store_true", help="print hits as JSON lines")
    s.add_argument("--html", type=Path, help="also write a page of thumbnails here")
    s.add_argument(
        "--rerank",
        type=count,
        metavar="N",
        help="re-score the top N hits of a text query with a re-ranker: --reranker, or the "
        "one shipped for emoji-mini (crossmodal train --task rerank makes one)",
    )
    s.add_argument(
        "--reranker", type=Path, help="re-ranker weights (.safetensors; default: the shipped one)"
    )
    s.add_argument(
        "--explain",
        action="store_true",
        help="with --html: add a heat map per hit of where the query falls in the picture "
        "(cross-modal attention over its patches; native models)",
    )
    s.set_defaults(run=run_search)


def _load_features(folders: list[Path], model: str) -> dict[str, Any]:
    """Image vectors by content hash from extraction folders (none: an empty mapping)."""
    from crossmodal.prep.extract import load_image_features

    features: dict[str, Any] = {}
    for folder in folders:
        features.update(load_image_features(folder, model))
    return features


def _ray_features(args: argparse.Namespace, index: Any) -> list[Path]:
    """Embed the folders and manifests among the paths on Ray, into resumable shards kept
    in the index directory; the index then takes their vectors instead of embedding."""
    import hashlib

    from crossmodal.prep.extract import ExtractConfig
    from crossmodal.scale.extract import SourceSpec, extract_features_ray
    from crossmodal.search.entries import is_manifest_file

    config = ExtractConfig(shard_size=1000, texts=False, batch_size=args.batch_size)
    folders = []
    for path in (os.path.abspath(p) for p in args.paths):
        if os.path.isdir(path):
            spec = SourceSpec(path, {"tree": True})
        elif is_manifest_file(path):
            spec = SourceSpec(path, {"on_missing": "skip"})
        else:
            continue  # single files (and videos' frames) are embedded here
        out = index.directory / "ray-features" / hashlib.sha256(path.encode()).hexdigest()[:16]
        report = extract_features_ray(
            spec, index.model, out, config, ray_config(args), encoder=index.encoder
        )
        print(f"ray: {report.images} picture(s) of {path} embedded in {report.seconds:.1f}s")
        folders.append(out)
    return folders


def run_index(args: argparse.Namespace) -> int:
    """Index the paths, or print the problem report."""
    from crossmodal.data.video import VideoSampling
    from crossmodal.data.walk import WalkConfig
    from crossmodal.search.index import Index, IndexConfig

    db = args.db or default_db()
    if (args.milvus_uri or args.milvus_collection) and args.backend != "milvus":
        raise InputError("--milvus-uri and --milvus-collection go with --backend milvus")
    if args.refresh and args.paths:
        raise InputError("--refresh re-indexes what the index has: give no PATH with it")
    if args.report and not args.paths and not args.refresh:
        with Index.open(db, create=False) as index:
            return _print_problems(index.problems())
    if not args.paths and not args.refresh:
        raise InputError("nothing to index: give folders or files (or --refresh, --report)")
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:  # before the index folder is made: a typo leaves nothing behind
        raise InputError(f"{printable(missing[0])}: no such file or directory")
    walk = WalkConfig(skip_hidden=not args.include_hidden)
    if args.exclude:
        walk = WalkConfig(skip_hidden=walk.skip_hidden, exclude=walk.exclude + tuple(args.exclude))
    config = IndexConfig(
        model=args.model,
        backend=args.backend,
        milvus_uri=args.milvus_uri,
        milvus_collection=args.milvus_collection,
        walk=walk,
        video=VideoSampling(every=args.video_every, scene=args.video_scene),
        batch_size=args.batch_size,
        workers=args.workers,
        commit_every=args.commit_every,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    with Index.open(db, config, create=not args.refresh) as index:
        folders = list(args.features)
        if args.engine == "ray" and not args.refresh:
            folders += _ray_features(args, index)
        features = _load_features(folders, index.encoder.spec)
        report = index.refresh() if args.refresh else index.add(args.paths, features=features)
        total = len(index)
        model = index.model
        recorded = index.problems()  # this run's, and earlier ones not retried (unchanged)
    earlier = len(recorded) - len(report.problems)
    print(
        f"indexed {report.embedded} new file(s) ({report.frames} video frames), "
        + (f"{report.precomputed} from extracted features, " if report.precomputed else "")
        + "reused "
        f"{report.reused}, unchanged {report.unchanged}, removed {report.removed}, "
        f"{len(report.problems)} new problem(s)"
        + (f" ({earlier} from earlier runs)" if earlier > 0 else "")
        + f" in {report.seconds:.1f}s "
        f"({report.files_per_second:.1f} files/s); {total} file(s) in {db} [{model}]"
    )
    if report.index_rebuilt:
        print(f"search index built from {report.vectors_added} vector(s)")
    elif report.vectors_added or report.vectors_removed:
        print(f"search index updated: +{report.vectors_added} -{report.vectors_removed} vector(s)")
    if args.report:
        _print_problems(recorded)
    elif recorded:
        print(
            f"{len(recorded)} file(s) could not be indexed: crossmodal index --report"
            + (f" --db {args.db}" if args.db else ""),
            file=sys.stderr,
        )
    return 0


def _print_problems(problems: list[Any]) -> int:
    for problem in problems:
        print(f"{printable(problem.path)}\t{problem.reason}")
    print(f"{len(problems)} file(s) not indexed", file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Search and print (and optionally write the HTML page)."""
    from crossmodal.search.index import Index
    from crossmodal.search.query import parse_query
    from crossmodal.search.rerank import load_for_index
    from crossmodal.search.searcher import Searcher, search_filter

    if args.videos and args.stills:
        raise InputError("--videos and --stills exclude each other")
    if args.html is not None and args.html.is_dir():
        raise InputError(f"--html {args.html}: a folder; name the page, e.g. {args.html}/hits.html")
    where = search_filter(
        args.folder,
        "video" if args.videos else ("image" if args.stills else None),
        args.suffixes,
        args.after,
        args.before,
        prefix="--",
    )
    if args.explain and args.html is None:
        raise InputError("--explain draws heat maps into the page: give --html too")
    db = args.db or default_db()
    explain = None
    with Index.open(db, create=False) as index:
        if args.like:
            if args.query:
                raise InputError("give a query or --like, not both")
            hits = index.more_like(args.like, k=args.top)
        else:
            if not args.query:
                raise InputError("empty query: give words, an image path, or --like")
            reranker = load_for_index(index, args.reranker) if args.rerank else None
            searcher = Searcher(index, reranker)
            query = searcher.parsed(parse_query(args.query, cwd=Path.cwd()))
            found = searcher.search(query, k=args.top, where=where, rerank=args.rerank or 0)
            hits = found.hits
            if found.rerank_ms is not None:
                took = f"{found.rerank_ms:.0f} ms"
                print(f"re-ranked the top {found.reranked} in {took}", file=sys.stderr)
            if args.explain:
                explain = _explainer(index, query.vector)
    if args.json:
        for hit in hits:
            print(json_text(json.dumps(hit.as_dict(), ensure_ascii=False)))
    else:
        for rank, hit in enumerate(hits, 1):
            at = f" @ {clock(hit.time)}" if hit.time is not None else ""
            weak = "  (weak match)" if hit.weak else ""
            print(f"{rank:3d}  {hit.score:.3f}  {printable(hit.path)}{at}{weak}")
        if not hits:
            print("no hits", file=sys.stderr)
    if args.html is not None:
        from crossmodal.search.page import write_results_page

        title = args.like or " ".join(args.query)
        written = write_results_page(args.html, title, [(title, hits)], explain=explain)
        print(f"wrote {written}", file=sys.stderr)
    return 0


def _explainer(index: Any, query: Any) -> Any:
    """Hit → occlusion heat map of the query vector over the hit (any model)."""
    from crossmodal.heads.heatmap import query_heatmap

    encoder = index.encoder

    def explain(hit: Any) -> Any:
        return query_heatmap(encoder, hit.path, query, time=hit.time, size=160)

    return explain


def clock(seconds: float) -> str:
    """``m:ss.ss`` (``h:mm:ss.ss`` past an hour): a time in a video."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"
