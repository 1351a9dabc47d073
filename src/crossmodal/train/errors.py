"""Errors raised by training, in the :mod:`crossmodal.errors` tree.

``errors.py`` at the package root holds the library-wide tree; training adds one leaf here:

    CrossmodalError
    └── NonFiniteLossError   the loss became NaN or inf; the optimizer step was skipped
"""

from __future__ import annotations

from crossmodal.errors import CrossmodalError

__all__ = ["NonFiniteLossError"]


class NonFiniteLossError(CrossmodalError, ArithmeticError):
    """The loss (or the gradient norm) of an optimizer step is NaN or infinite.

    Raised before ``optimizer.step()``: the weights and the optimizer state are left as they
    were after the previous step, and the gradients are cleared.
    """

    def __init__(self, step: int, what: str, value: float) -> None:
        super().__init__(
            f"step {step}: the {what} is {value} (not finite); the update was skipped and the "
            "weights are unchanged. Lower the learning rate, raise warmup_steps, set grad_clip, "
            "or check the data for NaN/inf values; resume from the last checkpoint"
        )
        self.step = step
        self.what = what
        self.value = value
