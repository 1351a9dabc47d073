"""``crossmodal export-onnx``: write both towers of a native model as ONNX (fp32 and int8)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the command."""
    from crossmodal.encoders import DEFAULT_MODEL

    p = sub.add_parser(
        "export-onnx",
        help="export a native model's towers to ONNX for the fast CPU path",
        description="Writes image.onnx and text.onnx (and int8 versions with --int8) plus a "
        "crossmodal.json manifest; load the result with --model onnx:DIR.",
    )
    p.add_argument("-m", "--model", default=DEFAULT_MODEL, help="a native model spec")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--int8", action="store_true", help="also write int8 dynamic-quantised towers")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export."""
    from crossmodal.encoders.onnx_export import export_from_spec

    result = export_from_spec(args.model, args.out, quantize="int8" if args.int8 else "none")
    print(f"exported {args.model} -> {args.out}")
    for path in result.files:
        print(f"  {path}")
    return 0
