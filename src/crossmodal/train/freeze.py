"""Freezing towers for fine-tuning, and WiSE-FT weight interpolation.

Locking a tower (LiT, Zhai et al., 2022) sets ``requires_grad=False`` on its parameters, so
they get no gradient, the optimizer leaves them out and they never change. ``unlocked_blocks``
keeps the top of a locked tower trainable: the last N residual blocks and everything after
them (the final LayerNorm and the projection into the joint space).

WiSE-FT (Wortsman et al., 2022) interpolates the zero-shot and fine-tuned weights,
θ = (1 - α)·θ_zs + α·θ_ft, which keeps most of the fine-tuned accuracy with much of the
zero-shot robustness.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from crossmodal.errors import CheckpointError, ConfigError

__all__ = ["freeze_tower", "lock_image_tower", "lock_text_tower", "wise_ft"]


def _blocks(tower: nn.Module) -> nn.ModuleList:
    transformer = getattr(tower, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError(
            f"{type(tower).__name__} has no transformer.resblocks; unlocked_blocks needs a "
            "native transformer tower"
        )
    return blocks


def freeze_tower(tower: nn.Module, unlocked_blocks: int = 0) -> int:
    """Freeze ``tower`` except its last ``unlocked_blocks`` blocks and the layers after them.

    Returns the number of parameters (elements) frozen.
    """
    if unlocked_blocks < 0:
        raise ConfigError(f"unlocked_blocks must be >= 0, got {unlocked_blocks}")
    keep: set[int] = set()
    if unlocked_blocks:
        blocks = _blocks(tower)
        if unlocked_blocks > len(blocks):
            raise ConfigError(
                f"unlocked_blocks={unlocked_blocks} but the tower has {len(blocks)} blocks"
            )
        first = len(blocks) - unlocked_blocks
        keep = {id(p) for block in blocks[first:] for p in block.parameters()}
        # Layers registered after the transformer (ln_post/ln_final, proj) come after it.
        after = False
        for name, child in tower.named_children():
            if after:
                keep.update(id(p) for p in child.parameters())
            after = after or name == "transformer"
        keep.update(id(p) for n, p in tower.named_parameters(recurse=False) if _is_head(n))
    frozen = 0
    for p in tower.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
            p.grad = None
            frozen += p.numel()
    return frozen


def _is_head(name: str) -> bool:
    """Direct parameters of a tower that sit after the transformer (the projection)."""
    return name in {"proj", "text_projection"}


def lock_image_tower(model: nn.Module, unlocked_blocks: int = 0) -> int:
    """Freeze the image tower ``model.visual`` (LiT's locked image tower)."""
    return freeze_tower(_tower(model, "visual"), unlocked_blocks)


def lock_text_tower(model: nn.Module, unlocked_blocks: int = 0) -> int:
    """Freeze the text tower ``model.text``."""
    return freeze_tower(_tower(model, "text"), unlocked_blocks)


def _tower(model: nn.Module, name: str) -> nn.Module:
    tower = getattr(model, name, None)
    if not isinstance(tower, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no {name!r} tower to lock")
    return tower


def wise_ft(
    zero_shot_state: Mapping[str, Tensor], finetuned_state: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """θ = (1 - α)·θ_zs + α·θ_ft for every floating tensor; α=0 gives θ_zs, α=1 gives θ_ft.

    Both states must hold the same keys with the same shapes (:class:`CheckpointError`
    names the differences). Integer tensors (counters, indices) must be equal and are copied.
    Floating tensors are mixed in float32 and cast back to their dtype.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    only_zs = sorted(set(zero_shot_state) - set(finetuned_state))
    only_ft = sorted(set(finetuned_state) - set(zero_shot_state))
    if only_zs or only_ft:
        raise CheckpointError(
            f"WiSE-FT needs the same keys: only zero-shot {only_zs[:5]}, "
            f"only fine-tuned {only_ft[:5]}"
        )
    out: dict[str, Tensor] = {}
    for key, zs in zero_shot_state.items():
        ft = finetuned_state[key]
        if zs.shape != ft.shape:
            raise CheckpointError(
                f"WiSE-FT: {key} is {tuple(zs.shape)} zero-shot but {tuple(ft.shape)} fine-tuned"
            )
        if not zs.is_floating_point():
            if not torch.equal(zs, ft):
                raise CheckpointError(f"WiSE-FT: integer tensor {key} differs between the states")
            out[key] = ft.clone()
            continue
        mixed = (1.0 - alpha) * zs.float() + alpha * ft.float()
        out[key] = mixed.to(zs.dtype)
    return out
