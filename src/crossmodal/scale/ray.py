"""A Ray session for crossmodal's jobs on a cluster: where it runs and how wide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossmodal.errors import BackendUnavailableError, ConfigError

__all__ = ["RayConfig", "start_ray"]


@dataclass(frozen=True)
class RayConfig:
    """Where the Ray job runs and how wide."""

    address: str | None = None  # None: a local Ray on this machine; "auto", "ray://host:10001"
    actors: int = 2  # model actors (one copy of the model each)
    num_cpus: float = 1.0  # CPUs reserved per actor (its decode threads run inside)
    num_gpus: float = 0.0  # GPUs per actor; 0 on CPU-only clusters

    def __post_init__(self) -> None:
        if self.actors < 1 or self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError("RayConfig: actors ≥ 1, num_cpus > 0 and num_gpus ≥ 0")


def start_ray(config: RayConfig) -> Any:
    """``ray``, initialised (joined to ``config.address``, or a local instance).

    Raises:
        BackendUnavailableError: Ray is not installed (``crossmodal[scale]``).
    """
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError("ray", "scale", "ray") from exc
    if not ray.is_initialized():
        ray.init(
            address=config.address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return ray
