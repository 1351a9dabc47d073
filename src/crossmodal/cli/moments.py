"""``crossmodal moments``: where in a video a text is, from attention over its frames.

    crossmodal moments clip.mp4 "a dog jumps" "a red car" --every 1 --plot timeline.png

Samples the video every ``--every`` seconds, and for each query prints the ``--top`` moments
(time, attention weight α over the frames, cosine), and with ``--plot`` draws one timeline
panel per query (:mod:`crossmodal.heads.timeline`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register ``moments``."""
    p = sub.add_parser(
        "moments",
        help="find the moments of a video that match a text (attention over its frames)",
        description="Attention of each text over a video's sampled frames: the best moments "
        "with their weight and cosine, and a timeline plot.",
    )
    p.add_argument("video", help="a video file")
    p.add_argument("queries", nargs="+", help="one or more texts")
    p.add_argument("-m", "--model", help="model spec (default: the embedded emoji-mini)")
    p.add_argument("--every", type=float, default=1.0, help="seconds between frames (1)")
    p.add_argument("--top", type=int, default=5, help="moments printed per query (5)")
    p.add_argument("--plot", type=Path, help="write the timeline PNG here")
    p.add_argument("--json", action="store_true", help="one JSON object per query")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed the frames once, attend with every query, print, plot."""
    from crossmodal.cli.search import clock
    from crossmodal.encoders import DEFAULT_MODEL, load_encoder
    from crossmodal.heads.timeline import plot_timeline, video_moments

    encoder = load_encoder(args.model or DEFAULT_MODEL, device=args.device)
    results = video_moments(encoder, args.video, args.queries, every=args.every)
    for moments in results:
        query = moments.query
        best = moments.top(args.top)
        if args.json:
            print(
                json.dumps(
                    {
                        "query": query,
                        "video": str(args.video),
                        "moments": [{"time": t, "weight": w, "score": s} for t, w, s in best],
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(f"{query}  ({len(moments.times)} frames of {args.video})")
            for t, w, s in best:
                print(f"  {clock(t)}  α {w:.3f}  cosine {s:.3f}")
    if args.plot is not None:
        print(f"wrote {plot_timeline(results, args.plot)}")
    return 0
