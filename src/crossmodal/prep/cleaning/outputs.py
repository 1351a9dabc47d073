"""What a cleaning run writes: the cleaned manifest, the rejects, and a report (JSON and HTML).

    paths = write_clean_outputs(result, "clean/", source_name="photos.jsonl", seed=0)

``out_dir`` receives:

- ``manifest.jsonl``: one line per kept image: ``image`` (a path), ``caption`` (the kept
  captions, repaired, plus those of its dropped duplicates), ``language`` and ``clip_score``
  (one per caption; scores when a model ran), ``label``, ``width``, ``height``, ``digest``,
  ``source``, ``duplicates`` (the sources it stands for) and ``dropped_captions``. It opens
  again as a source (``crossmodal train --data``, ``crossmodal eval``, ``crossmodal index``);
- ``manifest.<lang>.jsonl`` per caption language, with ``split_languages``;
- ``rejected.jsonl``: one line per image that left: ``source``, ``rule``, ``reason``,
  ``duplicate_of``, ``caption``;
- ``report.json`` (counts per rule, thresholds, languages, normalised modes, examples) and
  ``report.html`` (the same, with thumbnails of examples of each rejection);
- ``images/``: images that came from WebDataset shards, saved as PNG (a shard member is
  not a file a manifest can name). Source files are never touched.

Every file is written atomically, and nothing in them depends on time or thread count, so the
same source, config, model and seed give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.atomic import atomic_write_text
from crossmodal.data.images import load_image
from crossmodal.errors import CrossmodalError, InputError
from crossmodal.prep.cleaning.page import render_clean_page
from crossmodal.prep.cleaning.pipeline import RULES, CleanItem, CleanResult

__all__ = ["CleanOutputs", "build_report", "write_clean_outputs"]

SCORE_DIGITS = 6  # decimals kept of each similarity score in the files


@dataclass(frozen=True)
class CleanOutputs:
    """The files one run wrote."""

    manifest: Path
    rejected: Path
    report_json: Path
    report_html: Path
    language_manifests: dict[str, Path]


def write_clean_outputs(
    result: CleanResult,
    out_dir: str | os.PathLike[str],
    *,
    source_name: str,
    model: str | None = None,
    seed: int = 0,
    examples: int = 8,
    split_languages: bool = False,
) -> CleanOutputs:
    """Write the cleaned manifest, the rejects and the report into ``out_dir``.

    Raises:
        InputError: ``out_dir`` cannot be created or written (the message names the path).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc})") from exc
    rows = [_manifest_row(item, out, result.items) for item in result.kept]
    manifest = _write_jsonl(out / "manifest.jsonl", rows)
    rejected = _write_jsonl(
        out / "rejected.jsonl",
        [_rejected_row(item, result.items) for item in result.items if not item.kept],
    )
    languages: dict[str, Path] = {}
    if split_languages:
        for code in sorted({lang for row in rows for lang in row["language"]}):
            languages[code] = _write_jsonl(
                out / f"manifest.{code}.jsonl",
                [r for r in (_only_language(row, code) for row in rows) if r is not None],
            )
    report = build_report(result, source_name=source_name, model=model, seed=seed, k=examples)
    report_json = out / "report.json"
    _write(report_json, json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    report_html = out / "report.html"
    _write(report_html, render_clean_page(report, result))
    return CleanOutputs(manifest, rejected, report_json, report_html, languages)


def build_report(
    result: CleanResult, *, source_name: str, model: str | None, seed: int, k: int
) -> dict[str, Any]:
    """The run as JSON-ready data: counts, thresholds, languages, modes and examples."""
    kept = result.kept
    languages = Counter(lang for item in kept for lang in item.languages)
    modes = Counter(  # of the kept images: what their files held before RGB
        item.image.mode for item in kept if item.image is not None and item.image.mode != "RGB"
    )
    scores = [s for item in result.items for s in item.scores]
    config = asdict(result.config)
    for key in ("batch_size", "workers", "progress"):  # how it ran, not what it did
        config.pop(key)
    return {
        "source": source_name,
        "model": model,
        "seed": seed,
        "config": config,
        "counts": result.counts,
        "captions_dropped": dict(sorted(result.caption_counts.items())),
        "captions_kept": sum(len(item.captions) for item in kept),
        "similarity_threshold": _round(result.similarity_threshold),
        "similarity_quantiles": _quantiles(scores),
        "languages": dict(sorted(languages.items())),
        "modes_normalised": dict(sorted(modes.items())),
        "examples": _examples(result.items, seed, k),
    }


def _examples(items: list[CleanItem], seed: int, k: int) -> dict[str, list[int]]:
    """Up to ``k`` item positions per rule, drawn with ``seed``, in source order."""
    rng = np.random.default_rng(seed)
    by_rule: dict[str, list[int]] = {}
    for item in items:
        if item.rule is not None:
            by_rule.setdefault(item.rule, []).append(item.position)
    picked: dict[str, list[int]] = {}
    for rule in RULES:
        positions = by_rule.get(rule, [])
        if len(positions) > k:
            positions = sorted(rng.choice(positions, size=k, replace=False).tolist())
        if positions:
            picked[rule] = positions
    return picked


def _quantiles(scores: list[float]) -> dict[str, float]:
    if not scores:
        return {}
    qs = np.percentile(np.asarray(scores), [0, 5, 25, 50, 75, 95, 100])
    names = ("min", "p5", "p25", "median", "p75", "p95", "max")
    return {name: round(float(q), SCORE_DIGITS) for name, q in zip(names, qs, strict=True)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, SCORE_DIGITS)


def _manifest_row(item: CleanItem, out: Path, items: list[CleanItem]) -> dict[str, Any]:
    assert item.sample is not None and item.image is not None
    image = item.sample.image
    # Absolute paths: the manifest lives elsewhere than the source.
    is_file = isinstance(image, str | os.PathLike)
    path = os.path.abspath(image) if is_file else _save_copy(item, out)  # type: ignore[arg-type]
    return {
        "image": path,
        "caption": item.captions,
        "language": item.languages,
        "clip_score": [round(s, SCORE_DIGITS) for s in item.scores],
        "label": item.sample.label,
        "width": item.image.width,
        "height": item.image.height,
        "digest": item.image.digest,
        "source": item.source,
        "duplicates": [items[p].source for p in item.merged_from],
        "dropped_captions": [
            {"text": text, "rule": rule, "reason": why} for text, rule, why in item.dropped_captions
        ],
    }


def _save_copy(item: CleanItem, out: Path) -> str:
    """Save a shard member's image (decoded, normalised) as ``images/<position>.png``."""
    assert item.sample is not None
    target = out / "images" / f"{item.position:08d}.png"
    try:
        target.parent.mkdir(exist_ok=True)
        load_image(item.sample.image).save(target, format="PNG")
    except (CrossmodalError, OSError) as exc:
        raise InputError(f"{target}: cannot save the image of {item.source} ({exc})") from exc
    return str(target.resolve())


def _rejected_row(item: CleanItem, items: list[CleanItem]) -> dict[str, Any]:
    keeper = items[item.duplicate_of].source if item.duplicate_of is not None else None
    captions = list(item.sample.captions) if item.sample is not None else []
    return {
        "source": item.source,
        "rule": item.rule,
        "reason": item.reason,
        "duplicate_of": keeper,
        "caption": captions,
    }


def _only_language(row: dict[str, Any], code: str) -> dict[str, Any] | None:
    keep = [k for k, lang in enumerate(row["language"]) if lang == code]
    if not keep:
        return None
    scores = row["clip_score"]
    return row | {
        "caption": [row["caption"][k] for k in keep],
        "language": [code] * len(keep),
        "clip_score": [scores[k] for k in keep] if scores else [],
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return _write(path, text)


def _write(path: Path, text: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from exc
