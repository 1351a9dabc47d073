"""What ``crossmodal data label`` writes: labels.jsonl, report.json and a review page.

- ``labels.jsonl``: one line per image: ``image``, ``source``, ``label`` (the best class; a
  list in multi-label mode), ``confidence``, ``candidates`` (the top classes and their
  probabilities), ``needs_review`` and ``truth`` (the source's own label, or null). It is a
  manifest again: ``crossmodal train --task classify --data labels.jsonl`` reads its
  ``image`` and ``label`` columns.
- ``report.json``: images per label, how many need review, accuracy against the source's own
  labels when it has them (all, confident and needs-review apart), the images that failed.
- ``review.html``: the items that need review, least confident first, with thumbnails and
  their candidate classes; one self-contained file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any, Final

from crossmodal.atomic import atomic_write_text
from crossmodal.data.images import jpeg_data_uri, load_image
from crossmodal.errors import CrossmodalError, InputError
from crossmodal.pages import html_document
from crossmodal.prep.labeling import LabelledItem, LabelResult

__all__ = ["LabelOutputs", "write_label_outputs"]

THUMB: Final = 128  # longest side of a review thumbnail
MAX_REVIEW_CARDS: Final = 500  # the page shows at most this many items (the jsonl has all)
_CSS: Final = (
    ".card{width:220px}.card img{max-width:128px;max-height:128px}.bar{background:#4a7;height:6px}"
)


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
    report = build_label_report(result, source_name=source_name, model=model)
    report_path = _write(
        out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    )
    review = _write(out / "review.html", render_review_page(result, report))
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


def render_review_page(result: LabelResult, report: dict[str, Any]) -> str:
    """The review page: the summary, then the flagged items, least confident first."""
    flagged = sorted(
        (i for i in result.items if i.needs_review), key=lambda i: (i.confidence, i.source)
    )
    accuracy = report["accuracy"]
    lines = [
        f"<p>{report['images']:,} images labelled with {len(result.class_names)} classes by "
        f"{escape(report['model'])}; {report['needs_review']:,} need review (best probability "
        f"under {result.config.threshold:.2f}).</p>"
    ]
    if accuracy["judged"]:
        lines.append(
            "<table><tr><th>items</th><th>n</th><th>accuracy</th></tr>"
            + "".join(
                f"<tr><td>{name}</td><td>{accuracy[name + '_n']:,}</td>"
                f"<td>{_percent(accuracy[name])}</td></tr>"
                for name in ("all", "confident", "needs_review")
            )
            + "</table>"
        )
    shown = flagged[:MAX_REVIEW_CARDS]
    more = f" (the first {len(shown)} of {len(flagged):,})" if len(flagged) > len(shown) else ""
    cards = "".join(_card(item) for item in shown)
    title = f"Labels to review: {report['source']}"
    body = (
        f"<h1>{escape(title)}</h1>{''.join(lines)}<h2>Needs review{more}</h2>"
        f'<div class="cards">{cards}</div>'
    )
    return html_document(title, body, css=_CSS)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _card(item: LabelledItem) -> str:
    thumb = ""
    if item.image is not None:
        try:
            image = load_image(item.image, draft_size=THUMB)
            thumb = f'<img src="{jpeg_data_uri(image, THUMB, quality=80)}" alt="">'
        except (CrossmodalError, OSError, ValueError):
            thumb = ""
    options = "".join(
        f'<div>{escape(name)} {p:.2f}<div class="bar" style="width:{p * 100:.0f}%"></div></div>'
        for name, p in item.candidates
    )
    truth = f"<div>truth: {escape(item.truth)}</div>" if item.truth is not None else ""
    return (
        f'<div class="card">{thumb}<div class="src">{escape(item.source)}</div>'
        f"{options}{truth}</div>"
    )


def _write(path: Path, text: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from exc
