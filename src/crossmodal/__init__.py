"""crossmodal: one joint embedding space for text, images, video and audio.

The public API is imported lazily, so ``import crossmodal`` stays cheap (no torch at import):

    >>> import crossmodal
    >>> encoder = crossmodal.load_encoder("native:ViT-B-32@weights.safetensors")
    >>> vectors = crossmodal.Embedder(encoder).embed_texts(["a photo of a cat"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "CLIPConfig",
    "EmbedConfig",
    "Embedder",
    "Encoder",
    "ImageEmbeddings",
    "__version__",
    "create_model",
    "errors",
    "list_models",
    "load_encoder",
    "parse_spec",
]

_LAZY: dict[str, str] = {
    "DEFAULT_MODEL": "crossmodal.encoders",
    "Encoder": "crossmodal.encoders",
    "load_encoder": "crossmodal.encoders",
    "parse_spec": "crossmodal.encoders",
    "EmbedConfig": "crossmodal.encoders.embedder",
    "Embedder": "crossmodal.encoders.embedder",
    "ImageEmbeddings": "crossmodal.encoders.embedder",
    "CLIPConfig": "crossmodal.models.config",
    "create_model": "crossmodal.models.registry",
    "list_models": "crossmodal.models.registry",
    "errors": "crossmodal.errors",
}

if TYPE_CHECKING:
    from crossmodal import errors
    from crossmodal.encoders import DEFAULT_MODEL, Encoder, load_encoder, parse_spec
    from crossmodal.encoders.embedder import EmbedConfig, Embedder, ImageEmbeddings
    from crossmodal.models.config import CLIPConfig
    from crossmodal.models.registry import create_model, list_models


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crossmodal' has no attribute {name!r}")
    if name == "errors":
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
