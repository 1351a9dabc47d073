"""What ``crossmodal data label`` writes: labels.jsonl, report.json and a review page.

- ``labels.jsonl``: one line per image: ``image``, ``source``, ``label`` (the best class; a
  list in multi-label mode), ``confidence``, ``candidates`` (the top classes and their
  probabilities), ``needs_review`` and ``truth`` (the source's own label, or null). It is a
  manifest again: ``crossmodal train --task classify --data labels.jsonl`` reads its
  ``image`` and ``label`` columns.
- ``report.json``: images per label, how many need review, accuracy against the source's own
  labels when it has them (all, confident and needs-review apart), the images that failed.
- ``review.html``: the items that need review, least confident first, with thumbnails, their
  candidate classes and buttons to accept or correct each label; one self-contained file
  (:mod:`crossmodal.prep.review_page`) that exports the decisions for ``crossmodal data
  apply-review`` (:mod:`crossmodal.prep.review`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crossmodal.atomic import atomic_write_text
from crossmodal.errors import InputError
from crossmodal.prep.labeling import LabelledItem, LabelResult
from crossmodal.prep.review_page import render_review_page

__all__ = ["LabelOutputs", "write_label_outputs"]


@dataclass(frozen=True)
class LabelOutputs:
    """The files one run wrote."""

    labels: Path
    report: Path
    review: Path


def write_label_outputs(
    result: LabelResult, out_dir: str | os.PathLike[str], *, source_name: str, model: str
) -> LabelOutputs:
    """Write labels.jsonl, report.json and review.html into ``out_dir``.

    Raises:
        InputError: ``out_dir`` cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc})") from exc
    multi = result.config.multi_label
    rows = "".join(json.dumps(_row(i, multi), ensure_ascii=False) + "\n" for i in result.items)
    labels = _write(out / "labels.jsonl", rows)
    run = hashlib.sha256(rows.encode("utf-8")).hexdigest()[:16]
    report = build_label_report(result, source_name=source_name, model=model)
    report_path = _write(
        out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    )
    page = render_review_page(result, report, run=run, labels=str(labels))
    review = _write(out / "review.html", page)
    return LabelOutputs(labels, report_path, review)


def build_label_report(result: LabelResult, *, source_name: str, model: str) -> dict[str, Any]:
    """Counts, review share, accuracy and failures as JSON-ready data."""
    config = asdict(result.config)
    for key in ("batch_size", "workers", "progress"):
        config.pop(key)
    return {
        "source": source_name,
        "model": model,
        "config": config,
        "images": len(result.items),
        "needs_review": sum(item.needs_review for item in result.items),
        "counts": result.counts,
        "accuracy": result.accuracy(),
        "failures": [{"source": s, "reason": r} for s, r in result.failures],
    }


def _row(item: LabelledItem, multi: bool) -> dict[str, Any]:
    return {
        "image": item.image,
        "source": item.source,
        "label": list(item.labels) if multi else item.labels[0],
        "confidence": list(item.confidences) if multi else item.confidence,
        "candidates": [{"label": name, "p": p} for name, p in item.candidates],
        "needs_review": item.needs_review,
        "truth": item.truth,
    }


def _write(path: Path, text: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from exc
