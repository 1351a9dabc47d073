"""The cross-attention re-ranker: starts as the embedding ranking, learns what tokens show."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossmodal.errors import InputError
from crossmodal.heads.rerank import Reranker, mine_hard_negatives
from crossmodal.train.config import TrainConfig
from crossmodal.train.data_order import build_loader_factory
from crossmodal.train.loop import train
from crossmodal.train.objective import ClassificationObjective


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_an_untrained_reranker_ranks_like_the_embedding_search() -> None:
    torch.manual_seed(0)
    model = Reranker(12, 8, dim=16, logit_scale=30.0)
    batch = {
        "words": torch.randn(3, 5, 12),
        "word_mask": torch.ones(3, 5, dtype=torch.bool),
        "h_t": _unit(torch.randn(3, 8)),
        "patches": torch.randn(3, 7, 4, 8),
        "h_i": _unit(torch.randn(3, 7, 8)),
    }
    scores = model(batch)
    cosine = torch.einsum("bd,bkd->bk", batch["h_t"], batch["h_i"])
    assert torch.allclose(scores, 30.0 * cosine, atol=1e-5)
    with pytest.raises(InputError, match="lacks"):
        model({"words": batch["words"]})


def test_hard_negatives_are_the_best_wrong_images_of_other_groups() -> None:
    torch.manual_seed(0)
    h_i = _unit(torch.randn(10, 6))
    h_t = _unit(h_i[[0, 3]] + 0.1 * torch.randn(2, 6))
    positives = torch.tensor([0, 3])
    groups = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])  # image 5 shows what image 0 shows
    cands = mine_hard_negatives(
        h_t, h_i, positives, 4, text_groups=groups[positives], image_groups=groups
    )
    assert cands[:, 0].tolist() == [0, 3]
    assert 5 not in cands[0].tolist() and 8 not in cands[1].tolist()  # same emoji, other style
    scores = h_t @ h_i.T
    for q, (row, pos) in enumerate(zip(cands, positives, strict=True)):
        allowed = [i for i in range(10) if groups[i] != groups[pos]]
        best = sorted(allowed, key=lambda i: -float(scores[q, i]))
        assert row[1:].tolist() == best[:3]  # best first
    with pytest.raises(InputError, match="k=1"):
        mine_hard_negatives(h_t, h_i, positives, 1)


class _Synthetic(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Embeddings say nothing (all candidates equal); the match is a key in one patch."""

    def __init__(self, n: int, k: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        keys = _unit(torch.randn(n, k, 8, generator=g))  # candidate 0's key is the caption's
        self.words = torch.randn(n, 4, 8, generator=g) * 0.1
        self.words[:, 0] = keys[:, 0] * 3
        self.patches = torch.randn(n, k, 5, 8, generator=g) * 0.1
        self.patches[:, :, 2] = keys * 3
        self.h = _unit(torch.ones(8))

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        k = self.patches.shape[1]
        return {
            "words": self.words[j],
            "word_mask": torch.ones(4, dtype=torch.bool),
            "h_t": self.h,
            "patches": self.patches[j],
            "h_i": self.h.expand(k, 8),
            "labels": torch.tensor(0),
        }


def test_the_reranker_learns_a_match_only_the_tokens_show(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Reranker(8, 8, dim=32, heads=2, logit_scale=10.0)
    config = TrainConfig(
        model="reranker",
        objective="classification",
        total_steps=300,
        batch_size=32,
        lr=3e-3,
        warmup_steps=10,
        weight_decay=0.0,
        checkpoint_every=0,
        out_dir=str(tmp_path),
        plot=False,
    )
    train(
        model,
        ClassificationObjective(input_key=None, label_key="labels"),
        build_loader_factory(_Synthetic(512), 32),
        config,
    )
    test = _Synthetic(200, seed=1)
    batch = torch.utils.data.default_collate([test[j] for j in range(len(test))])
    with torch.no_grad():
        accuracy = float((model.eval()(batch).argmax(dim=1) == 0).float().mean())
    assert accuracy > 0.9  # chance is 1/6: the embedding scores are all equal
