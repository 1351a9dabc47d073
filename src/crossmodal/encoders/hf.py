"""The ``hf`` backend: Hugging Face transformers dual encoders behind the :class:`Encoder` protocol.

Specs look like ``hf:openai/clip-vit-base-patch32`` (a hub id, downloaded when online),
``hf:/path/to/dir`` or ``hf:anything@/path/to/dir`` (a local ``save_pretrained`` directory).
The architecture is chosen from ``config.json``'s ``model_type``, never from the name:

- ``clip`` (``CLIPModel``): texts padded to the 77 positions CLIP was trained with;
- ``chinese_clip`` (``ChineseCLIPModel``): texts padded to 52 ids with an attention mask, as
  Chinese-CLIP was trained;
- ``siglip`` (``SiglipModel``, also the fixed-resolution SigLIP 2 checkpoints): texts padded
  to 64 ids and no attention mask, as SigLIP was trained.

The image processor and tokenizer come from the same directory or hub repository.
``transformers`` is imported only when a model is loaded.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from PIL import Image

from crossmodal.encoders.base import FloatArray
from crossmodal.encoders.hub import HUB_UNREACHABLE, hub_offline
from crossmodal.encoders.runtime import resolve_device, resolve_dtype, unit_rows
from crossmodal.encoders.spec import ModelSpec
from crossmodal.errors import BackendUnavailableError, CheckpointError, ConfigError, short_message
from crossmodal.models.weights import refused_pickle
from crossmodal.text.base import TokenBatch

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["SUPPORTED_MODEL_TYPES", "HfEncoder", "HfPreprocess", "HfTokenizer", "load_hf"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Family:
    """How one ``model_type`` is built, tokenized and run."""

    model_class: str  # attribute of the transformers package
    context_length: Callable[[Any], int]  # config → ids per text, as the model was trained
    dim: Callable[[Any], int]  # config → joint embedding dimension
    use_attention_mask: bool  # whether the text tower was trained with a padding mask


def _positions(config: Any) -> int:
    return int(config.text_config.max_position_embeddings)


_FAMILIES: dict[str, _Family] = {
    "clip": _Family(
        "CLIPModel",
        context_length=_positions,  # 77
        dim=lambda c: int(c.projection_dim),
        use_attention_mask=True,  # causal text tower: the mask changes nothing before EOS
    ),
    "chinese_clip": _Family(
        "ChineseCLIPModel",
        context_length=lambda c: min(52, _positions(c)),
        dim=lambda c: int(c.projection_dim),
        use_attention_mask=True,
    ),
    "siglip": _Family(
        "SiglipModel",
        context_length=_positions,  # 64
        dim=lambda c: int(c.vision_config.hidden_size),
        use_attention_mask=False,  # pools the last position over the pads, as trained
    ),
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_FAMILIES)
"""The ``model_type`` values of ``config.json`` that the ``hf`` backend loads."""

_UNSUPPORTED_HINTS: dict[str, str] = {
    "siglip2": (
        "NaFlex SigLIP 2 checkpoints take variable-size patch sequences, not square images; "
        "the fixed-resolution SigLIP 2 checkpoints (model_type 'siglip') load here"
    ),
}


class _Towers(Protocol):
    """The two methods of a transformers dual encoder that encoding needs."""

    def get_image_features(self, *, pixel_values: torch.Tensor) -> Any: ...

    def get_text_features(
        self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> Any: ...


class HfPreprocess:
    """An :class:`~crossmodal.encoders.base.ImageTransform` around a transformers image processor.

    Args:
        processor: ``AutoImageProcessor.from_pretrained(...)`` of the model.
        image_size: Side of the model input (the vision config's ``image_size``).
    """

    def __init__(self, processor: Any, image_size: int) -> None:
        self.processor = processor
        self.image_size = image_size

    def __call__(self, image: Image.Image) -> FloatArray:
        """``(3, S, S)`` float32, resized, cropped and normalised as the processor does."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = self.processor(images=image, return_tensors="np")["pixel_values"]
        out: FloatArray = np.ascontiguousarray(np.asarray(pixels)[0], dtype=np.float32)
        return out

    def __repr__(self) -> str:
        """Short description with the processor class and input size."""
        return f"{type(self).__name__}({type(self.processor).__name__}, {self.image_size})"


class HfTokenizer:
    """Our :class:`~crossmodal.text.base.Tokenizer` around a transformers tokenizer.

    Every batch is padded to ``context_length`` ids (``padding="max_length"``) and truncated
    to it, as the models were trained.

    Args:
        tokenizer: ``AutoTokenizer.from_pretrained(...)`` of the model.
        context_length: Ids per text.
        vocab_size: Rows of the text tower's token embedding (None: unchecked). An id at or
            past it means the folder's tokenizer is not the model's: a clear error instead of
            the embedding lookup's ``IndexError``.
        source: Where the model came from, for that error.
    """

    def __init__(
        self,
        tokenizer: Any,
        context_length: int,
        vocab_size: int | None = None,
        source: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.source = source

    def encode(self, text: str) -> list[int]:
        """Ids of one text with its special tokens, truncated, without padding."""
        ids = self.tokenizer(text, truncation=True, max_length=self.context_length)["input_ids"]
        out = [int(i) for i in ids]
        self._check(max(out, default=0), text)
        return out

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """``(B, context_length)`` int64 ids and the tokenizer's attention mask."""
        if isinstance(texts, str):
            texts = [texts]
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_attention_mask=True,
            return_tensors="np",
        )
        ids = np.asarray(out["input_ids"], dtype=np.int64).reshape(len(texts), -1)
        mask = np.asarray(out["attention_mask"], dtype=np.int64).reshape(ids.shape)
        if ids.size:
            row = int(np.argmax(ids.max(axis=1)))
            self._check(int(ids[row].max()), texts[row])
        return TokenBatch(ids=ids, attention_mask=mask)

    def _check(self, top: int, text: str) -> None:
        """Raise when an id does not fit the text tower's vocabulary."""
        if self.vocab_size is not None and top >= self.vocab_size:
            raise ConfigError(
                f"{self.source or 'hf model'}: the tokenizer gave id {top} for {text[:40]!r} "
                f"but the text tower has {self.vocab_size} token embeddings: the folder's "
                f"tokenizer ({type(self.tokenizer).__name__}, {len(self.tokenizer)} tokens) is "
                "not this model's; save the model's own tokenizer beside it"
            )

    def __repr__(self) -> str:
        """Short description with the tokenizer class and context length."""
        return (
            f"{type(self).__name__}({type(self.tokenizer).__name__}, "
            f"context_length={self.context_length})"
        )


class HfEncoder:
    """Runs a transformers CLIP, Chinese-CLIP or SigLIP model in inference mode.

    Args:
        model: The model, already on ``device`` in ``dtype``.
        preprocess: Its image transform.
        tokenizer: Its tokenizer.
        spec: The model spec it was loaded from.
        dim: The joint embedding dimension.
        device: Where the model runs.
        dtype: The model's weight dtype; pixels are cast to it.
        use_attention_mask: Whether to pass the attention mask to the text tower.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: HfPreprocess,
        tokenizer: HfTokenizer,
        spec: str,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
        use_attention_mask: bool = True,
    ) -> None:
        self.model = model.eval()
        self._towers = cast(_Towers, self.model)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.dim = dim
        self.device = device
        self.dtype = dtype
        self.use_attention_mask = use_attention_mask

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """``(B, 3, S, S)`` preprocessed images → ``(B, D)`` unit float32."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self._towers.get_image_features(pixel_values=x)
        return unit_rows(_features(out))

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        """A token batch → ``(B, D)`` unit float32."""
        ids = torch.from_numpy(np.ascontiguousarray(tokens.ids)).to(self.device)
        mask: torch.Tensor | None = None
        if self.use_attention_mask:
            mask = torch.from_numpy(np.ascontiguousarray(tokens.attention_mask)).to(self.device)
        with torch.inference_mode():
            out = self._towers.get_text_features(input_ids=ids, attention_mask=mask)
        return unit_rows(_features(out))

    def __repr__(self) -> str:
        """Short description with the spec, dimension, device and dtype."""
        return (
            f"{type(self).__name__}({self.spec!r}, dim={self.dim}, device={self.device}, "
            f"dtype={self.dtype})"
        )


def _features(out: Any) -> torch.Tensor:
    """The projected embeddings from ``get_*_features``.

    transformers 4.x returns the tensor; 5.x returns a ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` holds the projected embeddings.
    """
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
        return out[1]
    raise TypeError(f"unexpected output of get_*_features: {type(out).__name__}")


def _import_transformers() -> ModuleType:
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise BackendUnavailableError("hf", "hf", "transformers") from exc


def _source(spec: ModelSpec) -> str:
    """The hub id or local directory to load from (``@weights`` wins over the name)."""
    source = spec.weights or spec.name
    if not source:
        raise ConfigError(f"spec {spec} names no Hugging Face model or directory")
    if source.startswith("hf-hub:"):
        source = source[len("hf-hub:") :]
    local = Path(os.path.expanduser(source))
    if local.exists():
        if not local.is_dir():
            raise CheckpointError(
                f"{local}: the hf backend loads a directory written by save_pretrained, not a file"
            )
        return str(local)
    if spec.weights is not None or source.startswith((".", "/", "~")):
        raise CheckpointError(f"{local}: directory not found")
    return source  # a hub id


def _family(model_type: str, source: str) -> _Family:
    family = _FAMILIES.get(model_type)
    if family is None:
        hint = _UNSUPPORTED_HINTS.get(model_type)
        raise ConfigError(
            f"{source}: model_type {model_type!r} is not supported by the hf backend"
            + (f" ({hint})" if hint else "")
            + f"; supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return family


def load_hf(spec: ModelSpec, device: str = "auto", precision: str = "auto") -> HfEncoder:
    """Build the Hugging Face encoder a spec names.

    Weights load through ``from_pretrained`` with its defaults: safetensors preferred, pickles
    only through its restricted loader. With ``HF_HUB_OFFLINE`` set, only local files and the
    cache are used.

    Raises:
        BackendUnavailableError: ``transformers`` is not installed.
        ConfigError: the config's ``model_type`` is not supported, or a bad device/precision.
        CheckpointError: the directory, config, weights or processor files cannot be read.
    """
    transformers = _import_transformers()
    source = _source(spec)
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision, torch_device)
    local_only = not Path(source).is_dir() and hub_offline()
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local_only)
    except OSError as exc:
        if local_only:
            raise CheckpointError(f"{source}: {HUB_UNREACHABLE} (hf:DIR)") from exc
        raise CheckpointError(
            f"{source}: cannot read a Hugging Face config ({short_message(exc)})"
        ) from exc
    except (ValueError, KeyError) as exc:  # a model_type this transformers does not know
        raise ConfigError(
            f"{source}: unrecognised Hugging Face config ({short_message(exc)}); "
            f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        ) from exc
    model_type = str(getattr(config, "model_type", ""))
    family = _family(model_type, source)
    model_class = getattr(transformers, family.model_class)
    try:
        model = model_class.from_pretrained(
            source, config=config, dtype=dtype, local_files_only=local_only
        )
        processor = transformers.AutoImageProcessor.from_pretrained(
            source, local_files_only=local_only
        )
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
            source, local_files_only=local_only
        )
    except pickle.UnpicklingError as exc:  # weights_only refused it: nothing ran
        raise refused_pickle(source, exc) from exc
    except (OSError, ValueError, EOFError, RuntimeError) as exc:  # EOF, Runtime: truncated
        raise CheckpointError(
            f"{source}: cannot load the {model_type} model ({short_message(exc)})"
        ) from exc
    model = model.to(torch_device).eval()
    vocab = getattr(config.text_config, "vocab_size", None)
    tokenizer = HfTokenizer(
        hf_tokenizer,
        family.context_length(config),
        vocab_size=int(vocab) if vocab else None,
        source=source,
    )
    preprocess = HfPreprocess(processor, int(config.vision_config.image_size))
    return HfEncoder(
        model,
        preprocess,
        tokenizer,
        str(spec),
        dim=family.dim(config),
        device=torch_device,
        dtype=dtype,
        use_attention_mask=family.use_attention_mask,
    )
