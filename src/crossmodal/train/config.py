"""The training configuration: typed, frozen, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from crossmodal.errors import ConfigError

__all__ = ["TRAIN_PRECISIONS", "TrainConfig", "TrainPrecision"]

TrainPrecision = Literal["auto", "fp32", "bf16"]
TRAIN_PRECISIONS: tuple[str, ...] = get_args(TrainPrecision)


@dataclass(frozen=True)
class TrainConfig:
    """Everything the training loop needs besides the model, the objective and the data."""

    model: str = "test-tiny"  # registered architecture name (recorded; the caller builds it)
    objective: str = "contrastive"  # registered objective name (recorded; the caller builds it)
    batch_size: int = 128  # samples per micro-batch, as the data yields them
    accum_steps: int = 1  # micro-batches per optimizer step (effective batch ×accum_steps)
    lr: float = 5e-4  # peak learning rate, reached at the end of warmup
    min_lr: float = 0.0  # floor of the cosine decay, reached at the last step
    weight_decay: float = 0.2  # AdamW decay on matrices (none on norms, biases, embeddings, τ)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment coefficients (CLIP's)
    eps: float = 1e-6  # AdamW epsilon (CLIP's)
    warmup_steps: int = 0  # optimizer steps of linear warmup
    total_steps: int | None = None  # optimizer steps to run; set this or epochs
    epochs: int | None = None  # passes over the data (needs data with a length); or total_steps
    grad_clip: float | None = 1.0  # max global gradient norm; None measures without clipping
    precision: TrainPrecision = "auto"  # auto: bf16 autocast only where bf16 is fast, else fp32
    device: str = "auto"  # 'auto' (CUDA if available, else CPU), 'cpu', 'cuda:0', …
    seed: int = 0  # seeds torch, numpy, random and the data shuffling generator
    lock_image: bool = False  # freeze the image tower (LiT)
    lock_text: bool = False  # freeze the text tower
    unlocked_blocks: int = 0  # last N blocks (and the head) of a locked tower stay trainable
    checkpoint_every: int = 1000  # optimizer steps between checkpoints; 0: only the last step
    keep_checkpoints: int = 3  # most recent checkpoints kept on disk (older ones deleted)
    out_dir: str = "runs/train"  # checkpoints/, metrics.csv and curves.png go here
    log_every: int = 10  # optimizer steps between log lines
    progress: bool = False  # show a tqdm progress bar on stderr
    plot: bool = True  # write curves.png at the end (skipped if matplotlib is missing)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the first field at fault; return self."""
        positive_ints = ("batch_size", "accum_steps", "log_every", "keep_checkpoints")
        for name in positive_ints:
            _check(name, getattr(self, name), lambda v: isinstance(v, int) and v >= 1, ">= 1")
        for name in ("warmup_steps", "checkpoint_every", "unlocked_blocks"):
            _check(name, getattr(self, name), lambda v: isinstance(v, int) and v >= 0, ">= 0")
        _check("lr", self.lr, lambda v: math.isfinite(v) and v > 0, "> 0")
        _check("min_lr", self.min_lr, lambda v: 0 <= v <= self.lr, "in [0, lr]")
        _check("weight_decay", self.weight_decay, lambda v: 0 <= v < math.inf, ">= 0")
        _check(
            "betas", self.betas, lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "in [0,1)"
        )
        _check("eps", self.eps, lambda v: v > 0, "> 0")
        if (self.total_steps is None) == (self.epochs is None):
            raise ConfigError("set exactly one of total_steps and epochs")
        for name in ("total_steps", "epochs"):
            value = getattr(self, name)
            _check(name, value, lambda v: v is None or (isinstance(v, int) and v >= 1), ">= 1")
        _check("grad_clip", self.grad_clip, lambda v: v is None or v > 0, "> 0 or None")
        _check("precision", self.precision, lambda v: v in TRAIN_PRECISIONS, str(TRAIN_PRECISIONS))
        if self.unlocked_blocks and not (self.lock_image or self.lock_text):
            raise ConfigError("unlocked_blocks only applies with lock_image or lock_text")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (for checkpoints and logs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown fields are a :class:`ConfigError` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


def _check(name: str, value: Any, ok: Callable[[Any], bool], expected: str) -> None:
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"TrainConfig.{name}={value!r} is invalid: expected {expected}")
