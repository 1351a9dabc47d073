"""``crossmodal models``: list registered architectures and backends."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the command."""
    p = sub.add_parser("models", help="list registered models and backends")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    from crossmodal.encoders import BACKENDS, DEFAULT_MODEL
    from crossmodal.encoders.availability import backend_status
    from crossmodal.models.bundled import bundled_config, list_bundled
    from crossmodal.models.config import estimate_parameters
    from crossmodal.models.registry import get_model_config, list_models

    bundled = set(list_bundled())
    rows = []
    for name in list_models():
        cfg = bundled_config(name) or get_model_config(name)  # a bundled name: its file's
        rows.append(
            {
                "name": name,
                "embed_dim": cfg.embed_dim,
                "image_size": cfg.vision.image_size,
                "patch_size": cfg.vision.patch_size,
                "vision": f"{cfg.vision.layers}x{cfg.vision.width}",
                "text": f"{cfg.text.layers}x{cfg.text.width}",
                "params_m": round(estimate_parameters(cfg) / 1e6, 1),
                "weights": "bundled" if name in bundled else "",
            }
        )
    backends = {b: backend_status(b) for b in BACKENDS}
    if args.json:
        print(json.dumps({"default": DEFAULT_MODEL, "models": rows, "backends": backends}))
        return 0
    print(f"default model: {DEFAULT_MODEL}\n")
    print(
        f"{'native model':<22}{'dim':>5}{'input':>7}{'patch':>6}{'vision':>10}{'text':>9}"
        f"{'params':>9}  weights"
    )
    for r in rows:
        print(
            f"{r['name']:<22}{r['embed_dim']:>5}{r['image_size']:>7}{r['patch_size']:>6}"
            f"{r['vision']:>10}{r['text']:>9}{r['params_m']:>8}M  {r['weights']}"
        )
    print("\nbackend   status")
    for name, status in backends.items():
        print(f"{name:<10}{status}")
    print(
        "\nspec: [backend:]name[/tag][@weights], e.g. native:ViT-B-32@weights.safetensors,"
        " openclip:ViT-B-32/laion2b_s34b_b79k, hf:org/model, onnx:./export-dir"
    )
    return 0
