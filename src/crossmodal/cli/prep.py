"""``crossmodal data clean`` and ``crossmodal data label``: prepare a dataset of one's own.

Argument parsing and printing only; the work is in :mod:`crossmodal.prep.cleaning` and
:mod:`crossmodal.prep.labeling`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from crossmodal.errors import ConfigError

__all__ = [
    "add_clean",
    "add_engine_arguments",
    "add_extract",
    "add_label",
    "ray_config",
    "run_clean",
    "run_extract",
    "run_label",
]


def _add_source_and_model(p: argparse.ArgumentParser) -> None:
    """SRC, --out and the model options every preparation command takes."""
    from crossmodal.encoders import DEFAULT_MODEL

    p.add_argument("source", help="folder, manifest (.csv/.tsv/.jsonl) or shards (.tar, glob)")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write")
    p.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model spec ({DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16 (onnx: int8)")


def _add_columns(p: argparse.ArgumentParser, caption: bool = True) -> None:
    """Manifest column names (SRC a .csv / .tsv / .jsonl)."""
    g = p.add_argument_group("manifest columns")
    g.add_argument("--image-column", default=None, help="(image, else filepath)")
    if caption:
        g.add_argument("--caption-column", default=None, help="(caption, else title, text)")
    g.add_argument("--label-column", default=None, help="(label: the true class)")


def _add_run_options(p: argparse.ArgumentParser, batch_size: int) -> None:
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_clean(commands: Any) -> None:
    """Register ``data clean``."""
    from crossmodal.prep.cleaning.captions import LANGUAGES

    p = commands.add_parser(
        "clean",
        help="check, de-duplicate and filter a dataset; write a cleaned manifest and a report",
        description="Run every image and caption of SRC (a folder of images, a CSV/TSV/JSONL "
        "manifest, or WebDataset shards) through the cleaning rules: decode fully, "
        "decompression bombs, size and aspect, caption length, non-text, encoding repair, "
        "language, image-text agreement, exact and near duplicates. Writes OUT/manifest.jsonl "
        "(kept images, loadable by train/eval/index), OUT/rejected.jsonl, OUT/report.json and "
        "OUT/report.html. Source files are never changed; the same inputs and --seed give "
        "byte-identical files.",
    )
    _add_source_and_model(p)
    p.add_argument(
        "--no-model",
        action="store_true",
        help="no embeddings: only exact duplicates, no near-duplicate or agreement rules",
    )
    g = p.add_argument_group("image rules")
    g.add_argument("--min-side", type=int, default=32, help="shorter side at least (32 px)")
    g.add_argument("--max-aspect", type=float, default=4.0, help="long/short side at most (4)")
    g.add_argument(
        "--max-pixels", type=int, default=64_000_000, help="bomb limit on declared pixels (64M)"
    )
    g = p.add_argument_group("caption rules")
    g.add_argument("--min-chars", type=int, default=2, help="caption length at least (2)")
    g.add_argument("--max-chars", type=int, default=1000, help="caption length at most (1000)")
    g.add_argument(
        "--min-letter-ratio", type=float, default=0.5, help="letters per visible character (0.5)"
    )
    g.add_argument("--no-repair", action="store_true", help="do not repair mojibake")
    g.add_argument(
        "--languages",
        default="",
        help=f"keep captions in these languages only, comma-separated ({','.join(LANGUAGES)})",
    )
    g.add_argument(
        "--split-languages",
        action="store_true",
        help="also write manifest.<lang>.jsonl per language",
    )
    g = p.add_argument_group("model rules")
    g.add_argument(
        "--near-duplicate",
        type=float,
        default=0.98,
        help="image cosine at which two images are near duplicates (0.98; 1.01 turns it off)",
    )
    g.add_argument("--min-similarity", type=float, default=None, help="drop captions below this")
    g.add_argument(
        "--drop-percentile",
        type=float,
        default=None,
        help="drop the lowest P%% of captions by image-text similarity",
    )
    _add_columns(p)
    p.add_argument("--seed", type=int, default=0, help="picks the report's examples (0)")
    p.add_argument("--examples", type=int, default=8, help="examples per rule in the report (8)")
    _add_run_options(p, batch_size=64)
    p.set_defaults(data_command="clean")


def add_label(commands: Any) -> None:
    """Register ``data label``."""

    p = commands.add_parser(
        "label",
        help="zero-shot auto-labels with confidences and a review page",
        description="Label every image of SRC (a folder, manifest or shards) with the classes "
        "in --classes by zero-shot classification with prompt ensembles. Writes "
        "OUT/labels.jsonl (label, confidence, candidates, needs_review), OUT/report.json and "
        "OUT/review.html (the uncertain items, least confident first). When SRC has labels "
        "of its own, accuracy is reported for the confident and the flagged items apart.",
    )
    _add_source_and_model(p)
    p.add_argument("--classes", type=Path, required=True, help="text file, one class name per line")
    p.add_argument(
        "--language", default="en", choices=("en", "zh"), help="prompt templates' language (en)"
    )
    p.add_argument(
        "--templates", type=Path, default=None, help="file of prompt templates with {}, one a line"
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="needs review under this confidence (0.5)"
    )
    p.add_argument("--multi-label", action="store_true", help="several labels per image")
    p.add_argument(
        "--multi-threshold",
        type=float,
        default=0.2,
        help="multi-label: every class with at least this probability (0.2)",
    )
    p.add_argument("--scale", type=float, default=100.0, help="softmax temperature (100)")
    p.add_argument("--top-k", type=int, default=3, help="candidates kept per image (3)")
    _add_columns(p, caption=False)
    _add_run_options(p, batch_size=32)
    p.set_defaults(data_command="label")


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray options (``data extract``, ``index``)."""
    p.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: this process; ray: Ray actors, one model each (crossmodal[scale])",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: a running cluster (auto, ray://HOST:10001); default a local Ray",
    )
    p.add_argument("--ray-actors", type=int, default=2, help="with --engine ray: actors (2)")
    p.add_argument(
        "--ray-gpus", type=float, default=0.0, help="with --engine ray: GPUs per actor (0)"
    )


