"""Evaluation plots as PNG bytes: confusion matrix, per-class F1, Recall@K curves.

Figures are drawn with matplotlib's object API (:class:`matplotlib.figure.Figure` on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`), never ``pyplot``: no global backend
or figure registry is touched, so plotting is safe inside servers and threads. matplotlib is an
optional dependency (``pip install 'crossmodal[report]'``), imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec

import numpy as np
import numpy.typing as npt

from crossmodal.errors import BackendUnavailableError, InputError
from crossmodal.eval.metrics import ClassificationReport, RetrievalReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MAX_CONFUSION_CLASSES",
    "MAX_F1_BARS",
    "MAX_RECALL_K",
    "confusion_matrix_png",
    "font_families",
    "most_confused_classes",
    "per_class_f1_png",
    "recall_curve_png",
]

MAX_CONFUSION_CLASSES = 50  # above this many classes the heat map shows the most confused ones
MAX_F1_BARS = 50  # above this many classes the F1 chart shows the lowest-scoring ones
MAX_RECALL_K = 100  # the Recall@K curve runs k = 1..min(MAX_RECALL_K, gallery size)
Direction = Literal["text_to_image", "image_to_text"]
_DPI = 100  # pixels per inch of the PNGs
_MAX_WIDTH = 11.0  # inches: about the width of the report's plot column at _DPI
_ANNOTATE_UP_TO = 20  # confusion cells carry their value as text up to this many classes
_DIRECTION_STYLE = {
    "text_to_image": ("text → image", "#1f77b4", "o"),
    "image_to_text": ("image → text", "#d62728", "s"),
}  # direction → (legend label, colour, marker)


_P = ParamSpec("_P")
_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Noto Serif CJK SC",
)  # fonts with Chinese glyphs, best first
_CJK_FILES = ("CJK", "SourceHan", "wqy", "msyh", "simhei", "PingFang", "Hiragino")


@functools.cache
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then a Chinese font when the system has one (for Chinese class names).

    matplotlib falls back along the list glyph by glyph. Its font cache does not always list
    font collections (``.ttc``, as Noto CJK ships), so those are added when no Chinese font is
    known yet.
    """
    from matplotlib import font_manager

    manager = font_manager.fontManager
    names = {font.name for font in manager.ttflist}
    if not names.intersection(_CJK_FAMILIES):
        for path in font_manager.findSystemFonts(fontext="ttf"):
            if any(key.lower() in Path(path).name.lower() for key in _CJK_FILES):
                with contextlib.suppress(Exception):  # an unreadable font file: skip it
                    manager.addfont(path)
        names = {font.name for font in manager.ttflist}
    chinese = next((name for name in _CJK_FAMILIES if name in names), None)
    return ("DejaVu Sans",) if chinese is None else ("DejaVu Sans", chinese)


