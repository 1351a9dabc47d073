"""The ``openclip:`` and ``hf:`` backends against their libraries' own models, offline.

Every model here is tiny and randomly initialised, saved to a temporary directory and loaded
back through :func:`crossmodal.encoders.load_encoder`; its embeddings must equal the library
model's own normalised features.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from crossmodal.encoders import Encoder, load_encoder
from crossmodal.errors import (
    CheckpointError,
    ConfigError,
    UnknownModelError,
    UnsafeCheckpointError,
)

ATOL = 1e-5
TEXTS = ["a photo of a cat", "Two dogs!! playing in the snow, 2 balls", ""]

TINY_OPENCLIP = "crossmodal-test-tiny-openclip"
TINY_OPENCLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
TINY_TOWER = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
TINY_VISION = {**TINY_TOWER, "image_size": 32, "patch_size": 8}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random but non-trivial weights: libraries zero-initialise some parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def _random_image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _random_pixels(batch: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, side, side)).astype(np.float32)


def _max_diff(got: np.ndarray, want: torch.Tensor) -> float:
    return float(np.abs(got - want.detach().float().numpy()).max())


def _check_encoder(encoder: Encoder, dim: int, side: int, context_length: int) -> None:
    """Protocol, shapes and dtypes shared by every backend."""
    assert isinstance(encoder, Encoder)
    assert encoder.dim == dim
    assert encoder.preprocess.image_size == side
    pixels = encoder.preprocess(_random_image())
    assert pixels.shape == (3, side, side) and pixels.dtype == np.float32
    tokens = encoder.tokenizer(TEXTS)
    assert tokens.ids.shape == (len(TEXTS), context_length) and tokens.ids.dtype == np.int64
    assert tokens.attention_mask.shape == tokens.ids.shape
    assert tokens.attention_mask.dtype == np.int64
    for row, text in enumerate(TEXTS):
        ids = encoder.tokenizer.encode(text)
        assert int(tokens.attention_mask[row].sum()) == len(ids)
        assert tokens.ids[row, : len(ids)].tolist() == ids
    emb = encoder.encode_tokens(tokens)
    assert emb.shape == (len(TEXTS), dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------- OpenCLIP


@pytest.fixture(scope="module")
def openclip_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """A tiny OpenCLIP ViT registered under TINY_OPENCLIP, its model and safetensors file."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("openclip")
    config_path = root / f"{TINY_OPENCLIP}.json"
    config_path.write_text(json.dumps(TINY_OPENCLIP_CONFIG))
    open_clip.add_model_config(config_path)
    torch.manual_seed(1)
    model = open_clip.create_model(TINY_OPENCLIP).eval()
    _perturb(model, seed=1)
    path = root / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return open_clip, model, path


def test_openclip_matches_open_clip(openclip_tiny: tuple[Any, Any, Path]) -> None:
    open_clip, reference, path = openclip_tiny
    encoder = load_encoder(f"openclip:{TINY_OPENCLIP}@{path}", device="cpu", precision="fp32")
    _check_encoder(encoder, dim=32, side=32, context_length=77)

    tokens = encoder.tokenizer(TEXTS)
    want_ids = open_clip.get_tokenizer(TINY_OPENCLIP)(TEXTS)
    assert np.array_equal(tokens.ids, want_ids.numpy())
    pixels = _random_pixels(2, 32)
    with torch.no_grad():
        want_i = reference.encode_image(torch.from_numpy(pixels), normalize=True)
        want_t = reference.encode_text(want_ids, normalize=True)
    assert _max_diff(encoder.encode_pixels(pixels), want_i) <= ATOL
    assert _max_diff(encoder.encode_tokens(tokens), want_t) <= ATOL

    _, _, val_transform = open_clip.create_model_and_transforms(TINY_OPENCLIP)
    image = _random_image(seed=3)
    assert np.array_equal(encoder.preprocess(image), val_transform(image).numpy())


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_bf16_close_to_fp32(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "openclip":
        path = request.getfixturevalue("openclip_tiny")[2]
        spec = f"openclip:{TINY_OPENCLIP}@{path}"
    else:
        spec = f"hf:{request.getfixturevalue('hf_clip')[1]}"
    fp32 = load_encoder(spec, device="cpu", precision="fp32")
    bf16 = load_encoder(spec, device="cpu", precision="bf16")
    pixels = _random_pixels(2, 32, seed=7)
    tokens = fp32.tokenizer(TEXTS)
    for got, want in [
        (bf16.encode_pixels(pixels), fp32.encode_pixels(pixels)),
        (bf16.encode_tokens(tokens), fp32.encode_tokens(tokens)),
    ]:
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert np.abs(got - want).max() < 0.05


def test_openclip_tokenizer_mask_keeps_inner_pad_ids(
    openclip_tiny: tuple[Any, Any, Path],
) -> None:
    from crossmodal.encoders.openclip import OpenClipTokenizer

    def fake(texts: list[str], context_length: int) -> torch.Tensor:
        return torch.tensor([[49406, 0, 5, 0, 49407, 0, 0, 0]] * len(texts))

    tokenizer = OpenClipTokenizer(fake, context_length=8)
    batch = tokenizer(["x", "y"])
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]] * 2
    assert tokenizer.encode("x") == [49406, 0, 5, 0, 49407]


