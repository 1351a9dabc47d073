"""Encoders: every backend behind one protocol, chosen by a model spec string."""

from __future__ import annotations

import importlib
from typing import Protocol

from crossmodal.encoders.base import Encoder, ImageTransform, l2_normalize
from crossmodal.encoders.spec import BACKENDS, ModelSpec, parse_spec
from crossmodal.errors import UnknownModelError

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Encoder",
    "ImageTransform",
    "ModelSpec",
    "l2_normalize",
    "load_encoder",
    "parse_spec",
]

# The model every command uses when none is named: emoji-mini, trained by us on the bilingual
# emoji dataset (scripts/train_emoji_mini.sh), its weights shipped in crossmodal/assets/.
DEFAULT_MODEL = "native:emoji-mini"


class _Loader(Protocol):
    def __call__(self, spec: ModelSpec, device: str, precision: str) -> Encoder: ...


# backend name → "module:function"; modules import lazily so optional extras stay optional.
_LOADERS: dict[str, str] = {
    "native": "crossmodal.encoders.native:load_native",
    "openclip": "crossmodal.encoders.openclip:load_openclip",
    "hf": "crossmodal.encoders.hf:load_hf",
    "onnx": "crossmodal.encoders.onnx:load_onnx",
}


def load_encoder(
    spec: str = DEFAULT_MODEL, device: str = "auto", precision: str = "auto"
) -> Encoder:
    """The public entry point: an :class:`Encoder` for a model spec.

    ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``precision`` is ``auto``,
    ``fp32``, ``bf16`` or ``fp16`` (for ``onnx`` specs: ``fp32`` or ``int8`` is chosen by the
    exported file). See :mod:`crossmodal.encoders.spec` for the spec grammar.
    """
    parsed = parse_spec(spec)
    target = _LOADERS.get(parsed.backend)
    if target is None:
        raise UnknownModelError(
            f"unknown backend {parsed.backend!r}; backends: {', '.join(sorted(_LOADERS))}"
        )
    module_name, func_name = target.split(":")
    loader: _Loader = getattr(importlib.import_module(module_name), func_name)
    return loader(parsed, device=device, precision=precision)
