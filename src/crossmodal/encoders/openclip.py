"""The ``openclip`` backend: any OpenCLIP model behind the :class:`Encoder` protocol.

Specs look like ``openclip:ViT-B-32/laion2b_s34b_b79k`` (a model name and a pretrained tag,
downloaded by OpenCLIP when online), ``openclip:ViT-B-32@/path/weights.safetensors`` (local
weights), ``openclip:ViT-B-32/openai@/path/ViT-B-32.pt`` (local weights with the tag's
preprocessing) or ``openclip:hf-hub:org/repo``. ``open_clip`` is imported only when a model is
loaded, so this module imports without the ``openclip`` extra.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from PIL import Image

from crossmodal.encoders.base import FloatArray
from crossmodal.encoders.hub import HUB_UNREACHABLE, hub_offline
from crossmodal.encoders.runtime import resolve_device, resolve_dtype, unit_rows
from crossmodal.encoders.spec import ModelSpec
from crossmodal.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    UnknownModelError,
    short_message,
)
from crossmodal.models.weights import refused_pickle
from crossmodal.text.base import TokenBatch

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["OpenClipEncoder", "OpenClipPreprocess", "OpenClipTokenizer", "load_openclip"]

log = logging.getLogger(__name__)

_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # OpenCLIP's names
_SCHEMAS = ("hf-hub:", "local-dir:")  # OpenCLIP model names that carry their own config
_NAMES_SHOWN = 30  # valid model names listed in an UnknownModelError
# torch weight dtype → OpenCLIP precision name ("pure": every weight cast, as native does)
_PRECISIONS: dict[torch.dtype, str] = {
    torch.float32: "fp32",
    torch.bfloat16: "pure_bf16",
    torch.float16: "pure_fp16",
}


class _Towers(Protocol):
    """The two methods of an OpenCLIP model that encoding needs."""

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...


class OpenClipPreprocess:
    """An :class:`~crossmodal.encoders.base.ImageTransform` around OpenCLIP's val transform.

    Args:
        transform: OpenCLIP's inference transform (PIL image → ``(3, H, W)`` float tensor).
        image_size: Side of the model input (the longer side if it is not square).
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor], image_size: int) -> None:
        self.transform = transform
        self.image_size = image_size

    def __call__(self, image: Image.Image) -> FloatArray:
        """``(3, S, S)`` float32, normalised as the model was trained."""
        tensor = self.transform(image)
        out: FloatArray = np.ascontiguousarray(tensor.numpy(), dtype=np.float32)
        return out

    def __repr__(self) -> str:
        """Short description with the input size."""
        return f"{type(self).__name__}(image_size={self.image_size})"


class OpenClipTokenizer:
    """Our :class:`~crossmodal.text.base.Tokenizer` around an OpenCLIP tokenizer.

    OpenCLIP tokenizers map a list of texts to a ``(B, context_length)`` tensor padded with
    ``pad_id`` (0 for CLIP's BPE). The attention mask marks everything up to the last id that is
    not padding, so a real token sharing the pad id (CLIP's ``!`` is id 0) inside a text still
    counts.

    Args:
        tokenizer: ``open_clip.get_tokenizer(name)``.
        context_length: Ids per text; the tokenizer's own when ``None``.
        pad_id: The padding id; read from the wrapped Hugging Face tokenizer when ``None``.
    """

    def __init__(
        self, tokenizer: Any, context_length: int | None = None, pad_id: int | None = None
    ) -> None:
        self.tokenizer = tokenizer
        length = context_length or getattr(tokenizer, "context_length", None)
        if not length:
            raise ConfigError(f"{type(tokenizer).__name__} has no context length; pass one")
        self.context_length: int = int(length)
        if pad_id is None:
            inner_pad = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", None)
            pad_id = int(inner_pad) if isinstance(inner_pad, int) else 0
        self.pad_id = pad_id

    def encode(self, text: str) -> list[int]:
        """Ids of one text with its start and end tokens, truncated, without padding."""
        batch = self([text])
        return [int(i) for i in batch.ids[0, : int(batch.attention_mask[0].sum())]]

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """``(B, context_length)`` int64 ids and their attention mask."""
        if isinstance(texts, str):
            texts = [texts]
        raw = self.tokenizer(list(texts), context_length=self.context_length)
        ids = np.asarray(raw.cpu().numpy() if isinstance(raw, torch.Tensor) else raw)
        ids = ids.astype(np.int64, copy=False).reshape(len(texts), -1)
        real = ids != self.pad_id
        # length = 1 + index of the last non-pad id (0 for an all-pad row)
        lengths = np.where(real.any(axis=1), ids.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)
        positions = np.arange(ids.shape[1], dtype=np.int64)
        mask = (positions[None, :] < lengths[:, None]).astype(np.int64)
        return TokenBatch(ids=ids, attention_mask=mask)

    def __repr__(self) -> str:
        """Short description with the wrapped tokenizer and context length."""
        return (
            f"{type(self).__name__}({type(self.tokenizer).__name__}, "
            f"context_length={self.context_length})"
        )