def test_openclip_unknown_model() -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(UnknownModelError, match="valid names") as info:
        load_encoder("openclip:NoSuchModel", device="cpu")
    assert "NoSuchModel" in str(info.value)
    with pytest.raises(UnknownModelError, match="did you mean ViT-B-32"):
        load_encoder("openclip:ViT-B-32x", device="cpu")


def test_openclip_unknown_tag(openclip_tiny: tuple[Any, Any, Path]) -> None:
    with pytest.raises(UnknownModelError, match="no pretrained tag 'nosuchtag'"):
        load_encoder(f"openclip:{TINY_OPENCLIP}/nosuchtag", device="cpu")


def test_openclip_bad_weights(openclip_tiny: tuple[Any, Any, Path], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(f"openclip:{TINY_OPENCLIP}@{tmp_path / 'missing.safetensors'}")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"logit_scale": torch.zeros(())}, str(wrong))
    with pytest.raises(CheckpointError, match="wrong.safetensors"):
        load_encoder(f"openclip:{TINY_OPENCLIP}@{wrong}", device="cpu")


class _Payload:
    """A pickle that would create a marker file when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_and_truncated(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """(a pickle with a code payload, a torch file cut in half, the payload's marker)."""
    marker = tmp_path / "pwned"
    (tmp_path / "evil").mkdir()
    (tmp_path / "cut").mkdir()
    evil, cut = tmp_path / "evil" / name, tmp_path / "cut" / name
    torch.save({"w": torch.zeros(4), "x": _Payload(marker)}, evil)
    torch.save({"w": torch.zeros(4096)}, cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return evil, cut, marker


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_openclip_evil_or_truncated_pickles_are_one_line_errors(
    openclip_tiny: tuple[Any, Any, Path], tmp_path: Path
) -> None:
    """Issue 25.4: the same refusal as the native path, not a raw UnpicklingError."""
    evil, cut, marker = _evil_and_truncated(tmp_path, "weights.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused to load.*could run code"):
        load_encoder(f"openclip:{TINY_OPENCLIP}@{evil}", device="cpu")
    with pytest.raises(CheckpointError, match="cut/weights.pt"):
        load_encoder(f"openclip:{TINY_OPENCLIP}@{cut}", device="cpu")
    assert not marker.exists()


# ------------------------------------------------------------------------------------- HF


def _clip_bpe_gz() -> Path:
    """OpenAI's CLIP merges file: crossmodal's copy, else OpenCLIP's."""
    ours = importlib.resources.files("crossmodal.text").joinpath("bpe_simple_vocab_16e6.txt.gz")
    if ours.is_file():
        return Path(str(ours))
    open_clip = pytest.importorskip("open_clip")
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte symbols in vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def _clip_hf_tokenizer(transformers: Any) -> Any:
    """A transformers CLIPTokenizer built offline from the CLIP merges file."""
    lines = gzip.decompress(_clip_bpe_gz().read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = _bytes_to_unicode()
    vocab = [
        *symbols,
        *(s + "</w>" for s in symbols),
        *("".join(m) for m in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    return transformers.CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)


def _save_hf(root: Path, model: Any, processor: Any, tokenizer: Any) -> Path:
    model.save_pretrained(root)
    processor.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def transformers() -> Any:
    """transformers, quiet about the tiny configs' token ids."""
    module = pytest.importorskip("transformers")
    module.logging.set_verbosity_error()
    return module


@pytest.fixture(scope="module")
def hf_clip(transformers: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    torch.manual_seed(2)
    config = transformers.CLIPConfig(
        text_config={**TINY_TOWER, "max_position_embeddings": 77},
        vision_config=TINY_VISION,
        projection_dim=32,
    )
    model = transformers.CLIPModel(config).eval()
    _perturb(model, seed=2)
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    root = tmp_path_factory.mktemp("hf-clip")
    return model, _save_hf(root, model, processor, _clip_hf_tokenizer(transformers))


@pytest.fixture(scope="module")
def hf_chinese_clip(
    transformers: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path]:
    root = tmp_path_factory.mktemp("hf-chinese-clip")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"一张猫狗的照片在雪地里玩两只球"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer.from_pretrained(root)
    torch.manual_seed(3)
    config = transformers.ChineseCLIPConfig(
        text_config={**TINY_TOWER, "vocab_size": len(words), "max_position_embeddings": 64},
        vision_config=TINY_VISION,
        projection_dim=32,
    )
    model = transformers.ChineseCLIPModel(config).eval()
    _perturb(model, seed=3)
    processor = transformers.ChineseCLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return model, _save_hf(root, model, processor, tokenizer)


@pytest.fixture(scope="module")
def hf_siglip(transformers: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    spm = pytest.importorskip("sentencepiece")
    root = tmp_path_factory.mktemp("hf-siglip")
    sentences = [t.lower() for t in TEXTS if t] + ["the quick brown fox", "hello world"]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 10),
        model_prefix=str(root / "spiece"),
        vocab_size=48,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    tokenizer = transformers.SiglipTokenizer(vocab_file=str(root / "spiece.model"))
    torch.manual_seed(4)
    config = transformers.SiglipConfig(
        text_config={
            **TINY_TOWER,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 64,
            "pad_token_id": 1,
            "bos_token_id": None,
            "eos_token_id": 1,
        },
        vision_config=TINY_VISION,
    )
    model = transformers.SiglipModel(config).eval()
    _perturb(model, seed=4)
    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    return model, _save_hf(root, model, processor, tokenizer)


def _check_hf(
    model: Any,
    root: Path,
    context_length: int,
    reference_mask: bool,
    dim: int = 32,
) -> None:
    encoder = load_encoder(f"hf:{root}", device="cpu", precision="fp32")
    _check_encoder(encoder, dim=dim, side=32, context_length=context_length)

    image = _random_image(seed=5)
    processor = encoder.preprocess.processor  # type: ignore[attr-defined]
    want_pixels = processor(images=image, return_tensors="np")["pixel_values"][0]
    assert np.allclose(encoder.preprocess(image), want_pixels, atol=1e-6)

    tokens = encoder.tokenizer(TEXTS)
    pixels = _random_pixels(len(TEXTS), 32)
    inputs = {"input_ids": torch.from_numpy(tokens.ids), "pixel_values": torch.from_numpy(pixels)}
    if reference_mask:
        inputs["attention_mask"] = torch.from_numpy(tokens.attention_mask)
    with torch.no_grad():
        out = model(**inputs)
    assert _max_diff(encoder.encode_pixels(pixels), out.image_embeds) <= ATOL
    assert _max_diff(encoder.encode_tokens(tokens), out.text_embeds) <= ATOL


def test_hf_clip_matches_transformers(
    hf_clip: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, root = hf_clip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _check_hf(model, root, context_length=77, reference_mask=True)


def test_hf_clip_tokenizer_is_clips(hf_clip: tuple[Any, Path]) -> None:
    encoder = load_encoder(f"hf:ignored@{hf_clip[1]}", device="cpu", precision="fp32")
    ids = encoder.tokenizer.encode("A photo of a cat!")
    assert ids == [49406, 320, 1125, 539, 320, 2368, 256, 49407]
    text = encoder.tokenizer.tokenizer.decode(ids, skip_special_tokens=True)  # type: ignore[attr-defined]
    assert text == "a photo of a cat !"
    batch = encoder.tokenizer(["x" * 500])
    assert batch.ids.shape == (1, 77) and batch.ids[0, -1] == 49407


def test_hf_chinese_clip_matches_transformers(hf_chinese_clip: tuple[Any, Path]) -> None:
    model, root = hf_chinese_clip
    _check_hf(model, root, context_length=52, reference_mask=True)
    encoder = load_encoder(f"hf:{root}", device="cpu", precision="fp32")
    ids = encoder.tokenizer.encode("一张猫的照片")
    assert ids[0] == 2 and ids[-1] == 3 and 1 not in ids  # [CLS] … [SEP], no [UNK]


def test_hf_siglip_matches_transformers(hf_siglip: tuple[Any, Path]) -> None:
    model, root = hf_siglip
    # SigLIP has no projection: the joint space is the towers' width
    _check_hf(model, root, context_length=64, reference_mask=False, dim=64)


@pytest.mark.parametrize(
    ("model_type", "match"), [("bert", "supported model types: clip"), ("siglip2", "NaFlex")]
)
def test_hf_unsupported_model_type(
    transformers: Any, tmp_path: Path, model_type: str, match: str
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(ConfigError, match=match) as info:
        load_encoder(f"hf:{tmp_path}", device="cpu")
    for supported in ("clip", "chinese_clip", "siglip"):
        assert supported in str(info.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_hf_evil_or_truncated_pickles_are_one_line_errors(
    hf_clip: tuple[Any, Path], tmp_path: Path
) -> None:
    import shutil

    evil, cut, marker = _evil_and_truncated(tmp_path, "pytorch_model.bin")
    for folder in (evil.parent, cut.parent):
        for item in hf_clip[1].iterdir():
            if item.suffix != ".safetensors":  # the weights are the pickle only
                shutil.copy(item, folder / item.name)
    with pytest.raises(UnsafeCheckpointError, match="refused to load.*could run code"):
        load_encoder(f"hf:{evil.parent}", device="cpu")
    with pytest.raises(CheckpointError, match="cut"):
        load_encoder(f"hf:{cut.parent}", device="cpu")
    assert not marker.exists()


def test_hf_tokenizer_not_the_models_is_a_one_line_error(transformers: Any, tmp_path: Path) -> None:
    """CLIP's tokenizer saved beside a text tower of 100 tokens: before, the embedding lookup's
    ``IndexError``; now an error that says the folder's tokenizer is not the model's."""
    config = transformers.CLIPConfig(
        text_config={**TINY_TOWER, "vocab_size": 100, "max_position_embeddings": 77},
        vision_config=TINY_VISION,
        projection_dim=32,
    )
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    model = transformers.CLIPModel(config).eval()
    root = _save_hf(tmp_path, model, processor, _clip_hf_tokenizer(transformers))
    encoder = load_encoder(f"hf:{root}", device="cpu", precision="fp32")
    for tokenize in (encoder.tokenizer, lambda texts: encoder.tokenizer.encode(texts[0])):
        with pytest.raises(ConfigError, match="100 token embeddings.*is not this model's"):
            tokenize(["a cat"])


def test_hf_missing_directory(transformers: Any, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(f"hf:{tmp_path / 'nothing-here'}", device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(f"hf:x@{os.path.join(str(tmp_path), 'nothing-here')}", device="cpu")


def test_hf_features_accepts_tensor_or_output() -> None:
    from crossmodal.encoders.hf import _features

    h = torch.ones(2, 4)
    assert _features(h) is h
    transformers = pytest.importorskip("transformers")
    output = transformers.modeling_outputs.BaseModelOutputWithPooling(pooler_output=h)
    assert _features(output) is h
