"""Shared fixtures: seeded RNG, tiny inputs, and a CPU-friendly torch setup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.browser import browser, page  # noqa: F401  (fixtures for every test module)
from tests.localray import local_ray  # noqa: F401  (a fixture for every test module)

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def random_ids(batch: int, context: int, vocab: int = 49408, seed: int = 0) -> torch.Tensor:
    """Token ids shaped like CLIP's: start token, words, end token (the max id), zero padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, context, dtype=torch.long)
    for row in range(batch):
        n = int(torch.randint(1, context - 1, (1,), generator=g))
        ids[row, 0] = vocab - 2
        ids[row, 1 : n + 1] = torch.randint(1, vocab - 2, (n,), generator=g)
        if n + 1 < context:
            ids[row, n + 1] = vocab - 1
    return ids