class OpenClipEncoder:
    """Runs an OpenCLIP model in inference mode; embeddings are unit float32 rows.

    Args:
        model: An OpenCLIP ``CLIP``/``CustomTextCLIP``, already on ``device`` in ``dtype``.
        preprocess: Its image transform.
        tokenizer: Its tokenizer.
        spec: The model spec it was loaded from.
        device: Where the model runs.
        dtype: The model's weight dtype; pixels are cast to it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: OpenClipPreprocess,
        tokenizer: OpenClipTokenizer,
        spec: str,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.model = model.eval()
        self._towers = cast(_Towers, self.model)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.dim = self._find_dim()

    def _find_dim(self) -> int:
        """The joint embedding dimension: the vision tower's, or measured on one text."""
        out_dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if isinstance(out_dim, int) and out_dim > 0:
            return out_dim
        return int(self.encode_tokens(self.tokenizer([""])).shape[1])

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """``(B, 3, S, S)`` preprocessed images → ``(B, D)`` unit float32."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, self.dtype)
        with torch.inference_mode():
            h = self._towers.encode_image(x, normalize=False)
        return unit_rows(h)

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        """A token batch → ``(B, D)`` unit float32."""
        ids = torch.from_numpy(np.ascontiguousarray(tokens.ids)).to(self.device)
        with torch.inference_mode():
            h = self._towers.encode_text(ids, normalize=False)
        return unit_rows(h)

    def __repr__(self) -> str:
        """Short description with the spec, dimension, device and dtype."""
        return (
            f"{type(self).__name__}({self.spec!r}, dim={self.dim}, device={self.device}, "
            f"dtype={self.dtype})"
        )


def _import_open_clip() -> ModuleType:
    try:
        return importlib.import_module("open_clip")
    except ImportError as exc:
        raise BackendUnavailableError("openclip", "openclip", "open_clip_torch") from exc


def _model_name(spec: ModelSpec) -> tuple[str, str | None]:
    """OpenCLIP's model name and tag; ``hf-hub:org/repo`` was split at '/' by the spec parser."""
    if spec.name.startswith(_SCHEMAS) and spec.tag:
        return f"{spec.name}/{spec.tag}", None
    return spec.name, spec.tag


def _names_hint(valid: Sequence[str], wrong: str) -> str:
    """``close matches; some of the N valid names`` for an error message."""
    close = difflib.get_close_matches(wrong, valid, n=5, cutoff=0.6)
    shown = ", ".join(valid[:_NAMES_SHOWN])
    more = f", ... ({len(valid)} in all)" if len(valid) > _NAMES_SHOWN else ""
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}valid names: {shown}{more}"


def _check_name(open_clip: ModuleType, name: str, tag: str | None) -> None:
    """Raise :class:`UnknownModelError` for a model name or tag OpenCLIP does not know."""
    if name.startswith(_SCHEMAS):
        return
    if open_clip.get_model_config(name.replace("/", "-")) is None:
        valid = sorted(open_clip.list_models())
        raise UnknownModelError(
            f"OpenCLIP has no model {name!r} (spec 'openclip:{name}'); " + _names_hint(valid, name)
        )
    if tag is not None:
        tags = list(open_clip.list_pretrained_tags_by_model(name))
        if not open_clip.is_pretrained_cfg(name, tag):
            listed = ", ".join(tags) if tags else "none: name local weights with '@path'"
            raise UnknownModelError(
                f"OpenCLIP has no pretrained tag {tag!r} for {name!r}; its tags: {listed}"
            )


def _weights_path(weights: str) -> Path:
    """A local weights file, or ``hf-hub:org/repo[/file]`` downloaded (or found in the cache)."""
    if weights.startswith("hf-hub:"):
        from crossmodal.encoders.hub import download_weights

        return download_weights(weights[len("hf-hub:") :])
    path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    return path


