"""Data-parallel training under ``torchrun``: the default process group and its few collectives.

    torchrun --nproc-per-node 2 -m crossmodal train ...

``torchrun`` starts one process per rank and tells each who it is through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
:func:`init_from_env` reads it and joins the default process group: ``nccl`` with device
``cuda:LOCAL_RANK`` when training on CUDA, ``gloo`` on the CPU. There is no launcher of our
own. Outside ``torchrun`` (no ``RANK`` in the environment) it does nothing, and every helper
here answers as a single process would: rank 0 of a world of 1, collectives are identities.

The training loop (:mod:`crossmodal.train.loop`) wraps the model in
``DistributedDataParallel`` when :func:`is_live`; :class:`~crossmodal.train.losses.ClipLoss`
gathers features across the same group.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from crossmodal.errors import ConfigError

__all__ = [
    "TorchrunEnv",
    "all_reduce_mean",
    "any_rank",
    "average_gradients",
    "barrier",
    "destroy",
    "init_from_env",
    "is_live",
    "is_main",
    "local_rank",
    "process_group",
    "rank",
    "rank_device",
    "torchrun_env",
    "world_size",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TorchrunEnv:
    """Who this process is, as ``torchrun`` says in the environment."""

    rank: int  # global rank, 0 … world_size - 1
    world_size: int  # number of processes in the job
    local_rank: int  # rank on this machine: the CUDA device index to use


def torchrun_env() -> TorchrunEnv | None:
    """The ``torchrun`` environment of this process, ``None`` outside ``torchrun``.

    Raises :class:`ConfigError` when the variables are there but malformed.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        env = TorchrunEnv(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as exc:
        raise ConfigError(f"malformed torchrun environment: {exc}") from exc
    if not 0 <= env.rank < env.world_size:
        raise ConfigError(f"torchrun environment: RANK={env.rank} not in [0, {env.world_size})")
    return env


def is_live() -> bool:
    """Whether a default process group is initialised (by us or by the caller)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank; 0 without a process group."""
    return dist.get_rank() if is_live() else 0


def world_size() -> int:
    """Number of ranks; 1 without a process group."""
    return dist.get_world_size() if is_live() else 1


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``); 0 outside ``torchrun``."""
    env = torchrun_env()
    return env.local_rank if env is not None and is_live() else 0


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def _wants_cuda(device: str) -> bool:
    return device != "cpu" and not device.startswith("cpu") and torch.cuda.is_available()


def init_from_env(device: str = "auto") -> bool:
    """Join the default process group ``torchrun`` describes; return whether this call did.

    ``device`` is the training device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``): on
    CUDA the backend is ``nccl`` and this process's device becomes ``cuda:LOCAL_RANK``
    (whatever index ``device`` names: each rank owns one GPU); otherwise ``gloo``. A no-op
    returning ``False`` outside ``torchrun`` or when a group is already live.
    """
    env = torchrun_env()
    if env is None or is_live():
        return False
    if not dist.is_available():
        raise ConfigError("torchrun started this process, but torch.distributed is not built in")
    backend = "nccl" if _wants_cuda(device) else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    log.info("rank %d of %d joined the %s process group", env.rank, env.world_size, backend)
    return True


def destroy() -> None:
    """Leave the default process group; a no-op when none is live."""
    if is_live():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[bool]:
    """:func:`init_from_env` on entry, :func:`destroy` on exit, only if this call joined.

    Yields whether a group is live inside the block.
    """
    joined = init_from_env(device)
    try:
        yield is_live()
    finally:
        if joined:
            destroy()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA in a group, else ``device``."""
    if device.type == "cuda" and is_live():
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    """Wait until every rank gets here; a no-op without a process group."""
    if is_live():
        dist.barrier()


def _collective_device() -> torch.device:
    """Where small collective tensors live: nccl only reduces CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(value: float) -> float:
    """The mean of ``value`` over the ranks (NaN or inf on any rank makes it non-finite)."""
    if not is_live():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one rank: one decision that every rank shares."""
    if not is_live():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t)
    return bool(t.item() > 0)


def average_gradients(params: Sequence[nn.Parameter]) -> None:
    """Replace every ``.grad`` by its mean over the ranks, in one all-reduce.

    What DDP's reducer does after a synchronised backward, for gradients accumulated under
    ``no_sync()``. A gradient missing on a rank counts as zeros there; a parameter with no
    gradient on any rank keeps ``None`` (so AdamW still skips it, as in one process).
    """
    world = world_size()
    if world == 1 or not params:
        return
    device = params[0].device
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has = torch.tensor([float(p.grad is not None) for p in params], device=device)
    flat = torch.cat([g.detach().reshape(-1).float() for g in grads] + [has])  # (ΣP + n,)
    dist.all_reduce(flat)
    offset = 0
    ranks_with_grad = flat[-len(params) :]
    for i, p in enumerate(params):
        n = p.numel()
        if ranks_with_grad[i] > 0:
            p.grad = (flat[offset : offset + n] / world).view_as(p).to(p.dtype)
        offset += n
