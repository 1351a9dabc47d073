"""An evaluation result on disk: ``results.json`` and one self-contained ``report.html``.

The page needs nothing but itself: CSS is inline, plots and thumbnails are base64 ``data:``
URIs, there is no JavaScript, and a Content-Security-Policy forbids any other request. Every
string that comes from the user (paths, captions, class names, error messages) is escaped.

    >>> from crossmodal.eval.report import write_report
    >>> write_report(result, "eval-out/zeroshot")  # doctest: +SKIP
    PosixPath('eval-out/zeroshot/report.html')
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.atomic import atomic_write_bytes
from crossmodal.data.images import jpeg_data_uri, load_image
from crossmodal.errors import CrossmodalError, InputError, short_message
from crossmodal.eval import plots
from crossmodal.eval.results import RetrievalExample, RetrievalResult, Skipped, ZeroShotResult
from crossmodal.pages import html_document

__all__ = [
    "MAX_MISCLASSIFIED",
    "THUMBNAIL_SIZE",
    "Thumbnails",
    "html_page",
    "render_report",
    "write_atomic",
    "write_report",
]

THUMBNAIL_SIZE = 96  # longest side of a thumbnail, in pixels
MAX_MISCLASSIFIED = 48  # misclassified images shown for zero-shot
MAX_SKIPPED_LISTED = 500  # skipped inputs listed in the page (results.json has them all)
TOP_RETRIEVED = 5  # retrieved items shown per worst query
_CLIP_BENCHMARK_KEYS = {
    "acc1": "top-1 accuracy",
    "acc5": "top-5 accuracy",
    "mean_per_class_recall": "mean per-class recall",
}  # zero-shot keys shared with CLIP_benchmark → description
_DIRECTION_NAMES = {"text_to_image": "text → image", "image_to_text": "image → text"}

_CSS = """
table{width:100%}table.metrics{width:auto;min-width:60%}
tr.group td{background:#eef2f8;font-weight:600;color:#34405a}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:12px 0}
dl.meta dt{color:#5b6475}dl.meta dd{margin:0;overflow-wrap:anywhere}
details summary{cursor:pointer;color:#2a5db0}details ul{max-height:320px;overflow:auto}
figure{margin:0 0 16px;text-align:center}figure img{max-width:100%;height:auto}
.thumb{width:96px;height:96px;object-fit:contain;background:#fff;border:3px solid #fff;
border-radius:4px;display:inline-block;vertical-align:top}
.thumb.gold,div.thumb.missing.gold{border-color:#2e9e4f}
div.thumb.missing{box-sizing:border-box;color:#8a93a3;font-size:11px;text-align:center;
padding-top:36px;border:2px dashed #c9ced8;background:#f5f6f8}
.card{font-size:12px;text-align:center;border:0;padding:0;background:none}
.true{color:#2e7d32}.pred{color:#c62828}
ol.captions{margin:0;padding-left:20px}ol.captions li.gold{color:#2e7d32;font-weight:600}
.badge{display:inline-block;background:#fdecea;color:#b3261e;border-radius:10px;padding:0 8px;
font-size:12px;font-weight:600}
"""  # the reports' own rules, after crossmodal.pages.STYLESHEET


def write_report(result: ZeroShotResult | RetrievalResult, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``results.json`` and ``report.html`` for ``result`` into ``out_dir``.

    ``results.json`` is written first, so a run's numbers survive a failure while drawing the
    page. Each file is written to a temporary name and moved into place, so a reader never sees
    half a file.

    Returns:
        The path of ``report.html``.

    Raises:
        InputError: ``out_dir`` cannot be created or written, or ``result`` is of another type.
        BackendUnavailableError: matplotlib (``crossmodal[report]``) is not installed.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the report folder ({exc})") from exc
    data = json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / "results.json", data.encode("utf-8"))
    page = out / "report.html"
    write_atomic(page, render_report(result).encode("utf-8"))
    return page


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; a failure names the file."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from exc


def render_report(result: ZeroShotResult | RetrievalResult) -> str:
    """The HTML page for a zero-shot or a retrieval result, as one string.

    Raises:
        InputError: ``result`` is neither a :class:`ZeroShotResult` nor a
            :class:`RetrievalResult`.
        BackendUnavailableError: matplotlib is not installed.
    """
    thumbs = Thumbnails(THUMBNAIL_SIZE)
    if isinstance(result, ZeroShotResult):
        title = "Zero-shot classification"
        body = _zeroshot_body(result, thumbs)
    elif isinstance(result, RetrievalResult):
        title = "Zero-shot retrieval"
        body = _retrieval_body(result, thumbs)
    else:
        raise InputError(
            f"write_report: expected a ZeroShotResult or RetrievalResult, "
            f"got {type(result).__name__}"
        )
    return html_page(title, result.model, _header(title, result) + body)


def html_page(title: str, model: str, main: str) -> str:
    """A self-contained report page: ``main``'s HTML in the reports' style, nothing loaded."""
    return html_document(f"{title}: {model}", main, css=_CSS)


# --------------------------------------------------------------------------------------------
# building blocks


class Thumbnails:
    """JPEG thumbnails as ``<img>`` tags with data URIs; each source is decoded once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._cache: dict[str, tuple[str | None, str]] = {}  # source → (data URI, error)

    def tag(self, source: str, gold: bool = False) -> str:
        """An ``<img>`` for ``source``, or a placeholder when it cannot be decoded."""
        if source not in self._cache:
            self._cache[source] = self._encode(source)
        uri, error = self._cache[source]
        css = "thumb gold" if gold else "thumb"
        if uri is None:
            tip = escape(f"{source}: {error}")
            return f'<div class="{css} missing" title="{tip}">no image</div>'
        return f'<img class="{css}" src="{uri}" alt="{escape(source)}" title="{escape(source)}">'

    def _encode(self, source: str) -> tuple[str | None, str]:
        try:
            image = load_image(source, draft_size=self._size)
            return jpeg_data_uri(image, self._size, quality=80), ""
        except (CrossmodalError, OSError, ValueError) as exc:
            return None, short_message(exc, 300)


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


def _figure(png: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    return f'<figure><img src="{uri}" alt="{escape(alt)}"></figure>'


def _format(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if key.endswith("rank") else f"{value:.4f}"
    return escape(str(value))


def _metrics_table(groups: Sequence[tuple[str, Iterable[tuple[str, str, Any]]]]) -> str:
    """A table of ``(results.json key, description, value)`` rows under group headings."""
    rows = [
        '<table class="metrics"><tr><th>key in results.json</th><th>metric</th><th>value</th></tr>'
    ]
    for heading, entries in groups:
        rows.append(f'<tr class="group"><td colspan="3">{escape(heading)}</td></tr>')
        rows.extend(
            f"<tr><td><code>{escape(key)}</code></td><td>{escape(text)}</td>"
            f'<td class="num">{_format(key, value)}</td></tr>'
            for key, text, value in entries
        )
    return "".join(rows) + "</table>"


def _header(title: str, result: ZeroShotResult | RetrievalResult) -> str:
    if isinstance(result, ZeroShotResult):
        size = f"{len(result.y_true)} images, {len(result.report.class_names)} classes"
        language = result.language
        first = f" (first: {result.templates[0]})" if result.templates else ""
        templates = f"{len(result.templates)}{first}"
        if result.plain_top_k is not None:
            templates += (
                f"; hierarchical (CHiLS) over {result.n_subclasses} subclasses, plain prompts "
                f"acc1 {result.plain_top_k[1]:.4f}"
            )
    else:
        size = f"{result.n_images} images, {result.n_texts} texts"
        language = str(result.extra.get("language", ""))
        templates = ""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fields = [
        ("model", result.model),
        ("dataset", result.dataset),
        ("evaluated", size),
        ("language", language),
        ("prompt templates", templates),
        ("run time", f"{result.seconds:.1f} s"),
        ("generated", generated),
    ]
    fields = [(name, value) for name, value in fields if value]
    meta = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in fields)
    return (
        f'<section><h1>{escape(title)}</h1><dl class="meta">{meta}</dl>'
        f"{_skipped(result.skipped)}</section>"
    )


def _skipped(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return '<p class="muted">No inputs were skipped.</p>'
    items = "".join(
        f"<li><code>{escape(s.source)}</code>: {escape(s.reason)}</li>"
        for s in skipped[:MAX_SKIPPED_LISTED]
    )
    more = len(skipped) - MAX_SKIPPED_LISTED
    if more > 0:
        items += f'<li class="muted">… and {more} more (all are in results.json)</li>'
    return (
        f'<details><summary><span class="badge">{len(skipped)} skipped</span> '
        f"inputs that could not be used</summary><ul>{items}</ul></details>"
    )


# --------------------------------------------------------------------------------------------
# zero-shot classification


def _zeroshot_body(result: ZeroShotResult, thumbs: Thumbnails) -> str:
    written = result.to_dict()
    metrics = written["metrics"]
    ours: list[tuple[str, str, Any]] = [
        ("accuracy", "top-1 accuracy", metrics["accuracy"]),
        ("balanced_accuracy", "mean recall over classes present", metrics["balanced_accuracy"]),
    ]
    for kind in ("macro", "micro", "weighted"):
        ours += [
            (f"{kind}.{m}", f"{kind}-averaged {m}", metrics[kind][m])
            for m in ("precision", "recall", "f1")
        ]
    shared = [(k, text, metrics[k]) for k, text in _CLIP_BENCHMARK_KEYS.items()]
    for key, value in written.get("hierarchy", {}).get("plain", {}).items():
        ours.append(
            (f"hierarchy.plain.{key}", f"{key} of the plain prompts (no subclasses)", value)
        )
    table = _metrics_table([("CLIP_benchmark", shared), ("crossmodal", ours)])
    confusion = _figure(plots.confusion_matrix_png(result.report), "Confusion matrix")
    plot_html = confusion + _figure(plots.per_class_f1_png(result.report), "Per-class F1")
    return (
        _section("Metrics", table + _per_class_table(result))
        + _section("Plots", plot_html)
        + _section("Misclassified images", _misclassified(result, thumbs))
    )


def _per_class_table(result: ZeroShotResult) -> str:
    r = result.report
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{r.precision[i]:.4f}</td>'
        f'<td class="num">{r.recall[i]:.4f}</td><td class="num">{r.f1[i]:.4f}</td>'
        f'<td class="num">{int(r.support[i])}</td></tr>'
        for i, name in enumerate(r.class_names)
    )
    return (
        f"<details><summary>Per-class metrics ({len(r.class_names)} classes)</summary><table>"
        "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        f"{rows}</table></details>"
    )


def _misclassified(result: ZeroShotResult, thumbs: Thumbnails) -> str:
    y_true = np.asarray(result.y_true)
    y_pred = np.asarray(result.y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        return '<p class="muted">Every image was classified correctly.</p>'
    # The classes with the lowest recall first: their errors are the ones worth looking at.
    order = wrong[np.argsort(result.report.recall[y_true[wrong]], kind="stable")]
    shown = order[:MAX_MISCLASSIFIED]
    names = result.report.class_names
    cards = "".join(
        f'<div class="card">{thumbs.tag(result.images[i])}'
        f'<div class="true">true: {escape(names[y_true[i]])}</div>'
        f'<div class="pred">predicted: {escape(names[y_pred[i]])}</div></div>'
        for i in shown
    )
    note = f"{wrong.size} of {y_true.size} images misclassified"
    if wrong.size > shown.size:
        note += f"; showing {shown.size}, lowest-recall classes first"
    return f'<p class="muted">{escape(note)}.</p><div class="grid">{cards}</div>'


# --------------------------------------------------------------------------------------------
# retrieval


def _describe_retrieval_key(key: str) -> str:
    if key.startswith("image_retrieval_recall@"):
        return f"text → image Recall@{key.rsplit('@', 1)[1]}"
    if key.startswith("text_retrieval_recall@"):
        return f"image → text Recall@{key.rsplit('@', 1)[1]}"
    for direction, name in _DIRECTION_NAMES.items():
        if key.startswith(direction + "_"):
            what = key[len(direction) + 1 :].replace("_", " ")
            return f"{name} {'mAP' if what == 'map' else what}"
    return key


def _retrieval_body(result: RetrievalResult, thumbs: Thumbnails) -> str:
    metrics = result.report.to_dict()
    rows = [(k, _describe_retrieval_key(k), v) for k, v in metrics.items()]
    shared = [r for r in rows if "_retrieval_recall@" in r[0]]
    ours = [r for r in rows if "_retrieval_recall@" not in r[0]]
    table = _metrics_table([("CLIP_benchmark", shared), ("crossmodal", ours)])
    curve = plots.recall_curve_png(result.report, result.n_images, result.n_texts)
    t2i = [e for e in result.worst if e.direction == "text_to_image"]
    i2t = [e for e in result.worst if e.direction == "image_to_text"]
    return (
        _section("Metrics", table)
        + _section("Plots", _figure(curve, "Recall@K, both directions"))
        + _section("Worst text → image queries", _text_to_image(t2i, thumbs))
        + _section("Worst image → text queries", _image_to_text(i2t, thumbs))
    )


def _text_to_image(examples: Sequence[RetrievalExample], thumbs: Thumbnails) -> str:
    if not examples:
        return '<p class="muted">No examples recorded.</p>'
    rows = []
    for e in examples:
        gold = set(e.positives)
        expected = "".join(thumbs.tag(p, gold=True) for p in e.positives[:2])
        got = "".join(thumbs.tag(r, gold=r in gold) for r in e.retrieved[:TOP_RETRIEVED])
        rows.append(
            f'<tr><td>{escape(e.query)}</td><td class="num">{e.rank}</td>'
            f"<td>{expected}</td><td>{got}</td></tr>"
        )
    return (
        '<p class="muted">Green borders mark the gold images.</p><table><tr><th>query text</th>'
        f"<th>rank</th><th>gold image</th><th>top {TOP_RETRIEVED} retrieved</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _image_to_text(examples: Sequence[RetrievalExample], thumbs: Thumbnails) -> str:
    if not examples:
        return '<p class="muted">No examples recorded.</p>'
    rows = []
    for e in examples:
        gold = set(e.positives)
        expected = escape(e.positives[0]) if e.positives else "–"
        got = "".join(
            f'<li class="gold">{escape(r)}</li>' if r in gold else f"<li>{escape(r)}</li>"
            for r in e.retrieved[:TOP_RETRIEVED]
        )
        rows.append(
            f'<tr><td>{thumbs.tag(e.query)}</td><td class="num">{e.rank}</td>'
            f'<td>{expected}</td><td><ol class="captions">{got}</ol></td></tr>'
        )
    return (
        '<p class="muted">Gold captions are in green.</p><table><tr><th>query image</th>'
        f"<th>rank</th><th>a gold caption</th><th>top {TOP_RETRIEVED} retrieved</th></tr>"
        + "".join(rows)
        + "</table>"
    )
