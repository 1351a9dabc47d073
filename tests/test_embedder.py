"""The embedder: batching, order, parallel decoding, bad files, texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal.encoders import load_encoder
from crossmodal.encoders.base import Encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import ConfigError, ImageDecodeError, InputError


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("native:test-tiny", device="cpu", precision="fp32")


@pytest.fixture()
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        arr = rng.integers(0, 255, (40 + 5 * i, 50, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def test_embeddings_are_unit_float32_in_input_order(encoder: Encoder, images: list[Path]) -> None:
    result = Embedder(encoder, EmbedConfig(batch_size=3)).embed_images(images)
    assert result.vectors.dtype == np.float32
    assert result.vectors.shape == (7, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.indices.tolist() == list(range(7))
    # Row i is image i: embedding one image alone gives the same row.
    alone = Embedder(encoder).embed_images([images[4]]).vectors[0]
    np.testing.assert_allclose(result.vectors[4], alone, atol=1e-5)


def test_batch_size_and_workers_do_not_change_results(encoder: Encoder, images: list[Path]) -> None:
    a = Embedder(encoder, EmbedConfig(batch_size=1, workers=1)).embed_images(images).vectors
    b = Embedder(encoder, EmbedConfig(batch_size=4, workers=3, prefetch=3)).embed_images(images)
    np.testing.assert_allclose(a, b.vectors, atol=1e-5)


def test_accepts_pil_images_and_arrays(encoder: Encoder, images: list[Path]) -> None:
    pil = Image.open(images[1]).convert("RGB")
    arr = np.asarray(pil)
    result = Embedder(encoder).embed_images([images[1], pil, arr])
    np.testing.assert_allclose(result.vectors[0], result.vectors[1], atol=1e-5)
    np.testing.assert_allclose(result.vectors[0], result.vectors[2], atol=1e-5)


def test_bad_image_raises_naming_the_file(
    encoder: Encoder, images: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].read_bytes()[:100])
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        Embedder(encoder).embed_images([*images[:3], bad, *images[3:]])


def test_skip_mode_records_failures_and_keeps_the_rest(
    encoder: Encoder, images: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    sources = [*images[:3], bad, *images[3:]]
    result = Embedder(encoder, EmbedConfig(batch_size=2, on_error="skip")).embed_images(sources)
    assert result.indices.tolist() == [0, 1, 2, 4, 5, 6, 7]
    assert [i for i, _ in result.failures] == [3]
    assert "broken.png" in result.failures[0][1]
    full = Embedder(encoder).embed_images(images).vectors
    np.testing.assert_allclose(result.vectors, full, atol=1e-5)


def test_texts(encoder: Encoder) -> None:
    texts = ["a red circle", "一只猫", "", "a red circle"]
    vectors = Embedder(encoder, EmbedConfig(batch_size=3)).embed_texts(texts)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    assert Embedder(encoder).embed_texts([]).shape == (0, encoder.dim)
    with pytest.raises(InputError, match="text #1"):
        Embedder(encoder).embed_texts(["ok", 3])  # type: ignore[list-item]


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        EmbedConfig(batch_size=0)
    with pytest.raises(ConfigError):
        EmbedConfig(on_error="ignore")  # type: ignore[arg-type]
