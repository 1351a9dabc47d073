"""Training checkpoints: everything a run needs to continue exactly, written atomically.

A checkpoint holds the model weights, the optimizer and scheduler states, the step and epoch,
the training config and the RNG states (torch, numpy, Python ``random`` and the data order),
as tensors and primitive containers only, so :func:`load_checkpoint_state` reads it with
``torch.load(weights_only=True)``: a file that would need code to load is refused.

In a run directory, checkpoints are ``checkpoints/step-00001000.pt``; the ``latest`` file
beside them names the newest complete one, and only the last K are kept. Every file is
replaced atomically (:mod:`crossmodal.atomic`), so a crash mid-write leaves the
previous checkpoint and pointer intact.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from crossmodal.atomic import atomic_write, atomic_write_text
from crossmodal.errors import CheckpointError, UnsafeCheckpointError
from crossmodal.train.config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "LATEST_POINTER",
    "TrainCheckpoint",
    "checkpoint_name",
    "latest_checkpoint",
    "load_checkpoint_state",
    "prune_checkpoints",
    "save_checkpoint",
    "save_rotating_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "crossmodal-train-checkpoint/1"  # the "format" entry of every checkpoint
LATEST_POINTER = "latest"  # file in the checkpoint directory naming the newest checkpoint
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


@dataclass(frozen=True)
class TrainCheckpoint:
    """The contents of a training checkpoint, as loaded."""

    path: Path  # the file it came from
    model: dict[str, Tensor]  # model.state_dict()
    optimizer: dict[str, Any]  # optimizer.state_dict()
    scheduler: dict[str, Any]  # scheduler.state_dict()
    step: int  # optimizer steps completed
    epoch: int  # index of the epoch in progress
    config: dict[str, Any]  # TrainConfig.to_dict() of the run that wrote it
    rng: dict[str, Any]  # capture_rng_state() plus "data": DataOrder.to_dict()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    epoch: int,
    config: TrainConfig | Mapping[str, Any],
    rng: Mapping[str, Any],
) -> Path:
    """Write a training checkpoint to ``path`` atomically (temp file, fsync, rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "epoch": int(epoch),
        "config": config.to_dict() if isinstance(config, TrainConfig) else dict(config),
        "rng": dict(rng),
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint_state(path: str | os.PathLike[str]) -> TrainCheckpoint:
    """Read a checkpoint with ``weights_only=True``.

    Raises :class:`UnsafeCheckpointError` for a file that holds more than tensors and
    primitive containers, and :class:`CheckpointError` for one that is missing, truncated or
    not a crossmodal training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unsafe global"
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it holds more than tensors and plain containers, and "
            f"loading it could run code ({first}); only load checkpoints this library wrote"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: malformed or truncated checkpoint ({exc}); use an earlier one"
        ) from exc
    return _parse(obj, path)


_FIELDS: dict[str, type] = {
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "step": int,
    "epoch": int,
    "config": dict,
    "rng": dict,
}


def _parse(obj: Any, path: Path) -> TrainCheckpoint:
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: not a crossmodal training checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); for model weights alone use crossmodal.models.weights"
        )
    for key, kind in _FIELDS.items():
        if not isinstance(obj.get(key), kind):
            raise CheckpointError(
                f"{path}: checkpoint field {key!r} is missing or not a {kind.__name__}"
            )
    bad = [k for k, v in obj["model"].items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: model entries that are not tensors: {bad[:5]}")
    return TrainCheckpoint(path=path, **{key: obj[key] for key in _FIELDS})


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after ``step`` optimizer steps."""
    return f"step-{step:08d}.pt"


def _step_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in directory.glob("step-*.pt"):
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint the ``latest`` pointer names, else the highest step; None if none."""
    directory = Path(directory)
    pointer = directory / LATEST_POINTER
    if pointer.is_file():
        target = directory / pointer.read_text(encoding="utf-8").strip()
        if target.is_file():
            return target
        log.warning("%s names %s, which is missing; using the newest file", pointer, target)
    files = _step_files(directory) if directory.is_dir() else []
    return files[-1][1] if files else None


def prune_checkpoints(directory: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (never the ``latest`` one)."""
    directory = Path(directory)
    latest = latest_checkpoint(directory)
    files = [p for _, p in _step_files(directory)]
    removed = []
    for path in files[: max(0, len(files) - keep)]:
        if path != latest:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def save_rotating_checkpoint(
    directory: str | os.PathLike[str],
    keep: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    epoch: int,
    config: TrainConfig | Mapping[str, Any],
    rng: Mapping[str, Any],
) -> Path:
    """:func:`save_checkpoint` as ``directory/step-N.pt``, then point ``latest`` at it and
    delete all but the ``keep`` newest checkpoints.
    """
    directory = Path(directory)
    path = save_checkpoint(
        directory / checkpoint_name(step), model, optimizer, scheduler, step, epoch, config, rng
    )
    atomic_write_text(directory / LATEST_POINTER, path.name + "\n")
    removed = prune_checkpoints(directory, keep)
    if removed:
        log.debug("deleted old checkpoints %s", [p.name for p in removed])
    return path
