"""Weights that ship inside the package, so that crossmodal works offline with no argument.

    bundled_weights("emoji-mini")   # Path to the packaged safetensors file, or None
    bundled_config("emoji-mini")    # the architecture (and tokenizer) that file records
    list_bundled()                  # names with packaged weights

``emoji-mini`` is our own model, trained from scratch on the bilingual emoji dataset by
``scripts/train_emoji_mini.sh`` (``crossmodal data emoji`` → tokenizer → ``crossmodal train``);
its safetensors file records the architecture and the trained tokenizer in its metadata.
A spec that names a bundled model without ``@weights`` (``native:emoji-mini``) loads these
weights everywhere, ``crossmodal train --model emoji-mini`` included (it fine-tunes them);
``crossmodal train --model emoji-mini --init random`` trains the same architecture and
tokenizer from fresh weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossmodal.models.config import CLIPConfig

__all__ = ["BUNDLED", "bundled_config", "bundled_weights", "list_bundled"]

# model name → file name in crossmodal/assets/
BUNDLED: dict[str, str] = {"emoji-mini": "emoji-mini.safetensors"}


def bundled_weights(name: str) -> Path | None:
    """The packaged weights file of ``name``, or None when ``name`` has none installed."""
    filename = BUNDLED.get(name)
    if filename is None:
        return None
    path = Path(str(resources.files("crossmodal").joinpath("assets", filename)))
    return path if path.is_file() else None


def bundled_config(name: str) -> CLIPConfig | None:
    """The architecture and tokenizer the packaged weights of ``name`` record, or None."""
    from crossmodal.models.weights import read_config

    path = bundled_weights(name)
    return read_config(path) if path is not None else None


def list_bundled() -> list[str]:
    """Names whose weights are installed with the package, sorted."""
    return sorted(name for name in BUNDLED if bundled_weights(name) is not None)
