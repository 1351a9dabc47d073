"""``crossmodal train`` / ``wise-ft`` end to end, and the training dataset on its own.

A tiny captioned dataset of coloured shapes (OpenCLIP's tab-separated ``filepath`` /
``title`` CSV) with one corrupt image and one missing file; everything runs on ``test-tiny``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from crossmodal.cli.main import build_parser, main
from crossmodal.cli.train import job_spec
from crossmodal.data.images import load_image
from crossmodal.data.sources import open_source
from crossmodal.encoders import load_encoder
from crossmodal.encoders.native import build_preprocess, build_tokenizer
from crossmodal.models.registry import create_model, get_model_config
from crossmodal.models.weights import save_weights
from crossmodal.train import train
from crossmodal.train.data_order import Batch, BatchFactory
from crossmodal.train.dataset import (
    CaptionPairDataset,
    TrainAugment,
    build_pair_loader_factory,
)
from crossmodal.train.job import build_job
from crossmodal.train.objective import build_objective

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 220),
    "gold": (230, 190, 0),
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 shapes (some with transparency), 2 captions each, a corrupt PNG and a missing file."""
    root = tmp_path_factory.mktemp("shapes")
    rows: list[tuple[str, str]] = []
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        for shape in ("circle", "square"):
            mode = "RGBA" if i % 2 else "RGB"
            image = Image.new(mode, (48 + 8 * i, 40), (255, 255, 255, 0)[: len(mode)])
            draw = ImageDraw.Draw(image)
            box = (8, 6, 36, 34)
            (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=rgb)
            name = f"{colour}-{shape}.png"
            image.save(root / name)
            rows += [(name, f"a {colour} {shape}"), (name, f"{shape}, {colour}")]
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    rows += [("broken.png", "a broken image"), ("missing.png", "a missing image")]
    path = root / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return path


def _args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "test-tiny",
        "--init",
        "random",
        "--data",
        str(manifest),
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _dataset(manifest: Path, seed: int = 0) -> CaptionPairDataset:
    config = get_model_config("test-tiny")
    source = open_source(manifest, on_missing="skip")
    return CaptionPairDataset(source, build_preprocess(config), build_tokenizer(config), seed=seed)


