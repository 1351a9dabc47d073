"""The native backend: our own CLIP implementation behind the :class:`Encoder` protocol."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from crossmodal.data.images import ImagePreprocess, PreprocessConfig
from crossmodal.encoders.base import FloatArray
from crossmodal.encoders.runtime import resolve_device, resolve_dtype, unit_rows
from crossmodal.encoders.spec import ModelSpec
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.models.bundled import bundled_weights
from crossmodal.models.clip import CLIP
from crossmodal.models.config import CLIPConfig
from crossmodal.models.registry import get_model_config
from crossmodal.models.weights import load_checkpoint, load_weights
from crossmodal.text.base import TokenBatch, Tokenizer

log = logging.getLogger(__name__)


def build_tokenizer(config: CLIPConfig) -> Tokenizer:
    """The tokenizer a native config asks for."""
    if config.text.tokenizer == "clip-bpe":
        from crossmodal.text.clip_bpe import ClipBpeTokenizer

        tokenizer: Tokenizer = ClipBpeTokenizer(context_length=config.text.context_length)
        return tokenizer
    if config.text.tokenizer == "trained":
        from crossmodal.text.trained import TrainedTokenizer

        if config.text.tokenizer_json is None:
            raise ConfigError("text.tokenizer='trained' needs text.tokenizer_json")
        trained = TrainedTokenizer.from_str(
            config.text.tokenizer_json, context_length=config.text.context_length
        )
        if trained.vocab_size != config.text.vocab_size:
            raise ConfigError(
                f"the tokenizer has {trained.vocab_size} ids but "
                f"text.vocab_size={config.text.vocab_size}"
            )
        return trained
    raise ConfigError(f"unknown tokenizer {config.text.tokenizer!r}")


def build_preprocess(config: CLIPConfig) -> ImagePreprocess:
    """The image transform a native config asks for."""
    v = config.vision
    return ImagePreprocess(PreprocessConfig(image_size=v.image_size, mean=v.mean, std=v.std))


class NativeEncoder:
    """Runs a :class:`CLIP` in inference mode at the chosen device and precision."""

    def __init__(
        self,
        model: CLIP,
        spec: str,
        device: str = "auto",
        precision: str = "auto",
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        # Casting the weights beats autocast on CPU: autocast re-casts every weight per call.
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.dim = model.config.embed_dim
        self.preprocess = build_preprocess(model.config)
        self.tokenizer = tokenizer or build_tokenizer(model.config)

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """(B, 3, S, S) → (B, D) unit float32."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, self.dtype)
        with torch.inference_mode():
            h_i = self.model.encode_image(x, normalize=False)
        return unit_rows(h_i)

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        """Token ids → (B, D) unit float32."""
        ids = torch.from_numpy(tokens.ids).to(self.device)
        with torch.inference_mode():
            h_t = self.model.encode_text(ids, normalize=False)
        return unit_rows(h_t)


def resolve_weights(weights: str) -> Path:
    """A local weights path, or ``hf-hub:org/repo[/file]`` downloaded (or found in the cache)."""
    if weights.startswith("hf-hub:"):
        from crossmodal.encoders.hub import download_weights

        return download_weights(weights[len("hf-hub:") :])
    path = Path(os.path.expanduser(weights))
    if not path.exists():
        raise CheckpointError(f"{path}: weights not found")
    return path


def load_native(spec: ModelSpec, device: str = "auto", precision: str = "auto") -> NativeEncoder:
    """Build the native encoder a spec names, loading its weights when it names them."""
    config: CLIPConfig | None = None
    weights = spec.weights
    if spec.name and (os.sep in spec.name or Path(spec.name).is_dir()) and weights is None:
        weights = spec.name  # 'native:/path/to/hf-dir': architecture from config.json
    elif spec.name:
        config = get_model_config(spec.name)
        if weights is None and (packaged := bundled_weights(spec.name)) is not None:
            weights, config = str(packaged), None  # the file records its own architecture
    if weights is None:
        assert config is not None
        log.warning(
            "model %s has no weights in its spec: using random initialisation; "
            "name weights with '@path'",
            spec,
        )
        model = CLIP(config)
    else:
        config, sd = load_checkpoint(resolve_weights(weights), config)
        model = CLIP(config)
        load_weights(model, sd, source=weights)
    return NativeEncoder(model, str(spec), device=device, precision=precision)
