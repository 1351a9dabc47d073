"""The cleaning report as one self-contained HTML page: counts, scores, and examples to look at.

Thumbnails are inline ``data:`` URIs and the CSS is inline, so the page is one file that opens
anywhere; a Content-Security-Policy forbids scripts and remote loads. Images refused as
corrupt or as decompression bombs are never decoded for a thumbnail.
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

import numpy as np

from crossmodal.data.images import jpeg_data_uri, load_image
from crossmodal.errors import CrossmodalError
from crossmodal.pages import html_document
from crossmodal.prep.cleaning.pipeline import RULES, CleanItem, CleanResult

__all__ = ["RULE_DESCRIPTIONS", "render_clean_page"]

THUMB: Final = 128  # longest side of a thumbnail, pixels
_NO_THUMBNAIL: Final = frozenset({"source", "image_corrupt", "image_bomb"})
_CSS: Final = (
    ".card{width:280px}.card img{max-width:128px;max-height:128px;margin-right:4px}.why{color:#a00}"
)

RULE_DESCRIPTIONS: Final = {
    "source": "the source could not read the entry (a missing file, a bad row or member)",
    "image_corrupt": "does not decode to the end (corrupt, truncated, not an image)",
    "image_bomb": "declares more pixels than the limit (a decompression bomb); not decoded",
    "image_size": "shorter side below the minimum",
    "image_aspect": "aspect ratio beyond the limit",
    "caption_empty": "no caption text",
    "caption_length": "caption too short or too long",
    "caption_non_text": "caption mostly symbols, digits or punctuation",
    "caption_language": "caption in a language that is not kept",
    "mismatch": "no caption agrees with the image (similarity under the cut)",
    "duplicate_exact": "the same pixels as a kept image",
    "duplicate_near": "nearly the same picture as a kept image (embedding cosine)",
}


def render_clean_page(report: dict[str, Any], result: CleanResult) -> str:
    """The HTML page for one cleaning run (``report`` from :func:`build_report`)."""
    counts = report["counts"]
    title = f"Cleaning report: {report['source']}"
    summary = (
        f"<p>{counts['kept']:,} of {counts['total']:,} images kept; "
        f"{report['captions_kept']:,} captions kept. Model: "
        f"{escape(str(report['model'] or 'none (no embedding rules)'))}.</p>"
    )
    body = (
        f"<h1>{escape(title)}</h1>{summary}{_rules_table(report)}{_languages(report)}"
        f"{_histogram(result, report['similarity_threshold'])}{_examples(report, result)}"
    )
    return html_document(title, body, css=_CSS)


def _rules_table(report: dict[str, Any]) -> str:
    counts, captions = report["counts"], report["captions_dropped"]
    rows = "".join(
        f"<tr><td>{rule}</td><td>{escape(RULE_DESCRIPTIONS[rule])}</td>"
        f'<td class="n">{counts[rule]:,}</td><td class="n">{captions.get(rule, 0):,}</td></tr>'
        for rule in RULES
    )
    return (
        "<h2>Rules</h2><table><tr><th>rule</th><th>what it refuses</th><th>images</th>"
        f"<th>captions</th></tr>{rows}</table>"
    )


def _languages(report: dict[str, Any]) -> str:
    parts = []
    if report["languages"]:
        cells = "".join(
            f'<tr><td>{escape(code)}</td><td class="n">{n:,}</td></tr>'
            for code, n in report["languages"].items()
        )
        parts.append(f"<h2>Caption languages (kept)</h2><table>{cells}</table>")
    if report["modes_normalised"]:
        cells = "".join(
            f'<tr><td>{escape(mode)}</td><td class="n">{n:,}</td></tr>'
            for mode, n in report["modes_normalised"].items()
        )
        parts.append(f"<h2>Image modes normalised to RGB</h2><table>{cells}</table>")
    return "".join(parts)


def _histogram(result: CleanResult, threshold: float | None) -> str:
    """An SVG histogram of every caption's image-text similarity, with the cut drawn in."""
    scores = np.asarray(
        [s for item in result.items for s in (*item.scores, *item.mismatch_scores)],
        dtype=np.float64,
    )
    if scores.size == 0:
        return ""
    lo, hi = float(scores.min()), float(scores.max())
    hi = hi if hi > lo else lo + 1e-3
    counts, edges = np.histogram(scores, bins=40, range=(lo, hi))
    width, height = 600, 160
    bar_w = width / len(counts)
    top = max(int(counts.max()), 1)
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - c / top * height:.1f}" width="{bar_w - 1:.1f}" '
        f'height="{c / top * height:.1f}" fill="#4a7"/>'
        for i, c in enumerate(counts.tolist())
    )
    line = ""
    if threshold is not None:
        x = (threshold - lo) / (hi - lo) * width
        line = f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" stroke="#c00"/>'
    cut = f"; the red line is the cut, {threshold:.3f}" if threshold is not None else ""
    return (
        "<h2>Image-text similarity</h2>"
        f"<p>{scores.size:,} captions, from {lo:.3f} to {hi:.3f}{cut}.</p>"
        f'<svg width="{width}" height="{height}" role="img" aria-label="similarity histogram">'
        f"{bars}{line}</svg>"
    )


def _examples(report: dict[str, Any], result: CleanResult) -> str:
    sections = []
    for rule, positions in report["examples"].items():
        cards = "".join(_card(result.items[p], result.items) for p in positions)
        total = report["counts"][rule]
        sections.append(
            f"<h3>{rule} ({len(positions)} of {total:,})</h3><div class=cards>{cards}</div>"
        )
    return "<h2>Examples</h2>" + "".join(sections) if sections else ""


def _card(item: CleanItem, items: list[CleanItem]) -> str:
    thumbs = "" if item.rule in _NO_THUMBNAIL else _thumb(item)
    if item.duplicate_of is not None:
        thumbs += _thumb(items[item.duplicate_of])
    captions = item.sample.captions if item.sample is not None else ()
    text = "".join(f"<div>“{escape(c)}”</div>" for c in captions[:3])
    return (
        f'<div class="card">{thumbs}<div class="src">{escape(item.source)}</div>{text}'
        f'<div class="why">{escape(item.reason)}</div></div>'
    )


def _thumb(item: CleanItem) -> str:
    if item.sample is None:
        return ""
    try:
        uri = jpeg_data_uri(load_image(item.sample.image, draft_size=THUMB), THUMB, quality=80)
    except (CrossmodalError, OSError, ValueError):
        return ""
    return f'<img src="{uri}" alt="{escape(item.source)}" title="{escape(item.source)}">'
