"""Architecture configs: typed, frozen data read from one JSON file per model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from crossmodal.errors import ConfigError

TokenizerKind = Literal["clip-bpe", "trained"]


@dataclass(frozen=True)
class VisionConfig:
    """The ViT image tower h_i."""

    image_size: int = 224  # input side in pixels (square)
    patch_size: int = 32  # side of one patch; image_size must be a multiple of it
    width: int = 768  # transformer width (token dimension)
    layers: int = 12  # number of residual attention blocks
    heads: int = 12  # attention heads; width must be a multiple of it
    mlp_ratio: float = 4.0  # MLP hidden size as a multiple of width
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # pixel mean (RGB)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)  # pixel std (RGB)
    # how pixels become tokens: "patch", one patch_size-strided linear projection (ViT, CLIP);
    # "conv", log2(patch_size) stride-2 3x3 convolutions (Xiao et al. 2021, "Early
    # convolutions help transformers see better"): same tokens, better sample efficiency
    stem: Literal["patch", "conv"] = "patch"

    @property
    def grid_size(self) -> int:
        """Patches along one side."""
        return self.image_size // self.patch_size

    @property
    def stem_channels(self) -> tuple[int, ...]:
        """Output channels of each stride-2 convolution of the conv stem (ending at width)."""
        n = self.patch_size.bit_length() - 1
        return tuple(max(self.width >> (n - 1 - k), 8) for k in range(n))


@dataclass(frozen=True)
class TextConfig:
    """The causal Transformer text tower h_t."""

    context_length: int = 77  # tokens per text, start and end tokens included
    vocab_size: int = 49408  # size of the token embedding table
    width: int = 512  # transformer width
    layers: int = 12  # number of residual attention blocks
    heads: int = 8  # attention heads; width must be a multiple of it
    mlp_ratio: float = 4.0  # MLP hidden size as a multiple of width
    tokenizer: TokenizerKind = "clip-bpe"  # which tokenizer turns text into ids
    pool: Literal["argmax", "eos"] = "argmax"  # pool at the highest id (CLIP's end token)
    eos_token_id: int = 49407  # the end token, used when pool == "eos"
    # tokenizer.json text when tokenizer == "trained": it travels in the weights' metadata,
    # so one safetensors file carries the whole model
    tokenizer_json: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CLIPConfig:
    """A CLIP dual encoder: two towers projecting into one joint space of ``embed_dim``."""

    embed_dim: int = 512  # dimension of the joint embedding space
    vision: VisionConfig = field(default_factory=VisionConfig)  # image tower
    text: TextConfig = field(default_factory=TextConfig)  # text tower
    quick_gelu: bool = False  # OpenAI's x*sigmoid(1.702x) instead of exact GELU
    init_logit_scale: float = 2.6592600369262695  # log(1/0.07), CLIP's initial temperature
    init_logit_bias: float | None = None  # set for SigLIP-style sigmoid losses

    def validate(self) -> CLIPConfig:
        """Raise :class:`ConfigError` if the numbers do not fit together; return self."""
        v, t = self.vision, self.text
        if v.image_size % v.patch_size:
            raise ConfigError(
                f"vision.image_size={v.image_size} is not a multiple of "
                f"vision.patch_size={v.patch_size}"
            )
        if v.stem not in ("patch", "conv"):
            raise ConfigError(f"vision.stem={v.stem!r}: expected 'patch' or 'conv'")
        if v.stem == "conv" and (v.patch_size < 2 or v.patch_size & (v.patch_size - 1)):
            raise ConfigError(
                f"vision.stem='conv' needs a power-of-two patch_size (stride-2 convolutions), "
                f"not {v.patch_size}"
            )
        for tower, cfg in (("vision", v), ("text", t)):
            if cfg.width % cfg.heads:
                raise ConfigError(
                    f"{tower}.width={cfg.width} is not a multiple of {tower}.heads={cfg.heads}"
                )
            if cfg.layers < 1 or cfg.width < 1:
                raise ConfigError(f"{tower}.layers and {tower}.width must be positive")
        if t.tokenizer == "trained" and not t.tokenizer_json:
            raise ConfigError(
                "text.tokenizer='trained' needs text.tokenizer_json (the tokenizer.json text)"
            )
        if self.embed_dim < 1:
            raise ConfigError("embed_dim must be positive")
        return self


def _build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; valid fields are {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def config_from_dict(data: dict[str, Any], where: str = "config") -> CLIPConfig:
    """Build a validated :class:`CLIPConfig` from plain JSON data."""
    data = dict(data)
    vision = _build(VisionConfig, dict(data.pop("vision", {})), f"{where}.vision")
    text = _build(TextConfig, dict(data.pop("text", {})), f"{where}.text")
    data.pop("description", None)
    cfg: CLIPConfig = _build(CLIPConfig, {**data, "vision": vision, "text": text}, where)
    return cfg.validate()


def config_to_dict(config: CLIPConfig) -> dict[str, Any]:
    """Plain JSON-ready data for a config (inverse of :func:`config_from_dict`)."""
    from dataclasses import asdict

    return asdict(config)


def load_config_file(path: str | Path) -> CLIPConfig:
    """Read one architecture JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read model config ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config must be a JSON object")
    return config_from_dict(data, where=str(path))


def estimate_parameters(config: CLIPConfig) -> int:
    """Parameter count of the native model for ``config``, without building it."""
    v, t, d = config.vision, config.text, config.embed_dim

    def blocks(width: int, layers: int, ratio: float) -> int:
        hidden = int(width * ratio)
        attn = 3 * width * width + 3 * width + width * width + width
        mlp = width * hidden + hidden + hidden * width + width
        norms = 4 * width
        return (attn + mlp + norms) * layers

    if v.stem == "conv":
        channels = (3, *v.stem_channels)  # 3x3 convolutions with biases
        stem = sum(9 * a * b + b for a, b in zip(channels, channels[1:], strict=False))
    else:
        stem = 3 * v.patch_size**2 * v.width  # patch embedding (no bias)
    vision = (
        stem
        + v.width * (v.grid_size**2 + 2)  # positions and the class token
        + 4 * v.width  # ln_pre, ln_post
        + blocks(v.width, v.layers, v.mlp_ratio)
        + v.width * d  # projection W_i
    )
    text = (
        t.vocab_size * t.width  # token embedding
        + t.context_length * t.width  # positions
        + 2 * t.width  # ln_final
        + blocks(t.width, t.layers, t.mlp_ratio)
        + t.width * d  # projection W_t
    )
    return vision + text + 1 + (1 if config.init_logit_bias is not None else 0)


def with_trained_tokenizer(
    config: CLIPConfig, tokenizer_json: str, vocab_size: int, eos_token_id: int
) -> CLIPConfig:
    """``config`` with its text tower reading a trained tokenizer (pooled at the end token)."""
    from dataclasses import replace

    text = replace(
        config.text,
        tokenizer="trained",
        tokenizer_json=tokenizer_json,
        vocab_size=vocab_size,
        pool="eos",
        eos_token_id=eos_token_id,
    )
    return replace(config, text=text).validate()
