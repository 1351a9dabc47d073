"""Training: losses against plain formulas, optimizer groups, schedule, freezing, WiSE-FT,
atomic and weights-only checkpoints, exact resume, divergence guard, gradient accumulation.

Everything runs on ``test-tiny`` with random tensors on the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossmodal.errors import CheckpointError, ConfigError, InputError, UnsafeCheckpointError
from crossmodal.models.clip import CLIP
from crossmodal.models.registry import create_model
from crossmodal.train import (
    Batch,
    ClassificationObjective,
    ClipLoss,
    ContrastiveObjective,
    CrossEntropyLoss,
    NonFiniteLossError,
    TrainConfig,
    WarmupCosine,
    build_loader_factory,
    build_objective,
    build_optimizer,
    build_scheduler,
    latest_checkpoint,
    list_objectives,
    load_checkpoint_state,
    lock_image_tower,
    lock_text_tower,
    param_groups,
    save_checkpoint,
    train,
    wise_ft,
)
from crossmodal.train.checkpoint import CHECKPOINT_FORMAT
from crossmodal.train.records import METRIC_COLUMNS, read_metrics
from tests.conftest import random_ids

CONTEXT = 16  # test-tiny's context length


def _tiny(seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    return create_model("test-tiny")


def _pairs(n: int, seed: int = 0) -> torch.utils.data.Dataset[Any]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 32, 32, generator=g)
    ids = random_ids(n, CONTEXT, seed=seed)
    return torch.utils.data.StackDataset(pixels=pixels, ids=ids)  # type: ignore[arg-type]


def _batch(n: int, seed: int = 0) -> dict[str, Tensor]:
    ds = _pairs(n, seed)
    return {"pixels": ds.datasets["pixels"], "ids": ds.datasets["ids"]}  # type: ignore[attr-defined]


def _config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "batch_size": 4,
        "total_steps": 10,
        "lr": 1e-3,
        "warmup_steps": 2,
        "weight_decay": 0.1,
        "checkpoint_every": 3,
        "keep_checkpoints": 2,
        "out_dir": str(tmp_path),
        "log_every": 5,
        "plot": False,
    }
    return TrainConfig(**{**base, **overrides})


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bitwise_equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


# --------------------------------------------------------------------------- losses


def test_clip_loss_equals_the_plain_formula() -> None:
    g = torch.Generator().manual_seed(0)
    h_i = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    h_t = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    tau = torch.tensor(2.0)
    s = tau.exp()
    # Plain InfoNCE: -log softmax of the matching pair, over rows and over columns.
    expected = 0.0
    for n in range(6):
        row = [float(s * h_i[n] @ h_t[m]) for m in range(6)]
        col = [float(s * h_i[m] @ h_t[n]) for m in range(6)]
        expected += -(row[n] - math.log(sum(math.exp(x) for x in row))) / 12
        expected += -(col[n] - math.log(sum(math.exp(x) for x in col))) / 12
    assert float(ClipLoss()(h_i, h_t, s)) == pytest.approx(expected, rel=1e-5)


def test_clip_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(InputError, match="must both be"):
        ClipLoss()(torch.zeros(4, 8), torch.zeros(3, 8), torch.tensor(1.0))


def test_cross_entropy_wrapper() -> None:
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    assert torch.allclose(CrossEntropyLoss()(logits, labels), F.cross_entropy(logits, labels))
    with pytest.raises(InputError):
        CrossEntropyLoss()(logits, labels.float())
    with pytest.raises(InputError):
        CrossEntropyLoss()(logits, labels[:3])


def test_cross_entropy_soft_targets() -> None:
    logits = torch.randn(5, 3)
    one_hot = F.one_hot(torch.tensor([0, 2, 1, 1, 0]), 3).float()
    assert torch.allclose(CrossEntropyLoss()(logits, one_hot), F.cross_entropy(logits, one_hot))
    soft = torch.softmax(torch.randn(5, 3), dim=-1)
    expected = -(soft * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    assert torch.allclose(CrossEntropyLoss()(logits, soft), expected)
    with pytest.raises(InputError, match="must be floats"):
        CrossEntropyLoss()(logits, one_hot.long())
    with pytest.raises(InputError, match=r"\(B, C\)"):
        CrossEntropyLoss()(logits, soft[:, :2])


# --------------------------------------------------------------------------- objectives


def test_objective_registry_lists_valid_names() -> None:
    assert list_objectives() == ["classification", "contrastive"]
    assert isinstance(build_objective("contrastive"), ContrastiveObjective)
    with pytest.raises(ConfigError, match="classification, contrastive"):
        build_objective("siglip")
    with pytest.raises(InputError, match="lacks"):
        ContrastiveObjective().training_step(_tiny(), {"pixels": torch.zeros(2, 3, 32, 32)})


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_contrastive_accumulation_equals_the_full_batch_gradient() -> None:
    model, batch = _tiny(), _batch(8)
    objective = ContrastiveObjective()
    full = objective.backward_step(model, [batch])
    reference = _grads(model)
    model.zero_grad(set_to_none=True)
    halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    accumulated = objective.backward_step(model, halves)
    grads = _grads(model)
    assert float(accumulated.loss) == pytest.approx(float(full.loss), abs=1e-6)
    assert reference.keys() == grads.keys() and "logit_scale" in grads
    for name, g in reference.items():
        assert torch.allclose(grads[name], g, atol=1e-6, rtol=1e-4), name


def test_classification_accumulation_equals_the_full_batch_gradient() -> None:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3))
    batch = {"inputs": torch.randn(8, 6), "labels": torch.randint(0, 3, (8,))}
    objective = ClassificationObjective()
    full = objective.backward_step(head, [batch])
    reference = _grads(head)
    head.zero_grad(set_to_none=True)
    halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    accumulated = objective.backward_step(head, halves)
    assert float(accumulated.loss) == pytest.approx(float(full.loss), abs=1e-6)
    for name, g in _grads(head).items():
        assert torch.allclose(g, reference[name], atol=1e-7, rtol=1e-5), name
    assert set(full.metrics) == {"loss", "accuracy"}


# --------------------------------------------------------------------------- optimizer


def test_param_groups_exempt_norms_biases_embeddings_and_scale() -> None:
    decay, no_decay = param_groups(_tiny(), weight_decay=0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    exempt = set(no_decay["names"])
    decayed = set(decay["names"])
    for name in (
        "logit_scale",
        "visual.class_embedding",
        "visual.positional_embedding",
        "text.positional_embedding",
        "text.token_embedding.weight",
        "visual.ln_pre.weight",
        "text.ln_final.bias",
        "visual.transformer.resblocks.0.attn.qkv.bias",
        "text.transformer.resblocks.1.ln_2.weight",
    ):
        assert name in exempt, name
    for name in (
        "visual.conv1.weight",
        "visual.proj",
        "text.text_projection",
        "visual.transformer.resblocks.0.attn.qkv.weight",
        "text.transformer.resblocks.1.mlp.c_fc.weight",
    ):
        assert name in decayed, name
    assert not exempt & decayed
    assert len(exempt | decayed) == len(list(_tiny().parameters()))


def test_warmup_then_cosine_to_min_lr_and_state_round_trip() -> None:
    def lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, n: int) -> list[float]:
        out = []
        for _ in range(n):
            out.append(scheduler.optimizer.param_groups[0]["lr"])
            scheduler.optimizer.step()
            scheduler.step()
        return out

    def fresh() -> torch.optim.lr_scheduler.LRScheduler:
        optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
        return build_scheduler(optimizer, warmup_steps=4, total_steps=14, min_lr=0.1)

    got = lrs(fresh(), 16)
    expected = [0.25, 0.5, 0.75, 1.0]
    expected += [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    expected += [0.1, 0.1]  # past total_steps the floor holds
    assert got == pytest.approx(expected, abs=1e-12)

    first = fresh()
    lrs(first, 7)
    second = fresh()  # as on resume: the optimizer state carries the lr, the scheduler the rest
    second.optimizer.load_state_dict(first.optimizer.state_dict())
    second.load_state_dict(first.state_dict())
    assert second.get_last_lr() == pytest.approx([expected[7]], abs=1e-12)
    assert lrs(second, 9) == pytest.approx(expected[7:], abs=1e-12)


# --------------------------------------------------------------------------- freezing


def test_locked_image_tower_gets_no_gradient_and_does_not_change(tmp_path: Path) -> None:
    model = _tiny()
    before = _state(model)
    config = _config(tmp_path, total_steps=2, lock_image=True, checkpoint_every=0)
    train(model, ContrastiveObjective(), [_batch(4)], config)
    after = _state(model)
    for name, p in model.named_parameters():
        if name.startswith("visual."):
            assert not p.requires_grad and p.grad is None, name
            assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["text.text_projection"], before["text.text_projection"])


def test_unlocked_blocks_keep_the_top_of_a_tower_trainable() -> None:
    model = _tiny()
    lock_text_tower(model, unlocked_blocks=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "text" in n}
    assert trainable == {
        n
        for n, _ in model.named_parameters()
        if n.startswith(("text.transformer.resblocks.1.", "text.ln_final.", "text.text_proj"))
    }
    assert all(p.requires_grad for p in model.visual.parameters())
    with pytest.raises(ConfigError, match="has 2 blocks"):
        lock_image_tower(model, unlocked_blocks=3)


def test_wise_ft_interpolates_weights() -> None:
    zs, ft = _state(_tiny(0)), _state(_tiny(1))
    _assert_bitwise_equal(wise_ft(zs, ft, 0.0), zs)
    _assert_bitwise_equal(wise_ft(zs, ft, 1.0), ft)
    half = wise_ft(zs, ft, 0.5)
    for key in zs:
        assert torch.allclose(half[key], (zs[key] + ft[key]) / 2, atol=1e-7), key
    with pytest.raises(CheckpointError, match="same keys"):
        wise_ft(zs, {k: v for k, v in ft.items() if k != "logit_scale"}, 0.5)
    with pytest.raises(CheckpointError, match="visual.proj"):
        wise_ft(zs, {**ft, "visual.proj": torch.zeros(3, 3)}, 0.5)
    with pytest.raises(ConfigError):
        wise_ft(zs, ft, 1.5)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_parts(model: nn.Module) -> dict[str, Any]:
    optimizer = build_optimizer(model, 1e-3, 0.1)
    scheduler = build_scheduler(optimizer, 1, 10, 0.0)
    return {"optimizer": optimizer, "scheduler": scheduler, "config": {"note": "test"}}


def test_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    model = _tiny()
    parts = _checkpoint_parts(model)
    rng = {"python": (3, tuple(range(625)), None), "torch": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "a.pt", model, step=7, epoch=1, rng=rng, **parts)
    ckpt = load_checkpoint_state(path)
    assert (ckpt.step, ckpt.epoch, ckpt.config) == (7, 1, {"note": "test"})
    _assert_bitwise_equal(ckpt.model, _state(model))
    assert ckpt.rng["python"] == rng["python"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left


@pytest.mark.parametrize("failure", ["replace", "midway"])
def test_failed_checkpoint_write_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    model = _tiny()
    parts = _checkpoint_parts(model)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, step=1, epoch=0, rng={}, **parts)
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    if failure == "replace":

        def broken_replace(src: Any, dst: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken_replace)
    else:
        real_save = torch.save

        def half_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            real_save(obj, f, *args, **kwargs)
            f.truncate(f.tell() // 2)  # the process "dies" halfway through the write
            raise KeyboardInterrupt

        monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(path, model, step=2, epoch=0, rng={}, **parts)
    monkeypatch.undo()
    assert load_checkpoint_state(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


_PAYLOAD_RAN: list[str] = []


def _payload() -> None:
    _PAYLOAD_RAN.append("ran")


class _CodePayload:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_payload, ())


def test_checkpoint_with_a_code_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "hook": _CodePayload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_checkpoint_state(path)
    assert not _PAYLOAD_RAN


def test_malformed_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="malformed"):
        load_checkpoint_state(garbage)
    weights_only = tmp_path / "weights.pt"
    torch.save({"visual.proj": torch.zeros(2)}, weights_only)
    with pytest.raises(CheckpointError, match="not a crossmodal training checkpoint"):
        load_checkpoint_state(weights_only)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_state(tmp_path / "missing.pt")


def test_loop_keeps_the_last_k_checkpoints_and_a_latest_pointer(tmp_path: Path) -> None:
    config = _config(tmp_path, total_steps=5, checkpoint_every=2, keep_checkpoints=2)
    result = train(_tiny(), ContrastiveObjective(), [_batch(4)], config)
    directory = tmp_path / "checkpoints"
    assert sorted(p.name for p in directory.glob("*.pt")) == [
        "step-00000004.pt",
        "step-00000005.pt",
    ]
    assert (directory / "latest").read_text().strip() == "step-00000005.pt"
    assert latest_checkpoint(directory) == result.checkpoint == directory / "step-00000005.pt"


# --------------------------------------------------------------------------- the loop


class _KilledError(Exception):
    """Stands in for the process being killed."""


def _killable(factory: Any, kill_at_batch: int | None) -> Any:
    """A data factory whose run dies when it asks for batch number ``kill_at_batch``."""
    served = [0]

    def wrapped(generator: torch.Generator) -> Iterable[Batch]:
        def epoch() -> Iterator[Batch]:
            for batch in factory(generator):
                served[0] += 1
                if served[0] == kill_at_batch:
                    raise _KilledError
                yield batch

        return epoch()

    return wrapped


@pytest.mark.parametrize("accum_steps", [1, 2])
def test_resume_mid_epoch_is_bitwise_identical(tmp_path: Path, accum_steps: int) -> None:
    # 20 pairs in shuffled batches of 4: 5 batches per epoch, so step 6 is mid-epoch, and
    # with accum_steps=2 optimizer steps also straddle epoch boundaries.
    factory = build_loader_factory(_pairs(20), batch_size=4)
    objective = ContrastiveObjective()
    straight = _tiny()
    train(straight, objective, factory, _config(tmp_path / "a", accum_steps=accum_steps))

    config = _config(tmp_path / "b", accum_steps=accum_steps)
    kill_at = 8 * accum_steps + 1  # steps 7 and 8 are lost: the last checkpoint is step 6
    with pytest.raises(_KilledError):
        train(_tiny(), objective, _killable(factory, kill_at), config)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000006.pt"  # type: ignore[union-attr]
    resumed = _tiny(seed=123)  # different init: the weights must come from the checkpoint
    result = train(resumed, objective, factory, config, resume=True)

    assert result.steps == 10 and result.resumed_from is not None
    _assert_bitwise_equal(_state(resumed), _state(straight))
    rows_a = read_metrics(tmp_path / "a" / "metrics.csv")
    rows_b = read_metrics(tmp_path / "b" / "metrics.csv")
    assert [r["step"] for r in rows_b] == list(range(1, 11))
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]


def test_resume_can_extend_a_finished_run(tmp_path: Path) -> None:
    data = [_batch(4)]
    train(_tiny(), ContrastiveObjective(), data, _config(tmp_path, total_steps=4, min_lr=0.0))
    config = _config(tmp_path, total_steps=6, min_lr=0.0)
    result = train(_tiny(), ContrastiveObjective(), data, config, resume=True)
    assert result.steps == 6 and result.resumed_from is not None
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    # Steps 5 and 6 follow the new 6-step schedule, not the finished 4-step one (lr 0).
    schedule = WarmupCosine(warmup_steps=2, total_steps=6, min_ratio=0.0)
    assert [r["lr"] for r in rows[4:]] == pytest.approx(
        [1e-3 * schedule(k) for k in (4, 5)], rel=1e-6
    )


def test_non_finite_loss_stops_before_the_update(tmp_path: Path) -> None:
    model = _tiny()
    before = _state(model)
    bad = _batch(4)
    bad["pixels"][1, 0, 0, 0] = float("nan")
    config = _config(tmp_path, total_steps=3)
    with pytest.raises(NonFiniteLossError, match="step 1.*Lower the learning rate") as err:
        train(model, ContrastiveObjective(), [bad], config)
    assert err.value.step == 1
    _assert_bitwise_equal(_state(model), before)
    assert all(p.grad is None for p in model.parameters())
    assert latest_checkpoint(tmp_path / "checkpoints") is None


def test_loss_decreases_on_a_memorisable_dataset(tmp_path: Path) -> None:
    factory = build_loader_factory(_pairs(16), batch_size=8)
    config = _config(tmp_path, total_steps=30, warmup_steps=3, weight_decay=0.0, plot=True)
    result = train(_tiny(), ContrastiveObjective(), factory, config)
    rows = read_metrics(result.metrics_path)
    assert len(rows) == 30 and list(rows[0]) == list(METRIC_COLUMNS)
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.25 * first, (first, last)
    assert result.samples == 240 and result.epoch == 14
    assert result.curves_path is not None and result.curves_path.stat().st_size > 0


def test_bf16_autocast_runs_a_step(tmp_path: Path) -> None:
    config = _config(tmp_path, total_steps=1, precision="bf16", checkpoint_every=0)
    result = train(_tiny(), ContrastiveObjective(), [_batch(4)], config)
    assert math.isfinite(result.loss)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="accum_steps"):
        TrainConfig(total_steps=1, accum_steps=0)
    with pytest.raises(ConfigError, match="min_lr"):
        TrainConfig(total_steps=1, lr=1e-4, min_lr=1e-3)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(total_steps=1, precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exactly one of total_steps and epochs"):
        TrainConfig()
    with pytest.raises(ConfigError, match="unknown training config fields"):
        TrainConfig.from_dict({"total_steps": 1, "learning_rate": 1.0})
    config = TrainConfig(epochs=2, betas=(0.9, 0.95))
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_epochs_and_one_shot_iterators(tmp_path: Path) -> None:
    config = _config(tmp_path, total_steps=None, epochs=2, checkpoint_every=0)
    result = train(_tiny(), ContrastiveObjective(), [_batch(4), _batch(4, seed=1)], config)
    assert result.steps == 4 and result.epoch == 1
    with pytest.raises(ConfigError, match="one-shot iterator"):
        train(_tiny(), ContrastiveObjective(), iter([_batch(4)]), _config(tmp_path))
