"""``crossmodal eval``: zero-shot classification or retrieval, written up as a report.

    crossmodal eval zeroshot --model SPEC --data FOLDER_OR_MANIFEST [--out DIR]
    crossmodal eval retrieval --model SPEC --data MANIFEST_OR_SHARDS [--out DIR]

Writes ``results.json`` and a self-contained ``report.html`` into ``--out`` (default
``./eval-out/<task>``) and prints the key metrics and the report's path.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal.errors import ConfigError

if TYPE_CHECKING:
    from crossmodal.eval.results import RetrievalResult, ZeroShotResult

_TASKS = {
    "zeroshot": "zero-shot classification of a labelled dataset (class folders, a manifest "
    "with a label column, or WebDataset shards with .cls / json labels)",
    "retrieval": "text-to-image and image-to-text retrieval over a captioned dataset (a "
    "manifest with a caption column, or WebDataset shards with .txt / json captions)",
}  # task → help


def add_parser(sub: Any) -> None:
    """Register ``eval`` and its two tasks."""
    from crossmodal.encoders import DEFAULT_MODEL

    p = sub.add_parser(
        "eval",
        help="evaluate a model: zero-shot classification or retrieval, with an HTML report",
        description="Evaluate a model on a dataset and write results.json and a "
        "self-contained report.html.",
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    _add_queries_parser(tasks, DEFAULT_MODEL)
    for task, text in _TASKS.items():
        t = tasks.add_parser(task, help=text, description=text[0].upper() + text[1:] + ".")
        t.add_argument(
            "-m", "--model", default=DEFAULT_MODEL, help=f"model spec (default {DEFAULT_MODEL})"
        )
        t.add_argument("-d", "--data", required=True, help="dataset: folder, manifest or shards")
        t.add_argument("-o", "--out", type=Path, help=f"output folder (default ./eval-out/{task})")
        language = "prompt template language" if task == "zeroshot" else "caption language"
        t.add_argument("--language", choices=("en", "zh"), default="en", help=f"{language} (en)")
        t.add_argument("--batch-size", type=int, default=32, help="images/texts per pass (32)")
        t.add_argument("--workers", type=int, default=2, help="image decoding threads (2)")
        t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        t.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
        t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
        t.add_argument(
            "--strict",
            action="store_true",
            help="stop at the first bad image or missing file instead of skipping it",
        )
        if task == "zeroshot":
            t.add_argument(
                "--template",
                action="append",
                dest="templates",
                metavar="TEXT",
                help="a prompt template with one '{}' for the class name (repeat to average "
                "several; default: the built-in set of --language)",
            )
            t.add_argument(
                "--subclasses",
                type=Path,
                metavar="JSON",
                help='a JSON object of member names by label ({"food & drink": ["fruit", '
                '"banana"]}): classify hierarchically (CHiLS) and report the plain prompts\' '
                "accuracy beside",
            )
        for column in ("image", "caption", "label"):
            t.add_argument(
                f"--{column}-column",
                help=f"manifest column holding the {column} (default: found by name)",
            )
        t.set_defaults(run=run)


def _add_queries_parser(tasks: Any, default_model: str) -> None:
    t = tasks.add_parser(
        "queries",
        help="success@k of a query set (free-text queries with known answers) over a gallery "
        "folder, with chance levels",
        description="Score a JSONL query set ({query, answers, lang, kind}: answers are gallery "
        "file stems) over a folder of images: success@1/5/10 against chance, by language and "
        "kind, with a report of the misses.",
    )
    t.add_argument("-m", "--model", default=default_model, help=f"model spec ({default_model})")
    t.add_argument("-q", "--queries", required=True, help="the query set (JSONL)")
    t.add_argument("-d", "--data", required=True, help="gallery: a folder of images")
    t.add_argument("-o", "--out", type=Path, help="output folder (default ./eval-out/queries)")
    t.add_argument("--language", choices=("en", "zh"), help="only this language's queries")
    t.add_argument("--batch-size", type=int, default=32, help="images/texts per pass (32)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    t.set_defaults(run=run_queries_task)


def run_queries_task(args: argparse.Namespace) -> int:
    """Score a query set over a gallery folder; write the report; print the numbers."""
    from crossmodal.data.files import find_images
    from crossmodal.encoders import load_encoder
    from crossmodal.encoders.embedder import EmbedConfig
    from crossmodal.eval.queries import QUERY_KS, load_queries, run_queries
    from crossmodal.eval.query_report import write_query_report

    queries = load_queries(args.queries, args.language)
    if not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data}: the gallery must be a folder of images")
    images = list(find_images([args.data]))
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    progress = not args.no_progress and sys.stderr.isatty()
    result = run_queries(
        encoder,
        queries,
        images,
        config=EmbedConfig(batch_size=args.batch_size, progress=progress),
        model_name=args.model,
        queries_file=str(args.queries),
        gallery=str(args.data),
    )
    page = write_query_report(result, args.out or Path("eval-out") / "queries")
    groups = [("all", None)] + [(f"lang {lang}", lang) for lang in result.languages()]
    for name, lang in groups:
        rates = "  ".join(
            f"success@{k} {result.success(k, lang=lang):.3f} "
            f"(chance {result.chance(k, lang=lang):.3f})"
            for k in QUERY_KS
        )
        print(f"{name}: {len(result.chosen(lang=lang))} queries  {rates}")
    print(f"{result.n_images} images; {len(result.unanswerable)} queries without an answer there")
    print(f"report: {page}  (numbers: {page.with_name('results.json')})")
    return 0


def read_subclasses(path: Path) -> dict[str, list[str]]:
    """The ``--subclasses`` file: a JSON object of label → list of member names.

    Raises:
        ConfigError: A missing or unreadable file, bad JSON, or another shape, naming the file.
    """
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--subclasses {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--subclasses {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(m, str) for m in v) for v in data.values()
    ):
        raise ConfigError(
            f"--subclasses {path}: expected a JSON object of label → list of member names, "
            'e.g. {"food & drink": ["fruit", "banana"]}'
        )
    return {str(k): list(v) for k, v in data.items()}


def run(args: argparse.Namespace) -> int:
    """Open the dataset, load the model, evaluate, write the report, print a summary."""
    from crossmodal.data.sources import is_manifest, open_dataset
    from crossmodal.encoders import load_encoder
    from crossmodal.eval.report import write_report
    from crossmodal.eval.runner import EvalConfig, run_retrieval, run_zeroshot

    config = EvalConfig(
        batch_size=args.batch_size,
        workers=args.workers,
        language=args.language,
        progress=not args.no_progress and sys.stderr.isatty(),
        on_error="raise" if args.strict else "skip",
        templates=tuple(args.templates) if getattr(args, "templates", None) else None,
    )
    columns = {
        f"{c}_column": getattr(args, f"{c}_column")
        for c in ("image", "caption", "label")
        if getattr(args, f"{c}_column")
    }
    if columns and not is_manifest(args.data):
        flags = ", ".join("--" + k.replace("_", "-") for k in columns)
        raise ConfigError(f"{flags} only apply to a .csv / .tsv / .jsonl manifest, not {args.data}")
    # before the model: fail fast on a typo
    source = open_dataset(args.data, strict=args.strict, **columns)
    subclasses = read_subclasses(args.subclasses) if getattr(args, "subclasses", None) else None
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    out = args.out if args.out is not None else Path("eval-out") / args.task
    result: ZeroShotResult | RetrievalResult
    if args.task == "zeroshot":
        result = run_zeroshot(encoder, source, config, model_name=args.model, subclasses=subclasses)
    else:
        result = run_retrieval(encoder, source, config, model_name=args.model)
        result = replace(result, extra={**result.extra, "language": args.language})
    page = write_report(result, out)
    print(result.summary())
    print(f"report: {page}  (numbers: {page.with_name('results.json')})")
    return 0
