"""Evaluation runs: zero-shot and retrieval results against metrics recomputed by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from crossmodal.data.sources import FolderSource, ManifestSource, Sample, WebDatasetSource
from crossmodal.encoders import load_encoder
from crossmodal.encoders.base import Encoder, FloatArray
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import ConfigError, ImageDecodeError, InputError
from crossmodal.eval.metrics import (
    RetrievalReport,
    pairs_from_image_index,
    retrieval_metrics,
    top_k_accuracy,
)
from crossmodal.eval.report import render_report
from crossmodal.eval.results import RetrievalExample
from crossmodal.eval.runner import EvalConfig, run_retrieval, run_zeroshot
from crossmodal.eval.zeroshot import (
    HIERARCHY_SCALE,
    TEMPLATES,
    build_classifier,
    hierarchical_scores,
    predict,
)
from crossmodal.text.base import TokenBatch
from tests.test_eval_data import (
    COLOURS,
    encoded,
    make_class_folders,
    shard_members,
    solid,
    write_shard,
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("native:test-tiny", device="cpu", precision="fp32")


def captioned_manifest(root: Path, n_images: int = 6) -> Path:
    """A JSONL manifest of ``n_images`` images with 1 to 3 captions each, one without any."""
    (root / "img").mkdir(parents=True)
    lines = []
    for i in range(n_images):
        name = list(COLOURS)[i % 3]
        solid(COLOURS[name], seed=i).save(root / "img" / f"{i}.png")
        captions = [f"{name} square number {i}", f"a {name} thing, {i}", f"picture {i}"][
            : 1 + i % 3
        ]
        lines.append({"image": f"img/{i}.png", "caption": captions, "label": name})
    solid((0, 0, 0)).save(root / "img" / "bare.png")
    lines.append({"image": "img/bare.png", "label": "black"})
    path = root / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ zero-shot


def test_zeroshot_equals_metrics_recomputed_from_embeddings(
    encoder: Encoder, tmp_path: Path
) -> None:
    make_class_folders(tmp_path)
    source = FolderSource(tmp_path)
    # batch_size 1 reads the 18 images in chunks of 16 and 2.
    result = run_zeroshot(encoder, source, EvalConfig(batch_size=1), model_name="tiny")
    samples = list(source)
    image_emb = Embedder(encoder).embed_images([s.image for s in samples]).vectors
    classifier = build_classifier(encoder, source.class_names, TEMPLATES["en"])
    scores = predict(image_emb, classifier)
    y_true = np.asarray([source.class_names.index(str(s.label)) for s in samples])
    np.testing.assert_array_equal(result.y_true, y_true)
    np.testing.assert_array_equal(result.y_pred, scores.argmax(axis=1))
    assert result.report.accuracy == pytest.approx(np.mean(scores.argmax(axis=1) == y_true))
    assert result.top_k == pytest.approx(top_k_accuracy(scores, y_true, (1, 5, 10)))
    assert result.images == tuple(s.source for s in samples)
    out = result.to_dict()
    assert {"acc1", "acc5", "mean_per_class_recall"} <= set(out["metrics"])
    assert out["metrics"]["acc5"] == 1.0  # 3 classes: top-5 always hits
    assert (out["model"], out["dataset"], out["n_samples"], out["n_skipped"]) == (
        "tiny",
        str(tmp_path),
        18,
        0,
    )
    assert out["templates"] == list(TEMPLATES["en"]) and result.seconds > 0


def test_zeroshot_skips_bad_images_or_raises(encoder: Encoder, tmp_path: Path) -> None:
    make_class_folders(tmp_path, per_class=2)
    (tmp_path / "red" / "broken.png").write_bytes(b"not a png")
    result = run_zeroshot(encoder, FolderSource(tmp_path))
    assert len(result.y_true) == 6
    assert [s.source for s in result.skipped] == [str(tmp_path / "red" / "broken.png")]
    assert result.to_dict()["n_skipped"] == 1
    with pytest.raises(ImageDecodeError, match="broken.png"):
        run_zeroshot(encoder, FolderSource(tmp_path), EvalConfig(on_error="raise"))


def test_zeroshot_display_names_and_chinese_templates(encoder: Encoder, tmp_path: Path) -> None:
    make_class_folders(tmp_path, per_class=1)
    names = {"red": "红色", "blue": "蓝色"}
    result = run_zeroshot(
        encoder, FolderSource(tmp_path), EvalConfig(language="zh"), class_names=names
    )
    assert result.report.class_names == ("蓝色", "green", "红色")
    assert (result.language, result.templates) == ("zh", TEMPLATES["zh"])
    custom = run_zeroshot(
        encoder, FolderSource(tmp_path), EvalConfig(templates=("{}", "a {} blob"))
    )
    assert custom.templates == ("{}", "a {} blob")


def test_hierarchical_scores_follow_chils_by_hand() -> None:
    scores = np.array([[0.30, 0.20], [0.10, 0.40]], np.float32)  # 2 images, 2 classes
    sub = np.array([[0.10, 0.50, 0.20], [0.30, 0.10, 0.35]], np.float32)  # 3 subclasses
    owner = [0, 1, 1]
    out = hierarchical_scores(scores, sub, owner, scale=10.0)

    def softmax(x: FloatArray) -> FloatArray:
        e = np.exp(x - x.max())
        return e / e.sum()

    for n in range(2):
        p_class, p_sub = softmax(10 * scores[n]), softmax(10 * sub[n])
        expected = [p_class[0] * p_sub[0], p_class[1] * max(p_sub[1], p_sub[2])]
        np.testing.assert_allclose(out[n], expected, rtol=1e-5)
    # image 0: class 0 wins by its own prompt, but class 1's member is far more likely
    assert scores[0].argmax() == 0 and out[0].argmax() == 1
    with pytest.raises(InputError, match="at least one subclass per class"):
        hierarchical_scores(scores, sub, [0, 0, 0])
    with pytest.raises(InputError, match="subclass scores"):
        hierarchical_scores(scores, sub[:1], owner)


def test_zeroshot_with_subclasses_reweighs_and_keeps_the_plain_numbers(
    encoder: Encoder, tmp_path: Path
) -> None:
    make_class_folders(tmp_path, per_class=2)
    source = FolderSource(tmp_path)
    members = {"red": ["scarlet", "crimson"], "blue": ["navy"]}
    plain = run_zeroshot(encoder, source)
    result = run_zeroshot(encoder, source, subclasses=members)
    assert result.plain_top_k == plain.top_k and plain.plain_top_k is None
    assert result.n_subclasses == 6  # each class's own name, then its members
    samples = list(source)
    image_emb = Embedder(encoder).embed_images([s.image for s in samples]).vectors
    names = ["blue", "navy", "green", "red", "scarlet", "crimson"]
    sub_scores = predict(image_emb, build_classifier(encoder, names, TEMPLATES["en"]))
    class_scores = predict(
        image_emb, build_classifier(encoder, source.class_names, TEMPLATES["en"])
    )
    expected = hierarchical_scores(class_scores, sub_scores, [0, 0, 1, 2, 2, 2], HIERARCHY_SCALE)
    np.testing.assert_array_equal(result.y_pred, expected.argmax(axis=1))
    out = result.to_dict()
    assert out["hierarchy"] == {"subclasses": 6, "plain": {"acc1": plain.top_k[1], "acc5": 1.0}}
    assert "hierarchical, 6 subclasses; plain prompts acc1" in result.summary()
    assert "hierarchical (CHiLS) over 6 subclasses, plain prompts acc1" in render_report(result)
    with pytest.raises(InputError, match="none of the dataset's labels.*'purple'"):
        run_zeroshot(encoder, source, subclasses={"purple": ["violet"]})
    # a shared hierarchy may name a class this split lacks: unused, and the rest still counts
    extra = run_zeroshot(encoder, source, subclasses={**members, "purple": ["violet"]})
    np.testing.assert_array_equal(extra.y_pred, result.y_pred)
    assert extra.n_subclasses == 6


def test_zeroshot_on_a_manifest_skips_unlabelled_rows(encoder: Encoder, tmp_path: Path) -> None:
    path = captioned_manifest(tmp_path)
    text = path.read_text(encoding="utf-8").replace(', "label": "black"', "")
    path.write_text(text, encoding="utf-8")
    result = run_zeroshot(encoder, ManifestSource(path))
    assert result.report.class_names == ("blue", "green", "red")
    assert [(s.source, s.reason) for s in result.skipped] == [
        (str(tmp_path / "img" / "bare.png"), "no label")
    ]


def test_zeroshot_needs_labels(encoder: Encoder, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    solid((1, 2, 3)).save(tmp_path / "a.png")
    path.write_text("image,caption\na.png,something\n", encoding="utf-8")
    with pytest.raises(InputError, match="has no labels"):
        run_zeroshot(encoder, ManifestSource(path))


# ------------------------------------------------------------------------------ retrieval


def test_retrieval_equals_metrics_recomputed_from_embeddings(
    encoder: Encoder, tmp_path: Path
) -> None:
    source = ManifestSource(captioned_manifest(tmp_path))
    config = EvalConfig(batch_size=2, ks=(1, 2, 5), worst_n=3)
    result = run_retrieval(encoder, source, config)
    samples = [s for s in source if s.captions]
    texts = [c for s in samples for c in s.captions]
    text_image = np.repeat(np.arange(len(samples)), [len(s.captions) for s in samples])
    embedder = Embedder(encoder, EmbedConfig(batch_size=2))  # same batches, same bits
    image_emb = embedder.embed_images([s.image for s in samples]).vectors
    text_emb = embedder.embed_texts(texts)
    expected = retrieval_metrics(text_emb, image_emb, pairs_from_image_index(text_image), (1, 2, 5))
    assert (result.n_texts, result.n_images) == (12, 6)
    np.testing.assert_array_equal(result.report.text_to_image_ranks, expected.text_to_image_ranks)
    np.testing.assert_array_equal(result.report.image_to_text_ranks, expected.image_to_text_ranks)
    out = result.to_dict()
    assert out["metrics"] == pytest.approx(expected.to_dict())
    assert {"image_retrieval_recall@1", "text_retrieval_recall@5"} <= set(out["metrics"])
    assert (out["model"], out["n_skipped"]) == (encoder.spec, 1)
    assert result.skipped[0].reason == "no caption"
    _check_worst(result.worst, expected, texts, text_image, samples, text_emb, image_emb)


def _check_worst(
    worst: Sequence[RetrievalExample],
    expected: RetrievalReport,
    texts: list[str],
    text_image: npt.NDArray[np.int64],
    samples: list[Sample],
    text_emb: FloatArray,
    image_emb: FloatArray,
) -> None:
    """The examples are the 3 worst ranks of each direction, with the true top-5 retrieved."""
    sources = [s.source for s in samples]
    t2i = [w for w in worst if w.direction == "text_to_image"]
    i2t = [w for w in worst if w.direction == "image_to_text"]
    t_ranks, i_ranks = expected.text_to_image_ranks, expected.image_to_text_ranks
    assert [w.rank for w in t2i] == sorted(t_ranks.tolist(), reverse=True)[:3]
    assert [w.rank for w in i2t] == sorted(i_ranks.tolist(), reverse=True)[:3]
    for w in t2i:
        q = texts.index(w.query)
        assert w.rank == t_ranks[q] and w.positives == (sources[text_image[q]],)
        top = np.argsort(-(image_emb @ text_emb[q]), kind="stable")[:5]
        assert w.retrieved == tuple(sources[i] for i in top)
    for w in i2t:
        q = sources.index(w.query)
        assert w.rank == i_ranks[q] and w.positives == samples[q].captions
        top = np.argsort(-(text_emb @ image_emb[q]), kind="stable")[:5]
        assert w.retrieved == tuple(texts[i] for i in top)


def test_retrieval_over_shards_counts_every_skip(encoder: Encoder, tmp_path: Path) -> None:
    members = shard_members("k", 5)
    members[2] = ("k001.jpg", b"garbage")  # refused when the shard is read
    jpeg = encoded(solid((9, 9, 9), size=256), "JPEG")
    members[4] = ("k002.jpg", jpeg[: len(jpeg) * 3 // 4])  # header fine, pixels cut
    shard = write_shard(tmp_path / "s.tar", members)
    result = run_retrieval(encoder, WebDatasetSource(shard), EvalConfig(worst_n=0))
    assert (result.n_images, result.n_texts, result.worst) == (3, 3, ())
    assert [s.source for s in result.skipped] == [f"{shard}:k001.jpg", f"{shard}:k002"]
    assert "truncated" in result.skipped[1].reason


def test_retrieval_needs_captions(encoder: Encoder, tmp_path: Path) -> None:
    make_class_folders(tmp_path, per_class=1)
    with pytest.raises(InputError, match=r"no image could be evaluated \(3 skipped.*no caption"):
        run_retrieval(encoder, FolderSource(tmp_path))


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="language"):
        EvalConfig(language="fr")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="placeholder"):
        EvalConfig(templates=("a photo",))
    with pytest.raises(ConfigError, match="ks"):
        EvalConfig(ks=(0,))


# ------------------------------------------------------------------------------ a perfect model

PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}


class _MeanColour:
    """Preprocess: the image at 8x8, scaled to [0, 1]."""

    image_size = 8

    def __call__(self, image: Image.Image) -> FloatArray:
        pixels = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        return pixels.transpose(2, 0, 1)  # (3, 8, 8)


class _ColourWords:
    """Tokenizer: the index of the first palette colour named in the text."""

    context_length = 1

    def encode(self, text: str) -> list[int]:
        words = re.findall(r"\w+", text.lower())
        return [next(i for i, name in enumerate(PALETTE) if name in words)]

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        ids = np.asarray([self.encode(t) for t in texts], dtype=np.int64).reshape(-1, 1)
        return TokenBatch(ids, np.ones_like(ids))


class ColourOracle:
    """An encoder that is always right: the nearest palette colour, one-hot, for both sides."""

    spec = "test:colour-oracle"
    dim = len(PALETTE)
    preprocess = _MeanColour()
    tokenizer = _ColourWords()

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        mean = pixels.mean(axis=(2, 3)) * 255.0  # (B, 3)
        palette = np.asarray(list(PALETTE.values()), dtype=np.float32)  # (K, 3)
        distance = np.linalg.norm(mean[:, None, :] - palette[None], axis=2)  # (B, K)
        one_hot: FloatArray = np.eye(self.dim, dtype=np.float32)[distance.argmin(axis=1)]
        return one_hot

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        return np.eye(self.dim, dtype=np.float32)[tokens.ids[:, 0]]


def test_a_perfect_encoder_scores_perfectly_end_to_end(tmp_path: Path) -> None:
    oracle = ColourOracle()
    assert isinstance(oracle, Encoder)
    make_class_folders(tmp_path / "classes")
    zeroshot = run_zeroshot(oracle, FolderSource(tmp_path / "classes"))
    assert zeroshot.to_dict()["metrics"]["acc1"] == 1.0
    assert zeroshot.report.macro_f1 == 1.0

    (tmp_path / "img").mkdir()
    lines = []
    for i, (name, rgb) in enumerate(PALETTE.items()):
        solid(rgb, seed=i).save(tmp_path / "img" / f"{i}.png")
        lines.append({"image": f"img/{i}.png", "caption": [f"a {name} square", name]})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    retrieval = run_retrieval(oracle, ManifestSource(manifest))
    metrics = retrieval.to_dict()["metrics"]
    assert metrics["image_retrieval_recall@1"] == 1.0
    assert metrics["text_retrieval_recall@1"] == 1.0
    assert all(w.rank == 1 for w in retrieval.worst)
