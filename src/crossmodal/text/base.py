"""The tokenizer protocol shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TokenBatch:
    """A batch of tokenized texts, padded to one length."""

    ids: npt.NDArray[np.int64]  # (B, T) token ids, padded with the tokenizer's pad id
    attention_mask: npt.NDArray[np.int64]  # (B, T) 1 for real tokens, 0 for padding

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, index: slice) -> TokenBatch:
        return TokenBatch(self.ids[index], self.attention_mask[index])


@runtime_checkable
class Tokenizer(Protocol):
    """Turns texts into a padded :class:`TokenBatch` of ``context_length`` ids."""

    context_length: int  # every row of the batch has this many ids

    def encode(self, text: str) -> list[int]:
        """Ids of one text, with start and end tokens, truncated to ``context_length``."""
        ...

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize and pad a batch of texts."""
        ...
