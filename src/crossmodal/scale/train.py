"""``crossmodal train --engine ray``: the same training run on a Ray cluster (Ray Train).

For users whose cluster is a Ray cluster rather than a set of machines ``torchrun`` can reach.
Ray Train's ``TorchTrainer`` starts ``workers`` processes (one GPU each where asked), joins
them in a torch process group (``gloo`` on CPU, ``nccl`` on GPU), and each one runs the very
command line that was given, ``--engine local``: :mod:`crossmodal.train.distributed` finds the
group already live and the run behaves exactly as under ``torchrun`` (per-rank batches,
features gathered for the loss, rank 0 writing checkpoints, metrics and weights). ``--out``
must be a path every worker can write (a shared file system on a multi-node cluster).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.errors import ConfigError, CrossmodalError

__all__ = ["RayTrainConfig", "launch_on_ray"]


@dataclass(frozen=True)
class RayTrainConfig:
    """How many Ray Train workers, and what each reserves."""

    workers: int = 2
    address: str | None = None  # None: a local Ray; "auto" or "ray://HOST:10001": a cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError("--ray-workers ≥ 1, CPUs per worker > 0, GPUs per worker ≥ 0")


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the entry point on the command line, in the driver's directory."""
    os.chdir(config["cwd"])
    code = config["entry"](config["argv"])
    if code != 0:
        raise CrossmodalError(f"crossmodal {' '.join(config['argv'])} exited with {code}")


def launch_on_ray(
    entry: Callable[[list[str]], int], argv: list[str], out: Path, config: RayTrainConfig
) -> None:
    """Run ``entry(argv)`` (crossmodal's ``main`` with a ``train`` command, ``--engine
    local``) on ``config.workers`` Ray Train workers; Ray's own run records go to
    ``OUT/ray-train``. ``entry`` must pickle by reference (a module-level function): each
    worker imports it.

    Raises:
        BackendUnavailableError: Ray is not installed (``crossmodal[scale]``).
        CrossmodalError: A worker failed (its error is in the message).
    """
    from crossmodal.scale.ray import RayConfig, start_ray

    start_ray(RayConfig(address=config.address))
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": config.cpus_per_worker}
    if config.gpus_per_worker:
        resources["GPU"] = config.gpus_per_worker
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"entry": entry, "argv": argv, "cwd": os.getcwd()},
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.gpus_per_worker > 0,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(storage_path=str(out.resolve() / "ray-train"), name="train"),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray wraps a worker's error in its own types
        raise CrossmodalError(f"training on Ray failed: {exc}") from exc
