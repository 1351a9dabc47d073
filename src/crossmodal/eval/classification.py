"""Classification metrics on plain numpy arrays, matching scikit-learn.

Every value equals scikit-learn's with ``labels=range(n_classes)`` and ``zero_division=0``
(see ``tests/test_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from crossmodal.errors import InputError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Direction = Literal["text_to_image", "image_to_text"]
_DIRECTIONS: tuple[Direction, ...] = ("text_to_image", "image_to_text")

# --------------------------------------------------------------------------------------------
# validation helpers


def _labels(name: str, values: npt.ArrayLike, n_classes: int) -> IntArray:
    """Return ``values`` as a 1-D int64 array of class indices in ``[0, n_classes)``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: is empty; pass at least one sample")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise InputError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    bad = np.flatnonzero((out < 0) | (out >= n_classes))
    if bad.size:
        raise InputError(
            f"{name}[{bad[0]}] = {out[bad[0]]} is not a class index in [0, {n_classes}); "
            "check the labels or n_classes"
        )
    return out


def _check_n_classes(n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise InputError(f"n_classes: expected an int, got {type(n_classes).__name__}")
    if n_classes < 1:
        raise InputError(f"n_classes: must be at least 1, got {n_classes}")


def check_ks(ks: Iterable[int], name: str = "ks") -> tuple[int, ...]:
    out = tuple(ks)
    if not out:
        raise InputError(f"{name}: is empty; pass at least one k, e.g. (1, 5)")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"{name}: every k must be a positive int, got {k!r}")
    return tuple(int(k) for k in out)


def _safe_div(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """``num / den`` elementwise, 0.0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(n, d).shape, dtype=np.float64)
    np.divide(n, d, out=out, where=d != 0)
    return out


# --------------------------------------------------------------------------------------------
# classification


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> IntArray:
    """Count samples per (true class, predicted class).

    Args:
        y_true: ``(N,)`` true class indices in ``[0, n_classes)``.
        y_pred: ``(N,)`` predicted class indices in ``[0, n_classes)``.
        n_classes: number of classes ``C``; classes absent from both arrays get zero rows/cols.

    Returns:
        ``(C, C)`` int64 matrix, rows = true class, columns = predicted class; equal to
        ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(C))``.

    Raises:
        InputError: on shape mismatch, empty input or an index outside ``[0, n_classes)``.
    """
    _check_n_classes(n_classes)
    t = _labels("y_true", y_true, n_classes)
    p = _labels("y_pred", y_pred, n_classes)
    if t.shape != p.shape:
        raise InputError(f"y_pred: has {p.size} samples but y_true has {t.size}; pass one each")
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.astype(np.int64).reshape(n_classes, n_classes)


def top_k_accuracy(
    scores: npt.ArrayLike, y_true: npt.ArrayLike, ks: Iterable[int] = (1, 5)
) -> dict[int, float]:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties follow scikit-learn's ``top_k_accuracy_score``: among equal scores the class with the
    higher index ranks first. So the true class ``y`` has rank
    ``#{c: s_c > s_y} + #{c > y: s_c == s_y}`` (0-based) and is a hit when that is below ``k``.
    A ``k`` of at least the number of classes is always a hit (scikit-learn warns, same value).

    Args:
        scores: ``(N, C)`` class scores (logits, probabilities, similarities), finite.
        y_true: ``(N,)`` true class indices in ``[0, C)``.
        ks: the values of ``k``, each a positive int.

    Returns:
        ``{k: accuracy}`` for each ``k`` in ``ks``.

    Raises:
        InputError: on bad shapes, empty input, non-finite scores, bad ``ks`` or labels.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise InputError(f"scores: expected shape (N, n_classes), got {s.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise InputError(f"scores: is empty (shape {s.shape}); pass at least one sample and class")
    if not np.issubdtype(s.dtype, np.number) or not np.isfinite(s).all():
        raise InputError("scores: must be finite numbers (found NaN, inf or non-numeric values)")
    t = _labels("y_true", y_true, s.shape[1])
    if t.shape[0] != s.shape[0]:
        raise InputError(f"y_true: has {t.shape[0]} samples but scores has {s.shape[0]} rows")
    ks_ = check_ks(ks)
    true_score = s[np.arange(s.shape[0]), t][:, None]
    later = np.arange(s.shape[1])[None, :] > t[:, None]
    rank = (s > true_score).sum(axis=1) + ((s == true_score) & later).sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in ks_}


@dataclass(frozen=True, eq=False)
class ClassificationReport:
    """Classification metrics for ``C`` classes, as scikit-learn computes them.

    Per-class arrays have shape ``(C,)`` in class-index order. Averages follow
    ``precision_recall_fscore_support(..., labels=range(C), zero_division=0)``: a class with no
    predictions has precision 0, a class with no true samples has recall 0, and the macro
    average includes every one of the ``C`` classes. ``balanced_accuracy`` is the mean recall
    over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``).
    Instances compare by identity (arrays make value equality ambiguous).
    """

    class_names: tuple[str, ...]
    accuracy: float
    balanced_accuracy: float
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray
    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    confusion: IntArray

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types (floats, ints, strings, lists, dicts)."""
        per_class = {
            name: {
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(self.class_names)
        }
        averages = {
            kind: {
                "precision": float(getattr(self, f"{kind}_precision")),
                "recall": float(getattr(self, f"{kind}_recall")),
                "f1": float(getattr(self, f"{kind}_f1")),
            }
            for kind in ("macro", "micro", "weighted")
        }
        return {
            "accuracy": float(self.accuracy),
            "balanced_accuracy": float(self.balanced_accuracy),
            **averages,
            "per_class": per_class,
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion.tolist(),
        }


def _class_names(class_names: Sequence[str] | None, n_classes: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(i) for i in range(n_classes))
    names = tuple(str(n) for n in class_names)
    if len(names) != n_classes:
        raise InputError(f"class_names: has {len(names)} names but n_classes is {n_classes}")
    if len(set(names)) != len(names):
        raise InputError("class_names: names must be unique (they key the per-class results)")
    return names


def classification_report(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> ClassificationReport:
    """Compute accuracy, balanced accuracy, per-class and averaged precision/recall/F1.

    Args:
        y_true: ``(N,)`` true class indices in ``[0, n_classes)``.
        y_pred: ``(N,)`` predicted class indices in ``[0, n_classes)``.
        n_classes: number of classes ``C``.
        class_names: optional ``C`` unique display names (default ``"0"``, ``"1"``, ...).

    Returns:
        A :class:`ClassificationReport`; zero divisions give 0.0 as with scikit-learn's
        ``zero_division=0``.

    Raises:
        InputError: on shape mismatch, empty input, out-of-range labels or bad ``class_names``.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    names = _class_names(class_names, n_classes)
    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1).astype(np.int64)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    total = int(support.sum())
    weights = support / total
    micro_p = float(_safe_div(tp.sum(), predicted.sum()))
    micro_r = float(_safe_div(tp.sum(), support.sum()))
    return ClassificationReport(
        class_names=names,
        accuracy=float(tp.sum() / total),
        balanced_accuracy=float(recall[support > 0].mean()),
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=float(_safe_div(np.float64(2 * tp.sum()), support.sum() + predicted.sum())),
        weighted_precision=float(precision @ weights),
        weighted_recall=float(recall @ weights),
        weighted_f1=float(f1 @ weights),
        confusion=cm,
    )
