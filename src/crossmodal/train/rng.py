"""Random number generator states as tensors and plain containers.

A checkpoint must load with ``torch.load(weights_only=True)``, which refuses anything but
tensors and primitive containers. torch states are already uint8 tensors and Python's
``random.getstate()`` is a tuple of ints; numpy's legacy state holds an array, turned into an
int64 tensor here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crossmodal.errors import CheckpointError

__all__ = ["capture_rng_state", "restore_rng_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The global generators' states: torch CPU and CUDA, numpy, Python ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global generators back to a :func:`capture_rng_state` result."""
    try:
        torch_state, numpy_state, python_state = state["torch"], state["numpy"], state["python"]
        if not isinstance(torch_state, Tensor):
            raise TypeError("torch state is not a tensor")
        keys = numpy_state["keys"].numpy().astype(np.uint32)
        np_state = (
            str(numpy_state["kind"]),
            keys,
            int(numpy_state["pos"]),
            int(numpy_state["has_gauss"]),
            float(numpy_state["cached_gaussian"]),
        )
        version, internal, gauss = python_state
        py_state = (int(version), tuple(int(x) for x in internal), gauss)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"malformed RNG state in checkpoint ({exc})") from exc
    torch.set_rng_state(torch_state)
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(np_state)
    random.setstate(py_state)