def _tag_preprocess(open_clip: ModuleType, name: str, tag: str) -> dict[str, Any]:
    """The image preprocessing a pretrained tag was trained with, as model kwargs."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    return {
        "image_mean": cfg.get("mean"),
        "image_std": cfg.get("std"),
        "image_interpolation": cfg.get("interpolation"),
        "image_resize_mode": cfg.get("resize_mode"),
    }


def cached_pretrained(open_clip: ModuleType, name: str, tag: str) -> str:
    """Offline: the Hugging Face cache's copy of a pretrained tag's weights.

    OpenCLIP would ask the Hub for them (five retries, then the cache); offline we read the
    cache ourselves, the safetensors file first, and say at once when it is not there.

    Raises:
        CheckpointError: the tag's weights are not in the cache.
    """
    hub = str(open_clip.get_pretrained_cfg(name, tag).get("hf_hub") or "").strip("/")
    parts = hub.split("/")
    if len(parts) >= 2:
        from huggingface_hub import try_to_load_from_cache

        repo = "/".join(parts[:2])
        files = ["/".join(parts[2:])] if len(parts) > 2 else list(_HUB_FILES)
        for filename in files:
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return found
    raise CheckpointError(f"openclip:{name}/{tag}: {HUB_UNREACHABLE} ('openclip:{name}@FILE')")


def _image_size(model: torch.nn.Module) -> int:
    """The input side from the model's preprocess config (the longer side if not square)."""
    cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(getattr(model, "visual", None), "image_size", 224))
    if isinstance(size, int):
        return size
    return int(max(size))


def load_openclip(
    spec: ModelSpec, device: str = "auto", precision: str = "auto"
) -> OpenClipEncoder:
    """Build the OpenCLIP encoder a spec names.

    ``spec.name`` is an OpenCLIP model name (or ``hf-hub:org/repo``), ``spec.tag`` a pretrained
    tag and ``spec.weights`` a local file (or ``hf-hub:org/repo/file``) of weights. With a tag
    and a file, the file is loaded with the tag's preprocessing. With neither, the model is
    randomly initialised (and a warning logged).

    Raises:
        BackendUnavailableError: ``open_clip`` is not installed.
        UnknownModelError: OpenCLIP knows no such model name or tag.
        CheckpointError: the weights are missing, cannot be downloaded or do not fit the model.
        ConfigError: a bad device or precision.
    """
    open_clip = _import_open_clip()
    name, tag = _model_name(spec)
    _check_name(open_clip, name, tag)
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision, torch_device)
    kwargs: dict[str, Any] = {}
    pretrained: str | None = tag
    if spec.weights is not None:
        if name.startswith(_SCHEMAS):
            raise ConfigError(
                f"spec {spec}: an OpenCLIP {name.split(':')[0]}: model brings its own weights; "
                "drop the '@weights'"
            )
        pretrained = str(_weights_path(spec.weights))
        if tag is not None:  # the tag still says how images were preprocessed
            kwargs.update(_tag_preprocess(open_clip, name, tag))
    elif tag is not None and not name.startswith(_SCHEMAS) and hub_offline():
        pretrained = cached_pretrained(open_clip, name, tag)
        kwargs.update(_tag_preprocess(open_clip, name, tag))
    elif tag is None and not name.startswith(_SCHEMAS):
        log.warning(
            "model %s has no pretrained tag or weights: using random initialisation; "
            "name them with '/tag' or '@path'",
            spec,
        )
    try:
        model, _, preprocess_val = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            device=torch_device,
            precision=_PRECISIONS[dtype],
            **kwargs,
        )
    except pickle.UnpicklingError as exc:  # weights_only refused it: nothing ran
        raise refused_pickle(pretrained or name, exc) from exc
    except (RuntimeError, ValueError, OSError, KeyError, EOFError) as exc:  # EOF: truncated
        where = pretrained or name
        raise CheckpointError(
            f"{where}: OpenCLIP could not build {name!r} with these weights "
            f"({short_message(exc)}); "
            "when offline, name a local file with '@path'"
        ) from exc
    try:
        tokenizer = OpenClipTokenizer(open_clip.get_tokenizer(name))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(
            f"OpenCLIP could not build the tokenizer of {name!r}: {short_message(exc)}"
        ) from exc
    preprocess = OpenClipPreprocess(preprocess_val, _image_size(model))
    return OpenClipEncoder(model, preprocess, tokenizer, str(spec), torch_device, dtype)
