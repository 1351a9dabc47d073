"""A self-contained HTML page of search hits: thumbnails, scores, weak-match marks.

Thumbnails are embedded as JPEG data URIs, so the page shows the same pictures wherever it
is opened, and links point at the files themselves (``file://``). A video hit shows the
frame at its time stamp and the time.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from crossmodal.atomic import atomic_write_text
from crossmodal.data.images import jpeg_data_uri
from crossmodal.errors import CrossmodalError
from crossmodal.pages import html_document
from crossmodal.paths import printable

if TYPE_CHECKING:
    from crossmodal.search.index import Hit

__all__ = ["thumbnail_data_uri", "write_results_page"]

THUMB = 224  # longest side of a thumbnail, pixels

_STYLE = """
.grid{grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:8px}
figure.weak{opacity:.55}
figure img{width:100%;height:224px;object-fit:contain;background:#fff}
figure img.heat{height:160px;margin-top:4px}
figcaption{font-size:12px}
figcaption .caption{display:block;font-size:15px;font-weight:600;margin:2px 0 4px}
figcaption .path{display:block;color:#555;word-break:break-all}
.score{font-weight:600}
"""


def write_results_page(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[tuple[str, Sequence[Hit]]],
    explain: Callable[[Hit], Image.Image | None] | None = None,
) -> Path:
    """Write the page (one section of hits per query) atomically; return its path.

    ``explain``, when given, makes a second picture per hit (a heat map of where the query
    falls in it: :mod:`crossmodal.heads.heatmap`), shown under the thumbnail.
    """
    parts = []
    for query, hits in sections:
        cards = "\n".join(_card(rank, hit, explain) for rank, hit in enumerate(hits, 1))
        parts.append(
            f"<section><h2>{html.escape(query)}</h2>"
            f'<div class="grid">{cards or "<p>No hits.</p>"}</div></section>'
        )
    body = f"<h1>crossmodal search: {html.escape(title)}</h1>" + "\n".join(parts)
    text = html_document(f"crossmodal: {title}", body, css=_STYLE)
    return atomic_write_text(path, text)


def _card(rank: int, hit: Hit, explain: Callable[[Hit], Image.Image | None] | None) -> str:
    uri = thumbnail_data_uri(hit.path, hit.time)
    name = html.escape(printable(Path(hit.path).name))
    picture = f'<img alt="{name}" src="{uri}">' if uri else "<p>(no preview)</p>"
    heat = None
    if explain is not None:
        try:
            heat = explain(hit)
        except (CrossmodalError, OSError):
            heat = None
    if heat is not None:
        picture += (
            f'<img class="heat" alt="where the query falls in {name}" '
            f'title="attention of the query over the picture\'s patches (red: most)" '
            f'src="{jpeg_data_uri(heat)}">'
        )
    tags = []
    if hit.time is not None:
        tags.append(f'<span class="tag">video {hit.time:.2f}s</span>')
    if hit.weak:
        tags.append('<span class="tag">weak match</span>')
    # what the picture is (its caption or label) first; where it lies second
    caption = f'<span class="caption">{html.escape(hit.caption)}</span>' if hit.caption else ""
    href = html.escape(Path(hit.path).as_uri(), quote=True)
    return (
        f'<figure class="{"weak" if hit.weak else ""}"><a href="{href}">{picture}</a>'
        f"<figcaption>{caption}#{rank} "
        f'<span class="score">{hit.score:.3f}</span> '
        f"(relevance {hit.relevance:.1f}) {' '.join(tags)}"
        f'<span class="path">{html.escape(printable(hit.path))}</span></figcaption></figure>'
    )


def thumbnail_data_uri(path: str, time: float | None = None) -> str | None:
    """A ``data:image/jpeg`` URI of the file's thumbnail (a video's frame at ``time``)."""
    try:
        image = _frame_at(path, time) if time is not None else _still(path)
    except (CrossmodalError, OSError):
        return None
    return jpeg_data_uri(image, THUMB)


def _still(path: str) -> Image.Image:
    from crossmodal.data.images import load_image

    return load_image(path, draft_size=THUMB)


def _frame_at(path: str, time: float) -> Image.Image:
    from crossmodal.data.video import frame_at

    return frame_at(path, time).image