def test_train_cli_end_to_end(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = _args(manifest, out, "--steps", "6", "--eval-data", str(manifest))
    proc = subprocess.run(
        [sys.executable, "-m", "crossmodal.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "8 training images, 2 skipped (1 undecodable)" in proc.stdout
    assert "trained 6 steps" in proc.stdout
    for name in ("model.safetensors", "metrics.csv", "eval/results.json"):
        assert (out / name).is_file(), name
    assert list((out / "checkpoints").glob("step-*.pt"))
    encoder = load_encoder(f"native:@{out / 'model.safetensors'}", device="cpu")
    vectors = encoder.encode_pixels(np.zeros((1, 3, 32, 32), dtype=np.float32))
    assert vectors.shape == (1, 32)


class _InterruptedError(Exception):
    pass


def _interrupt_after(factory: BatchFactory, batches: int) -> BatchFactory:
    """Wrap a data factory so that fetching batch ``batches + 1`` of the run raises."""
    fetched = 0

    def wrapped(generator: torch.Generator) -> Iterable[Batch]:
        def epoch() -> Iterator[Batch]:
            nonlocal fetched
            for batch in factory(generator):
                if fetched == batches:
                    raise _InterruptedError
                fetched += 1
                yield batch

        return epoch()

    return wrapped


def test_resume_after_interruption_is_bitwise_equal(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(_args(manifest, straight, "--steps", "6")) == 0
    args = build_parser().parse_args(
        _args(manifest, stopped, "--steps", "6", "--checkpoint-every", "1")
    )
    assert isinstance(args, argparse.Namespace)
    job = build_job(job_spec(args))
    with pytest.raises(_InterruptedError):
        data = _interrupt_after(job.data, batches=3)  # dies fetching the 4th batch
        train(job.model, build_objective("contrastive"), data, job.config)
    resume = _args(manifest, stopped, "--steps", "6", "--checkpoint-every", "1", "--resume")
    assert max(p.name for p in (stopped / "checkpoints").glob("step-*.pt")) == "step-00000003.pt"
    capsys.readouterr()
    assert main(resume) == 0
    assert "resumed from" in capsys.readouterr().out
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(stopped / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wise_ft_alpha_zero_reproduces_zero_shot(tmp_path: Path) -> None:
    torch.manual_seed(1)
    zs = save_weights(create_model("test-tiny"), tmp_path / "zs.safetensors")
    torch.manual_seed(2)
    ft = save_weights(create_model("test-tiny"), tmp_path / "ft.safetensors")
    out = tmp_path / "mixed.safetensors"
    argv = ["wise-ft", "--zero-shot", str(zs), "--finetuned", str(ft), "--alpha", "0", "--out"]
    assert main([*argv, str(out)]) == 0
    a, b = load_file(str(zs)), load_file(str(out))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataset_is_deterministic(manifest: Path) -> None:
    def first_epoch(seed: int) -> list[Batch]:
        factory = build_pair_loader_factory(_dataset(manifest, seed), batch_size=4)
        return list(factory(torch.Generator().manual_seed(0)))

    a, b, c = first_epoch(0), first_epoch(0), first_epoch(1)
    assert len(a) == 2
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["pixels"], y["pixels"]) and torch.equal(x["ids"], y["ids"])
    assert not all(torch.equal(x["pixels"], z["pixels"]) for x, z in zip(a, c, strict=True))


def test_dataset_skips_and_counts(manifest: Path) -> None:
    dataset = _dataset(manifest)
    assert len(dataset) == 8
    assert dataset.undecodable == 1
    reasons = {Path(s.source.split(":")[0]).name: s.reason for s in dataset.skipped}
    assert "broken.png" in reasons and "train.csv" in reasons  # missing.png: a manifest row
    batch = dataset.batch([0, 1])
    assert batch["pixels"].shape == (2, 3, 32, 32) and batch["pixels"].dtype == torch.float32
    assert batch["ids"].shape == (2, 16) and batch["ids"].dtype == torch.int64


def test_cached_and_decoding_datasets_make_the_same_batches(manifest: Path) -> None:
    cached = _dataset(manifest)
    config = get_model_config("test-tiny")
    source = open_source(manifest, on_missing="skip")
    decoding = CaptionPairDataset(
        source, build_preprocess(config), build_tokenizer(config), cache=False
    )
    assert cached.cached and not decoding.cached
    a, b = cached.batch(range(8)), decoding.batch(range(8))
    assert torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["ids"], b["ids"])
    # off: the plain evaluation transform, value for value
    plain = CaptionPairDataset(
        open_source(manifest, on_missing="skip"),
        build_preprocess(config),
        build_tokenizer(config),
        TrainAugment.off(),
    )
    expected = build_preprocess(config)(load_image(plain.samples[3].image))
    assert torch.allclose(plain.batch([3])["pixels"][0], torch.from_numpy(expected), atol=1e-6)


def test_fresh_model_takes_a_trained_tokenizer(tmp_path: Path) -> None:
    from crossmodal.errors import ConfigError as _ConfigError
    from crossmodal.text.trained import train_tokenizer
    from crossmodal.train.start import build_model

    captions = ["a red circle", "a blue square", "一个红色的圆", "蓝色的方块", "red", "蓝色"] * 3
    tokenizer = train_tokenizer(captions, vocab_size=300, out_path=tmp_path / "tok.json")
    model = build_model("test-tiny", tmp_path / "tok.json", init="random")
    text = model.config.text
    assert text.tokenizer == "trained" and text.pool == "eos"
    assert text.vocab_size == tokenizer.vocab_size == model.text.token_embedding.num_embeddings
    assert text.eos_token_id == tokenizer.eos_token_id
    with pytest.raises(_ConfigError, match="fresh model"):
        build_model("native:test-tiny@/nonexistent.safetensors", tmp_path / "tok.json")
    with pytest.raises(_ConfigError, match="names weights"):
        build_model("native:test-tiny@/nonexistent.safetensors", init="random")


def test_same_seed_same_weights_other_seed_other_weights(manifest: Path, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(_args(manifest, tmp_path / name, "--steps", "2", "--seed", seed)) == 0
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not torch.equal(runs["a"]["visual.proj"], runs["c"]["visual.proj"])


def test_concept_sampler_visits_each_concept_once_an_epoch(tmp_path: Path) -> None:
    """Images that share their captions are one concept: one of them an epoch, never two."""
    from crossmodal.data.samples import Sample
    from crossmodal.errors import ConfigError as _ConfigError
    from crossmodal.train.data_order import GroupSampler

    samples = []
    for concept in range(6):  # concept c drawn in c % 3 + 1 styles
        for style in range(concept % 3 + 1):
            path = tmp_path / f"c{concept}-s{style}.png"
            Image.new("RGB", (32, 32), (40 * concept, 80 * style, 0)).save(path)
            samples.append(Sample(path, str(path), (f"concept {concept}", f"概念 {concept}")))
    config = get_model_config("test-tiny")
    dataset = CaptionPairDataset(samples, build_preprocess(config), build_tokenizer(config))
    groups = dataset.concepts()
    assert [len(g) for g in groups] == [1, 2, 3, 1, 2, 3]
    group_of = {i: g for g, members in enumerate(groups) for i in members}

    def epoch(seed: int) -> list[int]:
        return list(GroupSampler(groups, torch.Generator().manual_seed(seed)))

    first = epoch(0)
    assert sorted(group_of[i] for i in first) == list(range(6))  # each concept exactly once
    assert epoch(0) == first  # the order follows from the generator's state
    drawn = {i for seed in range(40) for i in epoch(seed)}
    assert drawn == set(range(len(samples)))  # every style of every concept gets its turn
    factory = build_pair_loader_factory(dataset, 3, sampler="concept")
    batches = list(factory(torch.Generator().manual_seed(1)))
    assert len(batches) == 2 and all(b["pixels"].shape[0] == 3 for b in batches)
    with pytest.raises(_ConfigError, match="concepts"):
        build_pair_loader_factory(dataset, 7, sampler="concept")  # 11 images, 6 concepts
