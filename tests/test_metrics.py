"""crossmodal.eval.metrics against scikit-learn, CLIP_benchmark and a full-matrix reference."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from crossmodal.errors import InputError
from crossmodal.eval import (
    classification_report,
    confusion_matrix,
    pairs_from_dense,
    pairs_from_image_index,
    pairs_from_lists,
    recall_at_k_curve,
    retrieval_metrics,
    top_k_accuracy,
)

# --------------------------------------------------------------------------------------------
# classification


def _sk_check(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> None:
    """Assert every classification number equals scikit-learn's on these labels."""
    skm = pytest.importorskip("sklearn.metrics")
    labels = list(range(n_classes))
    report = classification_report(y_true, y_pred, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "A single label was found" (n_classes == 1)
        sk_confusion = skm.confusion_matrix(y_true, y_pred, labels=labels)
    np.testing.assert_array_equal(report.confusion, sk_confusion)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, n_classes), report.confusion)
    assert report.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    assert report.balanced_accuracy == pytest.approx(balanced, abs=1e-12)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    np.testing.assert_allclose(report.precision, p, atol=1e-12)
    np.testing.assert_allclose(report.recall, r, atol=1e-12)
    np.testing.assert_allclose(report.f1, f, atol=1e-12)
    np.testing.assert_array_equal(report.support, s)
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        assert getattr(report, f"{average}_precision") == pytest.approx(p, abs=1e-12)
        assert getattr(report, f"{average}_recall") == pytest.approx(r, abs=1e-12)
        assert getattr(report, f"{average}_f1") == pytest.approx(f, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_classes", [2, 3, 7, 12])
def test_classification_random_matches_sklearn(seed: int, n_classes: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y_true = rng.integers(0, n_classes, n)
    # Mostly right, so precision/recall are not all near chance.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, n_classes, n))
    _sk_check(y_true, y_pred, n_classes)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n_classes"),
    [
        ([0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 1, 1], 3),  # class 2 never predicted
        ([0, 1, 0, 1, 0, 1], [0, 1, 2, 1, 2, 0], 3),  # class 2 never true
        ([0, 0, 1, 1], [0, 0, 1, 1], 5),  # classes 2..4 neither true nor predicted
        ([0, 0, 0], [0, 0, 0], 1),  # a single class
        ([2, 2, 2, 2], [2, 2, 0, 1], 3),  # one true class only
        ([1], [0], 2),  # one sample, wrong
    ],
)
def test_classification_edge_cases_match_sklearn(
    y_true: list[int], y_pred: list[int], n_classes: int
) -> None:
    _sk_check(np.array(y_true), np.array(y_pred), n_classes)


def test_classification_report_to_dict_is_plain_json() -> None:
    report = classification_report([0, 1, 2, 2], [0, 2, 2, 1], 3, class_names=["a", "b", "c"])
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["per_class"]["c"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert d["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert d["class_names"] == ["a", "b", "c"]
    assert set(d["macro"]) == {"precision", "recall", "f1"}

    def _walk(x: Any) -> None:
        assert type(x) in (dict, list, str, int, float), type(x)
        if isinstance(x, dict):
            for v in x.values():
                _walk(v)
        elif isinstance(x, list):
            for v in x:
                _walk(v)

    _walk(d)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_classes", [3, 5, 10])
@pytest.mark.parametrize("tied", [False, True])
def test_top_k_matches_sklearn(seed: int, n_classes: int, tied: bool) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = 150
    # Tied scores: few distinct values, so the tie rule decides many hits.
    scores = (
        rng.integers(0, 3, (n, n_classes)).astype(float) if tied else rng.random((n, n_classes))
    )
    y_true = rng.integers(0, n_classes, n)
    ks = (1, 2, 3, n_classes)
    ours = top_k_accuracy(scores, y_true, ks=ks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= n_classes
        for k in ks:
            ref = skm.top_k_accuracy_score(y_true, scores, k=k, labels=list(range(n_classes)))
            assert ours[k] == pytest.approx(ref, abs=1e-12), k


def test_top_k_tie_rule_prefers_higher_class_index() -> None:
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert top_k_accuracy(scores, [1, 0], ks=(1, 2)) == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: confusion_matrix([0, 1], [0], 2), "y_pred"),
        (lambda: confusion_matrix([], [], 2), "y_true"),
        (lambda: confusion_matrix([0, 3], [0, 1], 3), r"y_true\[1\] = 3"),
        (lambda: confusion_matrix([0, 1], [0, -1], 3), r"y_pred\[1\]"),
        (lambda: confusion_matrix([[0, 1]], [[0, 1]], 3), "y_true"),
        (lambda: confusion_matrix([0.0, 1.0], [0, 1], 3), "y_true"),
        (lambda: confusion_matrix([0], [0], 0), "n_classes"),
        (lambda: classification_report([0, 1], [0, 1], 2, class_names=["a"]), "class_names"),
        (lambda: classification_report([0, 1], [0, 1], 2, class_names=["a", "a"]), "class_names"),
        (lambda: top_k_accuracy(np.zeros(3), [0, 1, 2]), "scores"),
        (lambda: top_k_accuracy(np.zeros((0, 3)), []), "scores"),
        (lambda: top_k_accuracy(np.zeros((2, 3)), [0, 1, 2]), "y_true"),
        (lambda: top_k_accuracy(np.zeros((2, 3)), [0, 3]), "y_true"),
        (lambda: top_k_accuracy(np.full((1, 3), np.nan), [0]), "scores"),
        (lambda: top_k_accuracy(np.zeros((1, 3)), [0], ks=(0,)), "ks"),
        (lambda: top_k_accuracy(np.zeros((1, 3)), [0], ks=()), "ks"),
    ],
)
def test_classification_bad_inputs(call: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()


# --------------------------------------------------------------------------------------------
# retrieval: a plain full-matrix reference


def _reference(
    queries: np.ndarray, gallery: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-positive ranks (argsort, ties: positives first) and sklearn APs, full matrix."""
    skm = pytest.importorskip("sklearn.metrics")
    sims = queries @ gallery.T
    ranks = np.empty(len(sims), dtype=np.int64)
    aps = np.empty(len(sims))
    for q in range(len(sims)):
        # Score descending; among equal scores positives first (the documented tie rule).
        order = np.lexsort((~positive[q], -sims[q]))
        ranks[q] = 1 + int(np.flatnonzero(positive[q][order])[0])
        aps[q] = skm.average_precision_score(positive[q], sims[q])
    return ranks, aps


def _dense(pairs: np.ndarray, n_texts: int, n_images: int) -> np.ndarray:
    mask = np.zeros((n_texts, n_images), dtype=bool)
    mask[pairs[:, 0], pairs[:, 1]] = True
    return mask


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _captions_data(
    seed: int, n_images: int = 40, per_image: int = 5, d: int = 16, noise: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images with ``per_image`` noisy captions each; text t describes image t // per_image."""
    rng = np.random.default_rng(seed)
    images = _unit(rng, n_images, d)
    texts = np.repeat(images, per_image, axis=0) + noise * _unit(rng, n_images * per_image, d)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    pairs = pairs_from_image_index(np.repeat(np.arange(n_images), per_image))
    return texts.astype(np.float32), images, pairs


def _quantised_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small-integer embeddings: exact dot products with many ties; many positives per query."""
    rng = np.random.default_rng(seed)
    n_texts, n_images = 45, 60
    texts = rng.integers(-2, 3, (n_texts, 6)).astype(np.float32)
    images = rng.integers(-2, 3, (n_images, 6)).astype(np.float32)
    mask = rng.random((n_texts, n_images)) < 0.08
    mask[0, :40] = True  # a query with more positives than the broadcast path handles
    mask[np.arange(n_texts), np.arange(n_texts)] = True
    mask[np.arange(n_images) % n_texts, np.arange(n_images)] = True
    return texts, images, pairs_from_dense(mask)


def _check_against_reference(texts: np.ndarray, images: np.ndarray, pairs: np.ndarray) -> None:
    mask = _dense(pairs, len(texts), len(images))
    t_ranks, t_aps = _reference(texts, images, mask)
    i_ranks, i_aps = _reference(images, texts, mask.T)
    ks = (1, 3, 5, 10, 1000)
    for chunk in (1, 7, 32, len(texts), 10_000):
        report = retrieval_metrics(texts, images, pairs, ks=ks, chunk_size=chunk)
        np.testing.assert_array_equal(report.text_to_image_ranks, t_ranks)
        np.testing.assert_array_equal(report.image_to_text_ranks, i_ranks)
        np.testing.assert_allclose(report.text_to_image_ap, t_aps, rtol=0, atol=1e-12)
        np.testing.assert_allclose(report.image_to_text_ap, i_aps, rtol=0, atol=1e-12)
        d = report.to_dict()
        for k in ks:
            assert d[f"image_retrieval_recall@{k}"] == pytest.approx(np.mean(t_ranks <= k))
            assert d[f"text_retrieval_recall@{k}"] == pytest.approx(np.mean(i_ranks <= k))
        assert d["text_to_image_mean_rank"] == pytest.approx(t_ranks.mean())
        assert d["image_to_text_median_rank"] == pytest.approx(np.median(i_ranks))
        assert d["text_to_image_map"] == pytest.approx(t_aps.mean(), abs=1e-12)
        assert d["image_to_text_map"] == pytest.approx(i_aps.mean(), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_chunked_equals_full_matrix_captions(seed: int) -> None:
    _check_against_reference(*_captions_data(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_chunked_equals_full_matrix_ties_and_many_positives(seed: int) -> None:
    texts, images, pairs = _quantised_data(seed)
    assert np.bincount(pairs[:, 0]).max() > 16  # exercises the per-row sort path
    _check_against_reference(texts, images, pairs)


def test_retrieval_float64_dtype_and_to_dict_keys() -> None:
    texts, images, pairs = _captions_data(3, n_images=10)
    r32 = retrieval_metrics(texts, images, pairs, ks=(1, 5))
    r64 = retrieval_metrics(texts, images, pairs, ks=(1, 5), dtype=np.float64)
    assert r32.to_dict() == pytest.approx(r64.to_dict(), abs=1e-6)
    assert sorted(r32.to_dict()) == sorted(
        [f"{a}_retrieval_recall@{k}" for a in ("image", "text") for k in (1, 5)]
        + [
            f"{d}_{m}"
            for d in ("text_to_image", "image_to_text")
            for m in ("mean_rank", "median_rank", "map")
        ]
    )
    d = r32.to_dict()
    assert json.loads(json.dumps(d)) == d


def test_recall_curve_matches_recall_at_k() -> None:
    texts, images, pairs = _captions_data(4)
    report = retrieval_metrics(texts, images, pairs, ks=range(1, 51))
    curve = report.recall_curve("image_to_text", 50)
    assert curve.shape == (50,)
    assert np.all(np.diff(curve) >= 0)
    for k in range(1, 51):
        assert curve[k - 1] == pytest.approx(report.recall("image_to_text", k))
        assert report.to_dict()[f"text_retrieval_recall@{k}"] == pytest.approx(curve[k - 1])
    np.testing.assert_array_equal(
        recall_at_k_curve(report.text_to_image_ranks, 50),
        report.recall_curve("text_to_image", 50),
    )
    np.testing.assert_allclose(
        recall_at_k_curve(np.array([1, 3, 3, 10]), 4), [0.25, 0.25, 0.75, 0.75]
    )


def test_pair_helpers_agree() -> None:
    lists = [[0], [2, 1], [1]]
    expected = np.array([[0, 0], [1, 2], [1, 1], [2, 1]])
    np.testing.assert_array_equal(pairs_from_lists(lists), expected)
    mask = _dense(expected, 3, 3)
    np.testing.assert_array_equal(pairs_from_dense(mask), np.argwhere(mask))
    np.testing.assert_array_equal(pairs_from_image_index([0, 0, 1]), [[0, 0], [1, 0], [2, 1]])
    # Duplicate pairs count once.
    texts, images, pairs = _captions_data(5, n_images=6)
    once = retrieval_metrics(texts, images, pairs).to_dict()
    assert retrieval_metrics(texts, images, np.concatenate([pairs, pairs])).to_dict() == once


# --------------------------------------------------------------------------------------------
# retrieval: CLIP_benchmark's own evaluate()


class _LookupModel:
    """A 'CLIP model' whose encoders look embeddings up by index."""

    def __init__(self, texts: np.ndarray, images: np.ndarray) -> None:
        import torch

        self.texts = torch.from_numpy(texts)
        self.images = torch.from_numpy(images)

    def encode_image(self, idx: Any) -> Any:
        return self.images[idx]

    def encode_text(self, idx: Any) -> Any:
        return self.texts[idx]


def _clip_benchmark_metrics(
    texts: np.ndarray, images: np.ndarray, per_image: int, ks: tuple[int, ...]
) -> dict[str, float]:
    """Run CLIP_benchmark's zero-shot retrieval ``evaluate`` on precomputed embeddings."""
    torch = pytest.importorskip("torch")
    zr = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    batch = 16
    loader = []
    for start in range(0, len(images), batch):
        idx = torch.arange(start, min(start + batch, len(images)))
        captions = [[str(i * per_image + c) for c in range(per_image)] for i in idx.tolist()]
        loader.append((idx, captions))

    def tokenizer(strings: list[str]) -> Any:
        return torch.tensor([int(s) for s in strings])

    model = _LookupModel(texts, images)
    metrics: dict[str, float] = zr.evaluate(
        model, loader, tokenizer, "cpu", amp=False, recall_k_list=list(ks)
    )
    return metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_clip_benchmark(seed: int) -> None:
    pytest.importorskip("clip_benchmark")
    ks = (1, 5, 10)
    texts, images, pairs = _captions_data(seed, n_images=50, per_image=5, d=24, noise=2.0)
    ref = _clip_benchmark_metrics(texts, images, 5, ks)
    ours = retrieval_metrics(texts, images, pairs, ks=ks, chunk_size=37).to_dict()
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    for key in ("image_retrieval_recall@1", "text_retrieval_recall@1"):
        assert 0.0 < ours[key] < 1.0, key  # not a degenerate comparison


def test_ties_count_in_the_querys_favour_vs_clip_benchmark() -> None:
    """With tied scores CLIP_benchmark's topk picks arbitrarily; ours is never lower."""
    pytest.importorskip("clip_benchmark")
    rng = np.random.default_rng(0)
    images = rng.integers(-1, 2, (30, 3)).astype(np.float32)
    texts = np.repeat(images, 5, axis=0) + rng.integers(-1, 2, (150, 3)).astype(np.float32)
    pairs = pairs_from_image_index(np.repeat(np.arange(30), 5))
    ref = _clip_benchmark_metrics(texts, images, 5, (1, 5))
    ours = retrieval_metrics(texts, images, pairs, ks=(1, 5)).to_dict()
    for key, value in ref.items():
        assert ours[key] >= value - 1e-6, key


# --------------------------------------------------------------------------------------------
# retrieval: bad inputs


def _ok() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _captions_data(0, n_images=4, per_image=2, d=4)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda t, i, p: (t[:, :3], i, p), "image_emb: dimension"),
        (lambda t, i, p: (t[0], i, p), "text_emb"),
        (lambda t, i, p: (t[:0], i, p), "text_emb"),
        (lambda t, i, p: (t, i[:0], p), "image_emb"),
        (lambda t, i, p: (t, i * np.nan, p), "image_emb"),
        (lambda t, i, p: (t, i, p[:0]), "positive_pairs"),
        (lambda t, i, p: (t, i, p[:, 0]), "positive_pairs"),
        (lambda t, i, p: (t, i, p.astype(float)), "positive_pairs"),
        (lambda t, i, p: (t, i, np.vstack([p, [[8, 0]]])), r"positive_pairs\[8\]: text_idx 8"),
        (lambda t, i, p: (t, i, np.vstack([p, [[0, -1]]])), r"positive_pairs\[8\]: image_idx"),
        (lambda t, i, p: (t, i, p[1:]), "positive_pairs: text 0 has no positive"),
        (lambda t, i, p: (t, np.vstack([i, i[:1]]), p), "positive_pairs: image 4 has no positive"),
    ],
)
def test_retrieval_bad_inputs(mutate: Any, match: str) -> None:
    texts, images, pairs = mutate(*_ok())
    with pytest.raises(InputError, match=match):
        retrieval_metrics(texts, images, pairs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"ks": ()}, "ks"),
        ({"ks": (0,)}, "ks"),
    ],
)
def test_retrieval_bad_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        retrieval_metrics(*_ok(), **kwargs)


def test_recall_curve_bad_inputs() -> None:
    with pytest.raises(InputError, match="first_positive_ranks"):
        recall_at_k_curve(np.array([0, 1]), 3)
    with pytest.raises(InputError, match="first_positive_ranks"):
        recall_at_k_curve(np.array([], dtype=np.int64), 3)
    with pytest.raises(InputError, match="max_k"):
        recall_at_k_curve(np.array([1]), 0)
    texts, images, pairs = _ok()
    with pytest.raises(InputError, match="direction"):
        retrieval_metrics(texts, images, pairs).recall_curve("sideways", 3)  # type: ignore[arg-type]
