"""Which backends can run here: their optional packages, checked without importing them."""

from __future__ import annotations

import importlib.util

# backend → (packages it needs, the extra that installs them)
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "native": (("torch",), ""),
    "openclip": (("open_clip",), "openclip"),
    "hf": (("transformers",), "hf"),
    "onnx": (("onnxruntime",), "onnx"),
}


def backend_status(backend: str) -> str:
    """``available``, or what to install."""
    packages, extra = REQUIREMENTS[backend]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if not missing:
        return "available"
    return f"missing {', '.join(missing)}: pip install 'crossmodal[{extra}]'"
