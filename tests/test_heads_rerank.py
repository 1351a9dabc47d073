"""The memory re-ranker: starts as the embedding ranking, attends as the formula says, and
learns to use remembered pictures of a concept on a style it never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossmodal.errors import CheckpointError, InputError
from crossmodal.heads.io import save_head_file
from crossmodal.heads.rerank import (
    Reranker,
    RerankMemory,
    load_reranker,
    mine_hard_negatives,
    save_reranker,
)
from crossmodal.heads.rerank_train import RerankTrainConfig, rerank_ranks, train_reranker


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def random_memory(dim: int, pictures: int = 6, seed: int = 0) -> RerankMemory:
    """A small memory of random unit vectors: two captions per picture, two galleries."""
    g = torch.Generator().manual_seed(seed)
    return RerankMemory(
        keys=_unit(torch.randn(2 * pictures, dim, generator=g)),
        key_picture=torch.arange(pictures).repeat(2),
        pictures=_unit(torch.randn(pictures, dim, generator=g)),
        groups=torch.arange(pictures) % (pictures // 2),
        galleries=torch.arange(pictures) // (pictures // 2),
    )


def test_an_untrained_reranker_ranks_like_the_embedding_search() -> None:
    torch.manual_seed(0)
    model = Reranker(random_memory(8), logit_scale=30.0)
    batch = {"h_t": _unit(torch.randn(3, 8)), "h_i": _unit(torch.randn(3, 7, 8))}
    cosine = torch.einsum("bd,bkd->bk", batch["h_t"], batch["h_i"])
    assert torch.allclose(model(batch), 30.0 * cosine, atol=1e-5)
    with pytest.raises(InputError, match="lacks"):
        model({"h_t": batch["h_t"]})
    with pytest.raises(InputError, match=r"\(B, K, D\)"):
        model({"h_t": batch["h_t"], "h_i": batch["h_i"][0]})


def test_the_score_is_the_formula_written_out() -> None:
    memory = random_memory(8, pictures=6, seed=1)
    model = Reranker(memory, logit_scale=20.0, temperature=7.0)
    with torch.no_grad():
        model.weight.fill_(0.8)
    h_t, h_i = _unit(torch.randn(2, 8)), _unit(torch.randn(2, 5, 8))
    exclude = torch.tensor([1, -1])  # the first query must not see picture 1
    scores = model({"h_t": h_t, "h_i": h_i, "exclude_picture": exclude})
    for q in range(2):
        seen = [m for m in range(12) if int(memory.key_picture[m]) != int(exclude[q])]
        sims = memory.keys[seen] @ h_t[q]
        alpha = torch.exp(7.0 * sims) / torch.exp(7.0 * sims).sum()
        p = _unit((alpha[:, None] * memory.pictures[memory.key_picture[seen]]).sum(0))
        g = torch.sigmoid(10.0 * (sims.max() - 0.7))
        want = 20.0 * (h_i[q] @ h_t[q] + 0.8 * g * (h_i[q] @ p))
        assert torch.allclose(scores[q], want, atol=1e-5)
    attention = model.attend(h_t)
    assert torch.allclose(attention.weights.sum(1), torch.ones(2))
    order = torch.randperm(12)  # the memory's order does not matter
    shuffled = RerankMemory(
        memory.keys[order],
        memory.key_picture[order],
        memory.pictures,
        memory.groups,
        memory.galleries,
    )
    other = Reranker(shuffled, logit_scale=20.0, temperature=7.0)
    with torch.no_grad():
        other.weight.fill_(0.8)
    assert torch.allclose(other({"h_t": h_t, "h_i": h_i}), model({"h_t": h_t, "h_i": h_i}))


def test_a_memory_that_does_not_add_up_is_refused() -> None:
    good = random_memory(4)
    with pytest.raises(InputError, match="past the 6 pictures"):
        RerankMemory(good.keys, good.key_picture + 3, good.pictures, good.groups, good.galleries)
    with pytest.raises(InputError, match="one space"):
        RerankMemory(good.keys[:, :3], good.key_picture, good.pictures, good.groups, good.galleries)


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
    galleries = torch.tensor([0] * 5 + [1] * 5)
    own = mine_hard_negatives(h_t, h_i, positives, 3, galleries=galleries)
    assert all(int(i) < 5 for i in own.flatten())  # both positives live in gallery 0
    with pytest.raises(InputError, match="k=1"):
        mine_hard_negatives(h_t, h_i, positives, 1)
    with pytest.raises(InputError, match="per gallery"):
        mine_hard_negatives(h_t, h_i, positives, 6, galleries=galleries)


def _styled_world(concepts: int, seed: int) -> dict[str, torch.Tensor]:
    """Pictures of each concept in three styles, and one caption per concept.

    A picture is its concept's direction plus a strong style direction plus noise; a caption
    is mostly its own direction, so text → picture is weak, while pictures of one concept in
    two styles share the concept's direction.
    """
    g = torch.Generator().manual_seed(seed)
    dim = 32
    concept = _unit(torch.randn(concepts, dim, generator=g))
    style = _unit(torch.randn(3, dim, generator=g))
    pictures = torch.stack(
        [
            _unit(concept + 1.5 * style[s] + 0.1 * torch.randn(concepts, dim, generator=g))
            for s in range(3)
        ]
    )  # (style, concept, dim)
    captions = _unit(0.35 * concept + _unit(torch.randn(concepts, dim, generator=g)))
    return {"pictures": pictures, "captions": captions}


def test_training_learns_to_use_the_memory_on_a_new_style(tmp_path: Path) -> None:
    world = _styled_world(60, seed=3)
    remembered = world["pictures"][:2].reshape(120, -1)  # styles 0 and 1
    memory = RerankMemory(
        keys=world["captions"].repeat(2, 1),
        key_picture=torch.arange(120),
        pictures=remembered,
        groups=torch.arange(60).repeat(2),
        galleries=torch.arange(2).repeat_interleave(60),
    )
    config = RerankTrainConfig(candidates=8, steps=150, batch_size=32, lr=3e-2, drop_group=0.3)
    reranker, result = train_reranker(memory, tmp_path / "run", config, logit_scale=30.0)
    assert (
        result.steps == 150 and float(reranker.weight.detach()) > 0.2
    )  # it learnt to use the memory
    new_style = world["pictures"][2]  # never in the memory, never trained on
    base, new = rerank_ranks(reranker, world["captions"], new_style, torch.arange(60), top_n=10)
    assert (new < 1).mean() >= (base < 1).mean() + 0.3  # measured 0.17 -> 0.78
    assert ((new < 10) == (base < 10)).all()  # only the top 10 moves, within itself
    # a query whose concept the memory lacks: the gate stays shut
    stranger = _unit(torch.randn(1, 32, generator=torch.Generator().manual_seed(9)))
    with torch.no_grad():
        shut, open_ = reranker.gate(stranger), reranker.gate(world["captions"][:5])
    assert float(shut) < 0.2 < 0.8 < float(open_.min())


def test_saved_and_loaded_it_scores_the_same(tmp_path: Path) -> None:
    model = Reranker(random_memory(16, pictures=40), logit_scale=12.0)
    with torch.no_grad():
        model.weight.fill_(1.3)
        model.gate_bias.fill_(0.2)
    path = save_reranker(model, tmp_path / "r.safetensors", encoder="native:emoji-mini")
    loaded, encoder = load_reranker(path)
    assert encoder == "native:emoji-mini" and loaded.config == model.config
    h_t, h_i = _unit(torch.randn(16)), _unit(torch.randn(9, 16))
    assert torch.allclose(loaded.score(h_t, h_i), model.score(h_t, h_i), atol=0.05)  # float16
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("memory_pictures").dtype == torch.float16
    old = save_head_file(
        torch.nn.Linear(2, 2), tmp_path / "old.safetensors", "crossmodal.reranker", {"dim": 2}
    )
    with pytest.raises(CheckpointError, match="older kind"):
        load_reranker(old)
    with pytest.raises(CheckpointError, match="not a crossmodal re-ranker"):
        load_reranker(tmp_path / "missing.safetensors")
