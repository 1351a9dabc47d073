"""Optimizer and learning-rate schedule: AdamW with two parameter groups, warmup + cosine.

Weight decay pulls weights towards zero; it suits the matrices of linear and conv layers but
not gains and offsets. As in CLIP/OpenCLIP, these get no decay: every parameter with fewer
than 2 dimensions (LayerNorm gains and biases, linear biases, the class token, the logit
scale τ and bias), plus embedding tables and positional embeddings.

The schedule, for optimizer step ``k`` (0-based, the step about to be taken):

    lr(k) = lr · (k + 1) / warmup                                   k < warmup
    lr(k) = min_lr + ½ (lr - min_lr) (1 + cos(π (k - warmup) / (total - warmup)))   after

It is a ``LambdaLR`` over a callable dataclass, so its state (including the schedule's own
numbers) round-trips through ``state_dict`` and loads with ``weights_only=True``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from crossmodal.errors import ConfigError

__all__ = [
    "NO_DECAY_NAMES",
    "WarmupCosine",
    "apply_schedule",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "param_groups",
]

# Parameter names (last dotted component) that never get weight decay, whatever their shape.
NO_DECAY_NAMES: frozenset[str] = frozenset(
    {"positional_embedding", "class_embedding", "logit_scale", "logit_bias"}
)
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Embedding,
    nn.modules.batchnorm._BatchNorm,
)


def _no_decay_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NO_DECAY_MODULES):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n, _ in module.named_parameters(recurse=False))
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into [decay, no-decay] groups (frozen ones left out).

    Each group carries a ``names`` list, so tests and logs can see which parameter went where.
    """
    by_module = _no_decay_names(model)
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or name in by_module or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
        (no_decay if exempt else decay).append((name, p))
    return [
        {
            "params": [p for _, p in decay],
            "weight_decay": weight_decay,
            "names": [n for n, _ in decay],
        },
        {
            "params": [p for _, p in no_decay],
            "weight_decay": 0.0,
            "names": [n for n, _ in no_decay],
        },
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with no decay on norms, biases, embeddings and τ.

    The fused implementation runs when every parameter is a floating-point tensor on the
    CPU or a CUDA device: the same update in one kernel per group, 4x faster than the
    multi-tensor one on a CPU (27 ms against 114 ms a step for emoji-mini's 21 M parameters,
    about 6% of its training step).
    """
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters (is every tower locked?)")
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


@dataclass(frozen=True)
class WarmupCosine:
    """The lr multiplier at optimizer step k: linear warmup, then cosine decay to a floor."""

    warmup_steps: int  # steps of linear warmup; 0 starts at the peak
    total_steps: int  # step at which the cosine reaches the floor
    min_ratio: float  # the floor as a fraction of the peak lr (min_lr / lr)

    def __call__(self, k: int) -> float:
        """The multiplier of the peak lr for step ``k`` (0-based)."""
        if k < self.warmup_steps:
            return (k + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (k - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float
) -> LambdaLR:
    """Linear warmup to each group's lr, then cosine decay to ``min_lr`` at ``total_steps``.

    Call ``scheduler.step()`` after every ``optimizer.step()``.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ConfigError(f"need total_steps >= 1 and warmup_steps >= 0 ({total_steps=})")
    peak = max(float(g["lr"]) for g in optimizer.param_groups)
    if not 0 <= min_lr <= peak:
        raise ConfigError(f"min_lr={min_lr} must lie in [0, lr={peak}]")
    ratio = min_lr / peak if peak > 0 else 0.0
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, ratio))


def apply_schedule(scheduler: LambdaLR) -> None:
    """Set every group's lr to the schedule's value at its current step.

    ``load_state_dict`` restores the schedule's position but leaves the lr that the optimizer
    state carried; call this after loading both, so the next step follows the schedule now
    in force (for instance one extended to more total_steps).
    """
    step = scheduler.last_epoch
    for group, base, fn in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [float(g["lr"]) for g in scheduler.optimizer.param_groups]


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float | None) -> float:
    """Clip the global gradient norm to ``max_norm`` (None: only measure it); return the norm."""
    grads = [p for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm is None:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads if p.grad is not None])
    else:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm)
    return float(norm)
