"""Saving a head: its weights and a JSON description, in one safetensors file, atomically.

The description (what rebuilds the module: its kind, sizes, classes, the encoder it reads)
goes in the safetensors metadata under one key per kind of head, so loading never runs code
from the file.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO

from torch import Tensor, nn

from crossmodal.atomic import atomic_write
from crossmodal.errors import CheckpointError

__all__ = ["load_head_file", "save_head_file"]


def save_head_file(
    module: nn.Module,
    path: str | Path,
    key: str,
    meta: dict[str, Any],
    *,
    half: Collection[str] = (),
) -> Path:
    """Write ``module``'s weights with ``meta`` (JSON) under metadata ``key``; return the path.

    Tensors named in ``half`` are stored as float16 (loading casts them back).
    """
    import torch
    from safetensors.torch import save

    state = {
        k: (v.to(torch.float16) if k in half else v).detach().contiguous()
        for k, v in module.state_dict().items()
    }
    data = save(state, metadata={key: json.dumps(meta)})

    def write(f: BinaryIO) -> None:
        f.write(data)

    return atomic_write(path, write)


def load_head_file(path: str | Path, key: str, what: str) -> tuple[dict[str, Tensor], Any]:
    """The weights and the ``key`` description of a file written by :func:`save_head_file`.

    Raises:
        CheckpointError: The file is missing, not safetensors, or holds no ``key`` (the
            message names the file and ``what`` it should have been).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[key])
        return load_file(str(path)), meta
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a crossmodal {what} ({exc})") from exc
