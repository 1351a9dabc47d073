"""Model specs: one string names a model and the backend that runs it.

    [backend:]name[/tag][@weights]

- ``native:ViT-B-32@/path/weights.safetensors``: our model; weights from a file, a Hugging Face
  CLIP directory, or ``hf-hub:org/repo`` (downloaded when online);
- ``native:/path/to/hf-clip-dir``: architecture read from the directory's ``config.json``;
- ``openclip:ViT-B-32/laion2b_s34b_b79k``: any OpenCLIP model name and pretrained tag
  (or ``@/path/file`` for local weights);
- ``hf:OFA-Sys/chinese-clip-vit-base-patch16`` or ``hf:/local/dir``: Hugging Face transformers
  (CLIP, Chinese-CLIP, SigLIP);
- ``onnx:/path/to/export-dir``: the two towers written by ``crossmodal export-onnx``.

With no ``backend:`` prefix the backend is ``native``.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossmodal.errors import ConfigError, UnknownModelError

BACKENDS = ("native", "openclip", "hf", "onnx")  # every backend a spec may name


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec."""

    backend: str  # one of BACKENDS
    name: str  # architecture, hub id or directory, as the backend understands it
    tag: str | None = None  # OpenCLIP pretrained tag
    weights: str | None = None  # a path or hf-hub:org/repo[/file] to load weights from

    def __str__(self) -> str:
        text = f"{self.backend}:{self.name}"
        if self.tag:
            text += f"/{self.tag}"
        if self.weights:
            text += f"@{self.weights}"
        return text


def parse_spec(spec: str) -> ModelSpec:
    """Parse ``[backend:]name[/tag][@weights]``; raise :class:`ConfigError` on a bad one."""
    text = spec.strip()
    if not text:
        raise ConfigError("empty model spec; e.g. 'native:ViT-B-32@weights.safetensors'")
    backend = "native"
    head, sep, rest = text.partition(":")
    if sep and head in BACKENDS:
        backend, text = head, rest
    elif sep and "/" not in head and "\\" not in head and len(head) > 1:
        raise UnknownModelError(
            f"unknown backend {head!r} in model spec {spec!r}; backends: {', '.join(BACKENDS)}"
        )
    weights: str | None = None
    if "@" in text:
        text, weights = text.split("@", 1)
        if not weights:
            raise ConfigError(f"model spec {spec!r} has '@' but no weights after it")
    tag: str | None = None
    if backend == "openclip" and "/" in text:
        text, tag = text.split("/", 1)
    if not text and not weights:
        raise ConfigError(f"model spec {spec!r} names no model")
    return ModelSpec(backend=backend, name=text, tag=tag, weights=weights)
