"""The ONNX Runtime backend: towers exported by :mod:`crossmodal.encoders.onnx_export`.

Spec ``onnx:DIR`` (or ``onnx:@DIR``) names an export directory holding ``crossmodal.json``.
Precision picks the files:

- ``fp32``: ``image.onnx`` / ``text.onnx``, the exact towers (max abs diff ~1e-7 to PyTorch);
- ``int8``: ``image.int8.onnx`` / ``text.int8.onnx``, dynamically quantised; an error when the
  directory was exported without them;
- ``auto``: int8 when the export has it (the fastest CPU path, cosine ≥ 0.99 to fp32 on the
  export's check batch), else fp32.

Any other precision (``bf16``, ``fp16``) is a :class:`~crossmodal.errors.ConfigError`.
Sessions run on the CPU execution provider, with CUDA first when the device asks for a GPU
(``auto``, ``cuda``, ``cuda:N``) and ``onnxruntime-gpu`` provides it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.encoders.base import FloatArray, ImageTransform, l2_normalize
from crossmodal.encoders.spec import ModelSpec
from crossmodal.errors import BackendUnavailableError, CheckpointError, ConfigError, InputError
from crossmodal.models.config import CLIPConfig, config_from_dict
from crossmodal.text.base import TokenBatch, Tokenizer

log = logging.getLogger(__name__)

MANIFEST_NAME = "crossmodal.json"  # the manifest in every export directory
MANIFEST_FORMAT = "crossmodal-onnx"  # its "format" field
MANIFEST_VERSION = 1  # newest manifest version this reader understands (and the writer writes)
ONNX_PRECISIONS = ("auto", "fp32", "int8")  # what load_onnx accepts


class OnnxEncoder:
    """Both towers of an ONNX export, run by ONNX Runtime, behind the Encoder protocol."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        spec: str | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        """Open the export in ``directory``; see the module docstring for ``precision``."""
        ort = _import_onnxruntime()
        self.directory = Path(directory).expanduser()
        self.manifest = read_manifest(self.directory)
        self.spec = spec or f"onnx:{self.directory}"
        self.config: CLIPConfig = _config(self.manifest, self.directory)
        self.precision = _choose_precision(self.manifest, precision, self.directory)
        self.dim = int(self.config.embed_dim)
        self.context_length = int(self.config.text.context_length)

        from crossmodal.encoders.native import build_preprocess, build_tokenizer

        self.preprocess: ImageTransform = build_preprocess(self.config)
        self.tokenizer: Tokenizer = build_tokenizer(self.config)

        self.providers = _providers(ort, device)
        files = self.manifest["files"][self.precision]
        names = self.manifest.get("inputs", {})
        self._image = _open_session(ort, self.directory, files, "image", self.providers)
        self._text = _open_session(ort, self.directory, files, "text", self.providers)
        self._image_input = str(names.get("image") or self._image.get_inputs()[0].name)
        self._text_input = str(names.get("text") or self._text.get_inputs()[0].name)
        log.info(
            "loaded ONNX export %s (%s, providers %s)",
            self.directory,
            self.precision,
            self._image.get_providers(),
        )

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """(B, 3, S, S) preprocessed images → (B, D) L2-normalised float32."""
        x = np.ascontiguousarray(pixels, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"pixels must be (B, 3, S, S), got shape {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._image.run(None, {self._image_input: x})[0]
        return l2_normalize(np.asarray(out, dtype=np.float32))

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        """A token batch → (B, D) L2-normalised float32.

        Rows shorter than the exported ``context_length`` are zero-padded (causal attention
        makes this exact); longer ones are an :class:`~crossmodal.errors.InputError`.
        """
        ids = np.ascontiguousarray(tokens.ids, dtype=np.int64)
        if ids.ndim != 2:
            raise InputError(f"token ids must be (B, T), got shape {ids.shape}")
        if ids.shape[1] > self.context_length:
            raise InputError(
                f"got {ids.shape[1]} tokens per text; this export takes at most "
                f"{self.context_length} (use the encoder's own tokenizer)"
            )
        if ids.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if ids.shape[1] < self.context_length:
            ids = np.pad(ids, ((0, 0), (0, self.context_length - ids.shape[1])))
        out = self._text.run(None, {self._text_input: ids})[0]
        return l2_normalize(np.asarray(out, dtype=np.float32))


def load_onnx(spec: ModelSpec, device: str = "auto", precision: str = "auto") -> OnnxEncoder:
    """The loader behind ``load_encoder('onnx:DIR')``: ``DIR`` is ``spec.weights`` or
    ``spec.name``; ``precision`` is ``auto`` (int8 when exported, else fp32), ``fp32`` or
    ``int8``."""
    _import_onnxruntime()
    directory = spec.weights or spec.name
    if not directory:
        raise ConfigError(f"model spec {str(spec)!r} names no ONNX export directory")
    return OnnxEncoder(directory, spec=str(spec), device=device, precision=precision)


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``crossmodal.json`` of an export directory.

    Raises :class:`~crossmodal.errors.CheckpointError` naming the path when the directory or
    its manifest is missing, unreadable, of another format or a newer version.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        hint = "export one with 'crossmodal export-onnx -m native:MODEL -o DIR'"
        what = "is not a directory" if directory.exists() else "not found"
        raise CheckpointError(f"{directory}: ONNX export directory {what}; {hint}")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {MANIFEST_NAME} in this directory, so it is not a crossmodal ONNX "
            "export; write one with 'crossmodal export-onnx'"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc}); re-export the model") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path}: not a {MANIFEST_FORMAT} manifest; re-export the model")
    version = manifest.get("version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise CheckpointError(
            f"{path}: manifest version {version!r} is newer than this crossmodal reads "
            f"({MANIFEST_VERSION}); upgrade crossmodal or re-export"
        )
    files = manifest.get("files")
    fp32 = files.get("fp32") if isinstance(files, dict) else None
    if (
        not isinstance(files, dict)
        or not isinstance(fp32, dict)
        or not {"image", "text"} <= set(fp32)
    ):
        raise CheckpointError(f"{path}: manifest lists no fp32 image and text files")
    inside = directory.resolve()
    for precision, towers in files.items():
        for tower, name in towers.items() if isinstance(towers, dict) else ():
            target = (directory / str(name)).resolve()
            if not isinstance(name, str) or not target.is_relative_to(inside):
                raise CheckpointError(
                    f"{path}: files.{precision}.{tower} ({name!r}) is outside the export "
                    "folder; a manifest names files inside its folder: re-export the model"
                )
    if not isinstance(manifest.get("config"), dict):
        raise CheckpointError(f"{path}: manifest has no model config")
    return manifest


def _config(manifest: dict[str, Any], directory: Path) -> CLIPConfig:
    where = str(directory / MANIFEST_NAME)
    try:
        return config_from_dict(manifest["config"], where=f"{where}: config")
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; re-export the model") from exc


def _choose_precision(manifest: dict[str, Any], precision: str, directory: Path) -> str:
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(
            f"precision {precision!r} is not available for ONNX exports; choose from "
            f"{', '.join(ONNX_PRECISIONS)} (auto = int8 when exported, else fp32)"
        )
    files = manifest["files"]
    has_int8 = isinstance(files.get("int8"), dict) and {"image", "text"} <= set(files["int8"])
    if precision == "int8" and not has_int8:
        raise CheckpointError(
            f"{directory}: this export has no int8 towers; re-export with "
            "'crossmodal export-onnx --int8' or use precision 'fp32'"
        )
    if precision == "auto":
        return "int8" if has_int8 else "fp32"
    return precision


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError("onnx", "onnx", "onnxruntime") from None
    return onnxruntime


def _providers(ort: Any, device: str) -> list[Any]:
    """Execution providers for a device: CUDA first where asked for and available."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"invalid device {device!r}; choose auto, cpu, cuda or cuda:N")
    cpu: list[Any] = ["CPUExecutionProvider"]
    if device == "cpu":
        return cpu
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if device != "auto":
            log.warning(
                "device %s asked for, but this onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu); running on the CPU",
                device,
            )
        return cpu
    index = device.partition(":")[2]
    if index and not index.isdigit():
        raise ConfigError(f"invalid device {device!r}; choose auto, cpu, cuda or cuda:N")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), *cpu]


def _open_session(
    ort: Any, directory: Path, files: dict[str, str], tower: str, providers: list[Any]
) -> Any:
    path = directory / str(files[tower])
    if not path.is_file():
        raise CheckpointError(f"{path}: the {tower} tower listed in the manifest is missing")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not logging
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's errors derive from Exception directly
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
