"""``crossmodal data apply-review``: the review page's decisions into a corrected manifest.

    crossmodal data apply-review labels/ decisions.json -o reviewed.jsonl [--drop-unreviewed]

Argument parsing and printing only; the work is in :mod:`crossmodal.prep.review`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_apply_review", "run_apply_review"]


def add_apply_review(commands: Any) -> None:
    """Register ``data apply-review``."""
    p = commands.add_parser(
        "apply-review",
        help="merge review.html's exported decisions into a corrected labels manifest",
        description="Apply the decisions exported from the review page of `crossmodal data "
        "label` (accepted and corrected labels, decisions.json) to LABELS (its labels.jsonl, "
        "or its --out folder) and write the corrected manifest to --out atomically. LABELS is "
        "never changed. Every decision must name an item of LABELS.",
    )
    p.add_argument("labels", help="labels.jsonl, or the --out folder of data label")
    p.add_argument("decisions", type=Path, help="decisions.json exported from review.html")
    p.add_argument("-o", "--out", type=Path, required=True, help="corrected manifest (.jsonl)")
    p.add_argument(
        "--drop-unreviewed",
        action="store_true",
        help="leave out the rows that still need review (keep confident and checked labels)",
    )
    p.set_defaults(data_command="apply-review")


def run_apply_review(args: argparse.Namespace) -> int:
    """Merge and print what the decisions did."""
    from crossmodal.prep.review import apply_review

    result = apply_review(
        args.labels, args.decisions, args.out, drop_unreviewed=args.drop_unreviewed
    )
    print(
        f"{result.accepted:,} accepted, {result.corrected:,} corrected; "
        f"{result.unreviewed:,} still need review"
        + (f" ({result.dropped:,} left out)" if result.dropped else "")
    )
    if result.new_labels:
        print("  new labels (not among the run's): " + ", ".join(result.new_labels))
    print(f"wrote {len(result.rows):,} rows to {result.path}")
    return 0
