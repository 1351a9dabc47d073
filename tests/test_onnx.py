"""The ONNX Runtime backend: export, parity with the native encoder, int8, errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from crossmodal.encoders import load_encoder
from crossmodal.encoders.base import Encoder
from crossmodal.encoders.native import NativeEncoder
from crossmodal.encoders.onnx import OnnxEncoder, read_manifest
from crossmodal.encoders.onnx_export import ExportResult, export_from_spec, export_onnx
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.models.config import config_from_dict
from crossmodal.models.registry import create_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the onnx extra: pip install 'crossmodal[onnx]'",
)

TEXTS = ["a photo of a cat", "two dogs playing in the snow", "一只猫的照片", "雪地里玩耍的两只狗"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[NativeEncoder, ExportResult]:
    torch.manual_seed(1234)
    model = create_model("test-tiny")
    result = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny", quantize="int8")
    native = NativeEncoder(model, "native:test-tiny", device="cpu", precision="fp32")
    return native, result


@pytest.fixture(scope="module")
def fp32(exported: tuple[NativeEncoder, ExportResult]) -> Encoder:
    return load_encoder(f"onnx:{exported[1].out_dir}", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def int8(exported: tuple[NativeEncoder, ExportResult]) -> Encoder:
    return load_encoder(f"onnx:{exported[1].out_dir}", device="cpu", precision="int8")


def _pixels(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_writes_towers_and_manifest(exported: tuple[NativeEncoder, ExportResult]) -> None:
    native, result = exported
    names = {p.name for p in result.out_dir.iterdir()}
    assert names == {
        "image.onnx",
        "text.onnx",
        "image.int8.onnx",
        "text.int8.onnx",
        "crossmodal.json",
    }
    assert result.files[-1].name == "crossmodal.json"
    assert not [p for p in result.out_dir.parent.iterdir() if p.name.endswith(".tmp")]
    manifest = read_manifest(result.out_dir)
    assert config_from_dict(manifest["config"]) == native.model.config
    assert manifest["tokenizer"] == "clip-bpe"
    assert manifest["source"] == "native:test-tiny"
    assert manifest["preprocess"]["image_size"] == 32
    assert set(manifest["files"]) == {"fp32", "int8"}
    assert result.exporter in ("torchscript", "dynamo")
    assert max(result.max_abs_diff.values()) <= 1e-4


def test_fp32_images_match_native(
    exported: tuple[NativeEncoder, ExportResult], fp32: Encoder
) -> None:
    native = exported[0]
    pixels = _pixels(3, 32)
    got, want = fp32.encode_pixels(pixels), native.encode_pixels(pixels)
    assert got.dtype == np.float32 and got.shape == (3, 32)
    assert np.abs(got - want).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_fp32_texts_match_native(
    exported: tuple[NativeEncoder, ExportResult], fp32: Encoder
) -> None:
    native = exported[0]
    tokens = fp32.tokenizer(TEXTS)
    np.testing.assert_array_equal(tokens.ids, native.tokenizer(TEXTS).ids)
    got, want = fp32.encode_tokens(tokens), native.encode_tokens(tokens)
    assert got.shape == (len(TEXTS), 32)
    assert np.abs(got - want).max() <= 1e-4
    # The causal mask survived export: different texts, different embeddings.
    assert np.abs(got[0] - got[1]).max() > 1e-3


def test_int8_is_close_to_fp32(fp32: Encoder, int8: Encoder) -> None:
    pixels = _pixels(6, 32, seed=3)
    assert _row_cosine(int8.encode_pixels(pixels), fp32.encode_pixels(pixels)).min() >= 0.98
    tokens = fp32.tokenizer(TEXTS)
    assert _row_cosine(int8.encode_tokens(tokens), fp32.encode_tokens(tokens)).min() >= 0.98


def test_auto_precision_picks_int8_when_exported(
    exported: tuple[NativeEncoder, ExportResult],
) -> None:
    encoder = load_encoder(f"onnx:{exported[1].out_dir}", device="cpu", precision="auto")
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.precision == "int8"


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch_axis(
    exported: tuple[NativeEncoder, ExportResult], fp32: Encoder, batch: int
) -> None:
    native = exported[0]
    pixels = _pixels(batch, 32, seed=batch)
    assert np.abs(fp32.encode_pixels(pixels) - native.encode_pixels(pixels)).max() <= 1e-4
    tokens = fp32.tokenizer((TEXTS * 2)[:batch])
    got = fp32.encode_tokens(tokens)
    assert got.shape == (batch, 32)
    assert np.abs(got - native.encode_tokens(tokens)).max() <= 1e-4


def test_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match="nowhere"):
        load_encoder(f"onnx:{missing}", device="cpu")


def test_directory_without_manifest_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "not-an-export"
    empty.mkdir()
    (empty / "image.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not-an-export.*crossmodal.json"):
        load_encoder(f"onnx:{empty}", device="cpu")


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.onnx", "sub/../../x.onnx"])
def test_a_manifest_cannot_name_files_outside_its_folder(
    exported: tuple[NativeEncoder, ExportResult], tmp_path: Path, name: str
) -> None:
    """Issue 25.7: an export folder's manifest once made us open /etc/passwd."""
    import json
    import shutil

    copy = tmp_path / "evil"
    shutil.copytree(exported[1].out_dir, copy)
    manifest = json.loads((copy / "crossmodal.json").read_text())
    manifest["files"]["fp32"]["image"] = name
    (copy / "crossmodal.json").write_text(json.dumps(manifest))
    (tmp_path / "outside.onnx").write_bytes((copy / "image.onnx").read_bytes())  # it exists
    with pytest.raises(CheckpointError, match=r"files\.fp32\.image .* outside the export folder"):
        load_encoder(f"onnx:{copy}", device="cpu", precision="fp32")


def test_unsupported_precision_is_a_config_error(
    exported: tuple[NativeEncoder, ExportResult],
) -> None:
    with pytest.raises(ConfigError, match="bf16"):
        load_encoder(f"onnx:{exported[1].out_dir}", device="cpu", precision="bf16")


def test_fp32_only_export_and_int8_request(tmp_path: Path) -> None:
    out = tmp_path / "fp32-only"
    result = export_from_spec("native:test-tiny", out, quantize="none")
    assert {p.name for p in result.files} == {"image.onnx", "text.onnx", "crossmodal.json"}
    auto = load_encoder(f"onnx:{out}", device="cpu")
    assert isinstance(auto, OnnxEncoder) and auto.precision == "fp32"
    with pytest.raises(CheckpointError, match="no int8"):
        load_encoder(f"onnx:{out}", device="cpu", precision="int8")


def test_reexport_replaces_stale_int8_files(
    exported: tuple[NativeEncoder, ExportResult], tmp_path: Path
) -> None:
    out = tmp_path / "again"
    shutil.copytree(exported[1].out_dir, out)
    export_onnx(exported[0].model, out, quantize="none")
    assert not (out / "image.int8.onnx").exists()
    assert "int8" not in json.loads((out / "crossmodal.json").read_text())["files"]


def test_only_native_specs_export(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="native"):
        export_from_spec("onnx:/somewhere", tmp_path / "x")


def test_broken_tower_file_is_a_checkpoint_error(
    exported: tuple[NativeEncoder, ExportResult], tmp_path: Path
) -> None:
    out = tmp_path / "broken"
    shutil.copytree(exported[1].out_dir, out)
    (out / "text.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="text.onnx"):
        load_encoder(f"onnx:{out}", device="cpu", precision="fp32")
