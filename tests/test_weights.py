"""Weight loading: oracle tests against OpenCLIP and Hugging Face, and refusals."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from crossmodal.encoders import load_encoder
from crossmodal.errors import CheckpointError, UnsafeCheckpointError
from crossmodal.models.clip import CLIP
from crossmodal.models.registry import create_model, get_model_config
from crossmodal.models.weights import (
    load_checkpoint,
    load_weights,
    native_to_openclip,
    read_state_dict,
    save_weights,
)
from tests.conftest import random_ids

ATOL = 1e-4  # the bar: max abs difference of fp32 embeddings


def _native_from(path: Path, name: str | None) -> CLIP:
    config, sd = load_checkpoint(path, get_model_config(name) if name else None)
    model = CLIP(config).eval()
    load_weights(model, sd, source=str(path))
    return model


@pytest.fixture(scope="module")
def openclip_b32(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(1)
    model = open_clip.create_model("ViT-B-32").eval()
    with torch.no_grad():  # random but non-trivial: OpenCLIP zero-inits some parts
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("openclip") / "vit-b-32.safetensors"
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return model, path


@pytest.mark.slow
def test_openclip_vit_b32_oracle(openclip_b32: tuple[torch.nn.Module, Path]) -> None:
    reference, path = openclip_b32
    native = _native_from(path, "ViT-B-32")
    pixels = torch.randn(2, 3, 224, 224)
    ids = random_ids(3, 77)
    with torch.no_grad():
        ref_i = reference.encode_image(pixels, normalize=True)
        ref_t = reference.encode_text(ids, normalize=True)
        got_i = native.encode_image(pixels)
        got_t = native.encode_text(ids)
    assert (ref_i - got_i).abs().max() <= ATOL
    assert (ref_t - got_t).abs().max() <= ATOL
    assert torch.allclose(reference.logit_scale, native.logit_scale)


@pytest.mark.slow
def test_openclip_training_checkpoint_with_module_prefix_loads(
    openclip_b32: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    reference, _ = openclip_b32
    ckpt = {
        "epoch": 3,
        "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
    }
    path = tmp_path / "epoch_3.pt"
    torch.save(ckpt, path)
    native = _native_from(path, "ViT-B-32")
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (
            reference.encode_image(pixels, normalize=True) - native.encode_image(pixels)
        ).abs().max() <= ATOL


@pytest.mark.slow
def test_hf_clipmodel_oracle(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    hf_config = transformers.CLIPConfig(
        text_config={
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=512,
    )
    reference = transformers.CLIPModel(hf_config).eval()
    reference.save_pretrained(tmp_path)  # config.json + model.safetensors
    # The architecture comes from config.json; the spec names only the directory.
    encoder = load_encoder(f"native:{tmp_path}", device="cpu", precision="fp32")
    native = encoder.model  # type: ignore[attr-defined]
    assert native.config.quick_gelu  # HF CLIP defaults to quick_gelu, as OpenAI trained
    pixels = torch.randn(2, 3, 224, 224)
    ids = random_ids(3, 77)
    with torch.no_grad():
        ref_i = _features(reference.get_image_features(pixel_values=pixels))
        ref_t = _features(reference.get_text_features(input_ids=ids))
        got_i = native.encode_image(pixels, normalize=False)
        got_t = native.encode_text(ids, normalize=False)
    norm = torch.nn.functional.normalize
    assert (norm(ref_i, dim=-1) - norm(got_i, dim=-1)).abs().max() <= ATOL
    assert (norm(ref_t, dim=-1) - norm(got_t, dim=-1)).abs().max() <= ATOL


def _features(out: object) -> torch.Tensor:
    """transformers 5 may return an output object instead of a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    assert isinstance(pooled, torch.Tensor)
    return pooled


def test_save_weights_round_trips_with_the_architecture(tmp_path: Path) -> None:
    model = create_model("test-tiny").eval()
    path = save_weights(model, tmp_path / "tiny.safetensors")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = _native_from(path, None)  # the config is read from the file's metadata
    assert loaded.config == model.config
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode_image(pixels), loaded.encode_image(pixels))


def test_openclip_layout_round_trips(tmp_path: Path) -> None:
    model = create_model("test-tiny").eval()
    path = tmp_path / "oc.safetensors"
    save_file(
        {k: v.contiguous() for k, v in native_to_openclip(model.state_dict()).items()}, str(path)
    )
    loaded = _native_from(path, "test-tiny")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_wrong_architecture_names_the_mismatch(tmp_path: Path) -> None:
    path = save_weights(create_model("test-tiny"), tmp_path / "tiny.safetensors")
    config, sd = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="shape mismatch|missing"):
        load_weights(create_model("ViT-B-32"), sd, source=str(path))


def test_malformed_safetensors_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="malformed safetensors") as info:
        read_state_dict(bad)
    assert str(bad) in str(info.value)
    truncated = tmp_path / "truncated.safetensors"
    good = save_weights(create_model("test-tiny"), tmp_path / "good.safetensors")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(truncated)


class _Payload:
    """A pickle that runs code when loaded: it would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's unpickler
def test_pickle_with_code_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match="refused") as info:
        read_state_dict(evil)
    assert str(evil) in str(info.value)
    assert not marker.exists()
    raw = tmp_path / "evil.bin"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        read_state_dict(raw)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_encoder(f"native:test-tiny@{evil}", device="cpu")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # making the archive
@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file:UserWarning")  # refused
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(scripted, str(path))
    with pytest.raises(UnsafeCheckpointError, match="openclip"):
        read_state_dict(path)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.safetensors")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(CheckpointError, match="unknown weights format"):
        read_state_dict(other)


def test_half_precision_file_loads_into_an_fp32_model(tmp_path: Path) -> None:
    model = create_model("test-tiny").eval()
    full = save_weights(model, tmp_path / "fp32.safetensors")
    half = save_weights(model, tmp_path / "bf16.safetensors", dtype=torch.bfloat16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = _native_from(half, None)
    assert loaded.dtype == torch.float32
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(
            model.encode_image(pixels), loaded.encode_image(pixels)
        )
    assert cos.min() > 0.999
