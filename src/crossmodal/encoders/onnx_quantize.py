"""Dynamic int8 quantisation of exported ONNX towers (the fast CPU path).

Measured on ViT-B-32 on a 2-core AVX2 CPU: signed int8 weights with one scale per tensor, on
MatMul nodes only, ran fastest (QUInt8, per-channel and quantising Gemm/Conv too were slower
and no more accurate); the attention products between activations stay fp32.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from crossmodal.errors import BackendUnavailableError

INT8_OP_TYPES = ("MatMul",)  # node types quantize_dynamic turns into int8 kernels
INT8_WEIGHT_TYPE = "QInt8"  # signed int8 weights (U8S8 kernels): fastest here, see above
INT8_PER_CHANNEL = False  # per-tensor scales: per-channel bought no accuracy and cost speed


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights (see the module docstring)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # onnxruntime.quantization imports the onnx package
        raise BackendUnavailableError("onnx", "onnx", exc.name or "onnx") from None
    root = logging.getLogger()  # the quantizer logs every node at INFO on the root logger
    quiet = _DropQuantizerInfo()
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                src,
                dst,
                op_types_to_quantize=list(INT8_OP_TYPES),
                per_channel=INT8_PER_CHANNEL,
                weight_type=getattr(QuantType, INT8_WEIGHT_TYPE),
            )
    finally:
        root.removeFilter(quiet)


class _DropQuantizerInfo(logging.Filter):
    """Drops onnxruntime.quantization's per-node INFO records and its advice to pre-process
    (symbolic shape inference + graph optimisation before quantising measured no faster here);
    keeps its other warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the quantizer's INFO/DEBUG records and its pre-processing advice."""
        path = record.pathname.replace("\\", "/")
        if "onnxruntime/quantization" not in path:
            return True
        advice = "pre-processing before quantization" in record.getMessage()
        return record.levelno >= logging.WARNING and not advice