def _with_fonts(draw: Callable[_P, bytes]) -> Callable[_P, bytes]:
    """Run ``draw`` with :func:`font_families` (a context, not a global setting)."""

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> bytes:
        try:
            import matplotlib
        except ImportError:
            return draw(*args, **kwargs)  # _new_figure raises the error naming the extra
        with matplotlib.rc_context({"font.family": list(font_families())}):
            return draw(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas; raises if matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BackendUnavailableError("report", "report", "matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()


def most_confused_classes(confusion: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """Indices of the ``n`` classes involved in the most errors, in class-index order.

    A class's errors are its off-diagonal row (its samples predicted as something else) plus its
    off-diagonal column (other samples predicted as it). Ties go to the lower index.

    Raises:
        InputError: ``confusion`` is not square or ``n`` is below 1.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InputError(f"confusion: expected a square (C, C) matrix, got shape {cm.shape}")
    if n < 1:
        raise InputError(f"n: must be at least 1, got {n}")
    off = cm - np.diag(np.diag(cm))
    errors = off.sum(axis=0) + off.sum(axis=1)
    order = np.argsort(-errors, kind="stable")[:n]
    return np.sort(order).astype(np.int64)


@_with_fonts
def confusion_matrix_png(
    report: ClassificationReport, max_classes: int = MAX_CONFUSION_CLASSES
) -> bytes:
    """A heat map of the row-normalised confusion matrix, in percent of each true class.

    Rows are true classes, columns predicted classes, both labelled with the class names. With
    more than ``max_classes`` classes only the ``max_classes`` most confused ones are drawn
    (:func:`most_confused_classes`); their rows are still normalised over all predictions.

    Raises:
        BackendUnavailableError: matplotlib is not installed.
    """
    cm = np.asarray(report.confusion, dtype=np.float64)
    n_classes = cm.shape[0]
    shown = np.arange(n_classes)
    title = "Confusion matrix (rows normalised)"
    if n_classes > max_classes:
        shown = most_confused_classes(cm, max_classes)
        title = f"Confusion matrix: the {max_classes} most confused of {n_classes} classes"
    totals = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    view = 100.0 * normalised[np.ix_(shown, shown)]  # (n, n) percent of each true class
    names = [_short(report.class_names[i]) for i in shown]
    n = len(shown)
    # At most _MAX_WIDTH inches, so the page shows it unscaled and 50 labels stay legible.
    side = float(np.clip(3.5 + 0.15 * n, 6.5, _MAX_WIDTH - 1.5))
    font = float(np.clip(12.0 - n / 6.0, 8.0, 10.0))
    fig = _new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(view, cmap="Blues", vmin=0.0, vmax=100.0, interpolation="nearest")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels=names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= _ANNOTATE_UP_TO:
        _annotate_cells(ax, view, font - 1.0)
    fig.colorbar(image, ax=ax, shrink=0.6, label="% of the true class")
    return _png(fig)


def _short(name: str, limit: int = 28) -> str:
    """``name`` cut to ``limit`` characters, with an ellipsis when cut (axis labels)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _annotate_cells(ax: Any, view: npt.NDArray[np.float64], font: float) -> None:
    """Write each non-zero cell's percentage on it, white on dark cells."""
    for row, col in zip(*np.nonzero(view), strict=True):
        value = float(view[row, col])
        colour = "white" if value > 55.0 else "#222222"
        ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=font, color=colour)


@_with_fonts
def per_class_f1_png(report: ClassificationReport, max_bars: int = MAX_F1_BARS) -> bytes:
    """Horizontal bars of per-class F1, worst at the top, with the macro F1 as a dashed line.

    With more than ``max_bars`` classes only the ``max_bars`` lowest-scoring ones are drawn.

    Raises:
        BackendUnavailableError: matplotlib is not installed.
    """
    f1 = np.asarray(report.f1, dtype=np.float64)
    order = np.argsort(f1, kind="stable")  # worst first (ties: lower class index first)
    title = "Per-class F1"
    if order.size > max_bars:
        order = order[:max_bars]
        title = f"Per-class F1: the {max_bars} lowest of {f1.size} classes"
    order = order[::-1]  # barh draws bottom-up: best at the bottom, worst at the top
    n = order.size
    font = float(np.clip(12.0 - n / 8.0, 8.0, 10.0))
    fig = _new_figure(9.0, float(np.clip(1.2 + 0.24 * n, 3.0, 13.5)))
    ax = fig.add_subplot()
    y = np.arange(n)
    values = f1[order]
    ax.barh(y, values, color=[_f1_colour(v) for v in values], height=0.75)
    ax.set_yticks(y, labels=[_short(report.class_names[i]) for i in order], fontsize=font)
    for yi, value in enumerate(values):
        inside = value >= 0.15  # inside the bar's end when it fits, else just after it
        x, align, colour = (
            (value - 0.01, "right", "white") if inside else (value + 0.01, "left", "black")
        )
        ax.text(x, yi, f"{value:.2f}", va="center", ha=align, fontsize=font, color=colour)
    ax.axvline(report.macro_f1, color="#444444", linestyle="--", linewidth=1)
    ax.text(report.macro_f1, n - 0.4, f" macro F1 {report.macro_f1:.2f}", fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-0.6, n - 0.4 + 0.8)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _f1_colour(value: float) -> str:
    """Red for poor, amber for middling, green for good F1."""
    if value < 0.5:
        return "#d9534f"
    return "#f0ad4e" if value < 0.8 else "#5cb85c"


@_with_fonts
def recall_curve_png(
    report: RetrievalReport, n_images: int, n_texts: int, max_k: int = MAX_RECALL_K
) -> bytes:
    """Recall@K for k = 1..min(max_k, gallery size), both directions, marked at ``report.ks``.

    The legend gives each direction's Recall@k at the marked ks.

    Text → image queries search ``n_images`` images, image → text queries ``n_texts`` texts, so
    each curve stops at its own gallery size (or ``max_k``). The x axis is logarithmic once it
    spans 20 or more values of k.

    Raises:
        BackendUnavailableError: matplotlib is not installed.
        InputError: a gallery size or ``max_k`` below 1.
    """
    if min(n_images, n_texts, max_k) < 1:
        raise InputError(
            f"n_images, n_texts and max_k must be at least 1, got {n_images}, {n_texts}, {max_k}"
        )
    fig = _new_figure(8.0, 4.8)
    ax = fig.add_subplot()
    widest = 1
    galleries: tuple[tuple[Direction, int], ...] = (
        ("text_to_image", n_images),
        ("image_to_text", n_texts),
    )
    for direction, gallery in galleries:
        label, colour, marker = _DIRECTION_STYLE[direction]
        top = min(max_k, gallery)
        widest = max(widest, top)
        curve = report.recall_curve(direction, top)
        ks = np.arange(1, top + 1)
        marked = [k for k in report.ks if k <= top]
        values = [float(curve[k - 1]) for k in marked]
        # The values at the marked ks go in the legend: labels on the curves would collide.
        at_ks = ", ".join(f"R@{k} {v:.2f}" for k, v in zip(marked, values, strict=True))
        ax.plot(ks, curve, color=colour, linewidth=2, label=f"{label} ({at_ks})")
        ax.plot(
            marked,
            values,
            linestyle="none",
            marker=marker,
            color=colour,
            markersize=7,
            clip_on=False,
        )
    if widest >= 20:
        ax.set_xscale("log")
        ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if t <= widest]
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
    ax.set_xlim(*((1, widest) if widest > 1 else (0.5, 1.5)))
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_title("Recall@K")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return _png(fig)
