"""Contrastive training with a teacher distilled into the text tower (``--distill-teacher``,
``--distill-vocab``), on ``test-tiny`` with a tiny sentence-transformers teacher built here."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from crossmodal.cli.main import main
from crossmodal.models.registry import create_model, get_model_config
from crossmodal.train.dataset import caption_teacher_rows
from crossmodal.train.distill import DistilledCLIP, DistillObjective
from tests.planted import shape_image

pytest.importorskip("sentence_transformers")

ZH = {"red": "红色", "blue": "蓝色", "circle": "圆形", "square": "方形"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distill")
    rows = []
    for colour in ("red", "blue"):
        for shape in ("circle", "square"):
            path = root / f"{colour}-{shape}.png"
            shape_image(colour, shape).save(path)
            captions = [f"a {colour} {shape}", f"{ZH[colour]}{ZH[shape]}", shape]
            rows.append({"image": path.name, "caption": captions})
    manifest = root / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_teacher import save_tiny_teacher

    words = ["a", "red", "blue", "circle", "square"]
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), words)


def test_a_caption_in_another_language_is_taught_by_the_english_one() -> None:
    rows = {"a red circle": 0, "circle": 1}
    got = caption_teacher_rows(["红色圆形", "a red circle", "circle", "红色"], rows)
    assert got.tolist() == [0, 0, 1, 0]
    assert caption_teacher_rows(["红色"], rows).tolist() == [-1]  # no English caption


def test_distill_objective_pulls_the_projection_to_the_teacher() -> None:
    torch.manual_seed(0)
    model = DistilledCLIP(create_model(get_model_config("test-tiny")), teacher_dim=8)
    table = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    objective = DistillObjective(table, weight=1.0)
    batch = {
        "pixels": torch.randn(3, 3, 32, 32),
        "ids": torch.randint(1, 100, (3, 16)),
        "teacher": torch.tensor([0, 2, -1]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = objective.training_step(model, batch).metrics["distill"]
    for _ in range(15):
        optimizer.zero_grad()
        objective.backward_step(model, [batch])
        optimizer.step()
    last = objective.training_step(model, batch).metrics["distill"]
    assert first > 0.5 and last < first / 2
    with pytest.raises(Exception, match="no 'teacher' rows"):
        objective.training_step(model, {k: v for k, v in batch.items() if k != "teacher"})


def test_train_with_a_teacher_end_to_end(data: Path, teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    vocab = tmp_path / "vocab.jsonl"
    rows = [{"caption": ["red", "红色"]}, {"caption": ["blue square", "蓝色方形"]}]
    vocab.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["train", "-m", "test-tiny", "--init", "random", "-d", str(data), "-o", str(out)]
    extra = ["--steps", "40", "--batch-size", "4", "--lr", "3e-3", "--no-progress"]
    taught = ["--distill-teacher", str(teacher), "--distill-vocab", str(vocab)]
    assert main([*argv, *extra, *taught, "--distill-vocab-batch", "3"]) == 0
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    distill = [float(r["distill"]) for r in rows]
    assert distill[-1] < distill[0]  # the text tower learns the teacher's geometry
    saved = load_file(out / "model.safetensors")
    assert not any(k.startswith(("proj.", "clip.")) for k in saved)  # the CLIP alone
    cache = np.load(out / "teacher.npz")
    assert sorted(cache["texts"].tolist()) == sorted(
        {f"a {c} {s}" for c in ("red", "blue") for s in ("circle", "square")}
        | {"circle", "square", "red", "blue square"}  # the vocabulary's teachers too
    )
    # a second run reads the cached vectors: the teacher's folder is not needed
    again = tmp_path / "again"
    again.mkdir()
    (again / "teacher.npz").write_bytes((out / "teacher.npz").read_bytes())
    away = shutil.move(teacher, tmp_path / "moved")
    try:
        argv2 = [*argv[:-2], "-o", str(again), *extra, "--steps", "2"]
        assert main([*argv2, *taught]) == 0
    finally:
        shutil.move(away, teacher)