def ray_config(args: argparse.Namespace) -> Any:
    """The :class:`RayConfig` the engine arguments ask for."""
    from crossmodal.scale.ray import RayConfig

    return RayConfig(address=args.ray_address, actors=args.ray_actors, num_gpus=args.ray_gpus)


def add_extract(commands: Any) -> None:
    """Register ``data extract``."""

    p = commands.add_parser(
        "extract",
        help="image and caption embeddings to resumable Parquet or .npy shards",
        description="Embed every image of SRC (and its first caption) into shards of "
        "--shard-size images under OUT: part-NNNNN.parquet (default), or clip-retrieval's "
        "img_emb/ text_emb/ metadata/ layout with --layout npy. A stopped run continues where "
        "it stopped when run again, to byte-identical shards. `crossmodal index --features "
        "OUT` reuses the vectors.",
    )
    _add_source_and_model(p)
    p.add_argument("--layout", default="parquet", choices=("parquet", "npy"))
    p.add_argument("--shard-size", type=int, default=10_000, help="images per shard (10000)")
    p.add_argument(
        "--shard-by",
        default="count",
        choices=("count", "input"),
        help="count: every --shard-size images; input: one shard per WebDataset .tar (read "
        "only when its shard is made: the way to shard huge WebDataset collections)",
    )
    p.add_argument("--no-texts", action="store_true", help="images only, no caption embeddings")
    add_engine_arguments(p)
    _add_columns(p)
    _add_run_options(p, batch_size=64)
    p.set_defaults(data_command="extract")


