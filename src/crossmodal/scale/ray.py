"""A Ray session for crossmodal's jobs on a cluster: where it runs and how wide.

Token authentication: recent Ray (2.60 here), when ``ray.init()`` starts a new local cluster
with ``RAY_AUTH_MODE`` unset, turns token authentication on by default: it writes a fresh
token to ``~/.ray/auth_token`` (left there for good, with the umask's permissions) and sets
``RAY_AUTH_MODE=token`` in the calling process. For the local Ray it starts itself,
:func:`start_ray` sets ``RAY_AUTH_MODE=disabled`` around ``ray.init`` and restores the
environment afterwards, so a run leaves no token file and no changed environment; the Ray
processes it started keep the setting. That is how local Ray ran before token
authentication existed: its ports are open to the network for the length of the run. A
user who wants the token sets ``RAY_AUTH_MODE=token`` (Ray then writes and uses
``~/.ray/auth_token`` as it documents); any ``RAY_AUTH_MODE`` the user set, and every
connection to an existing cluster (``--ray-address``, ``RAY_ADDRESS``, or a ``ray start``
cluster on this machine), is left to Ray as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crossmodal.errors import BackendUnavailableError, ConfigError

__all__ = ["RayConfig", "start_ray", "starts_local_cluster"]


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
        with _no_token_file(config):
            ray.init(
                address=config.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    return ray


_AUTH_MODE = "RAY_AUTH_MODE"  # Ray's switch: token, disabled; unset: token for a new cluster


def starts_local_cluster(address: str | None) -> bool:
    """Whether ``ray.init(address=address)`` starts a new Ray here rather than joining one.

    Ray's own rule: no address (or ``"local"``), no ``RAY_ADDRESS`` in the environment and no
    cluster started by ``ray start`` on this machine.
    """
    if address not in (None, "local"):
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # Ray moved it: the documented part of the rule
        return address == "local" or not os.environ.get("RAY_ADDRESS")
    try:
        found = canonicalize_bootstrap_address(address)  # type: ignore[arg-type]  # takes None
        return found is None
    except (ValueError, ConnectionError, OSError):  # a bad RAY_ADDRESS: ray.init will say so
        return False


@contextlib.contextmanager
def _no_token_file(config: RayConfig) -> Iterator[None]:
    """``RAY_AUTH_MODE=disabled`` while a new local Ray starts, when the user set no mode."""
    if _AUTH_MODE in os.environ or not starts_local_cluster(config.address):
        yield
        return
    os.environ[_AUTH_MODE] = "disabled"
    try:
        yield
    finally:
        os.environ.pop(_AUTH_MODE, None)