def run_extract(args: argparse.Namespace) -> int:
    """Extract features and print the shards written and the throughput."""
    from crossmodal.data.sources import open_source
    from crossmodal.encoders import load_encoder
    from crossmodal.prep.extract import ExtractConfig, extract_features

    config = ExtractConfig(
        shard_size=args.shard_size,
        shard_by=args.shard_by,
        layout=args.layout,
        texts=not args.no_texts,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    options = {"tree": True, **_manifest_options(args)}
    if args.engine == "ray":
        from crossmodal.scale.extract import SourceSpec, extract_features_ray

        ray = ray_config(args)
        spec = SourceSpec(os.path.abspath(args.source), options)
        report = extract_features_ray(
            spec, args.model, args.out, config, ray, device=args.device, precision=args.precision
        )
        model = args.model
    else:
        source = open_source(args.source, **options)
        encoder = load_encoder(args.model, device=args.device, precision=args.precision)
        report = extract_features(source, encoder, args.out, config)
        model = encoder.spec
    resumed = f", {report.skipped} already complete" if report.skipped else ""
    print(
        f"wrote {report.written} of {report.shards} shard(s){resumed} to {args.out}: "
        f"{report.images:,} images and {report.texts:,} captions in {report.seconds:.1f}s "
        f"({report.images_per_s:.1f} images/s) with {model}"
    )
    for source_name, reason in report.failures[:5]:
        print(f"  skipped {source_name}: {reason}", file=sys.stderr)
    if report.failures:
        print(f"  {len(report.failures)} image(s) skipped (listed in failures/)", file=sys.stderr)
    return 0


def run_clean(args: argparse.Namespace) -> int:
    """Clean a dataset and print what each rule did."""
    import time

    from crossmodal.data.sources import open_source
    from crossmodal.encoders import load_encoder
    from crossmodal.prep.cleaning import (
        RULES,
        CaptionRules,
        CleanConfig,
        ImageRules,
        clean,
        write_clean_outputs,
    )

    started = time.perf_counter()
    near = None if args.no_model or args.near_duplicate > 1.0 else args.near_duplicate
    config = CleanConfig(
        images=ImageRules(args.min_side, args.max_aspect, args.max_pixels),
        captions=CaptionRules(
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            min_letter_ratio=args.min_letter_ratio,
            repair=not args.no_repair,
            languages=tuple(c.strip() for c in args.languages.split(",") if c.strip()),
        ),
        near_duplicate=near,
        min_similarity=args.min_similarity,
        drop_percentile=args.drop_percentile,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if args.no_model and (args.min_similarity is not None or args.drop_percentile is not None):
        raise ConfigError("--no-model cannot apply --min-similarity or --drop-percentile")
    source = open_source(args.source, tree=True, **_manifest_options(args))
    encoder = None
    if not args.no_model:
        encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    result = clean(source, config, encoder)
    outputs = write_clean_outputs(
        result,
        args.out,
        source_name=str(args.source),
        model=encoder.spec if encoder is not None else None,
        seed=args.seed,
        examples=args.examples,
        split_languages=args.split_languages,
    )
    seconds = time.perf_counter() - started
    counts = result.counts
    rate = counts["total"] / seconds if seconds > 0 else 0.0
    print(
        f"kept {counts['kept']:,} of {counts['total']:,} images in {seconds:.1f}s "
        f"({rate:.1f} images/s)"
    )
    for rule in RULES:
        if counts[rule]:
            print(f"  {rule:18s} {counts[rule]:>7,}")
    for rule, n in sorted(result.caption_counts.items()):
        print(f"  captions dropped, {rule}: {n:,}")
    if result.similarity_threshold is not None:
        print(f"  image-text similarity cut: {result.similarity_threshold:.3f}")
    print(f"wrote {outputs.manifest}, {outputs.rejected}, {outputs.report_html}")
    for code, path in outputs.language_manifests.items():
        print(f"  {code}: {path}")
    return 0


def run_label(args: argparse.Namespace) -> int:
    """Auto-label a dataset and print the counts and the accuracy when it is known."""
    import time

    from crossmodal.data.sources import open_source
    from crossmodal.encoders import load_encoder
    from crossmodal.eval.zeroshot import TEMPLATES
    from crossmodal.prep.label_outputs import write_label_outputs
    from crossmodal.prep.labeling import LabelConfig, auto_label, read_classes

    started = time.perf_counter()
    classes = read_classes(args.classes)
    templates = TEMPLATES[args.language]
    if args.templates is not None:
        templates = tuple(read_classes(args.templates))  # same format: one per line
    config = LabelConfig(
        templates=templates,
        threshold=args.threshold,
        multi_label=args.multi_label,
        multi_threshold=args.multi_threshold,
        scale=args.scale,
        top_k=args.top_k,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    source = open_source(args.source, tree=True, **_manifest_options(args))
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    result = auto_label(source, classes, encoder, config)
    outputs = write_label_outputs(
        result, args.out, source_name=str(args.source), model=encoder.spec
    )
    seconds = time.perf_counter() - started
    review = sum(item.needs_review for item in result.items)
    print(
        f"labelled {len(result.items):,} images with {len(classes)} classes in {seconds:.1f}s; "
        f"{review:,} need review (confidence < {config.threshold:.2f})"
    )
    accuracy = result.accuracy()
    if accuracy["judged"]:
        parts = [
            f"{name} {accuracy[name]:.3f} (n={accuracy[name + '_n']})"
            for name in ("all", "confident", "needs_review")
            if accuracy[name] is not None
        ]
        print("  accuracy against the source's labels: " + ", ".join(parts))
    for source_name, reason in result.failures[:5]:
        print(f"  skipped {source_name}: {reason}", file=sys.stderr)
    if result.failures:
        print(f"  {len(result.failures)} image(s) skipped", file=sys.stderr)
    print(f"wrote {outputs.labels}, {outputs.report}, {outputs.review}")
    return 0


def _manifest_options(args: argparse.Namespace) -> dict[str, Any]:
    """Column options, and skip-and-record for missing files, when SRC is a manifest."""
    if Path(args.source).suffix.lower() not in (".csv", ".tsv", ".jsonl"):
        return {}
    return {
        "image_column": args.image_column,
        "caption_column": getattr(args, "caption_column", None),
        "label_column": args.label_column,
        "on_missing": "skip",
    }
