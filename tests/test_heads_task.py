"""``crossmodal train --task classify`` end to end on the embedded model and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.errors import InputError
from crossmodal.heads.features import extract_features, load_clip, patch_tokens
from crossmodal.heads.task import evaluate_classifier, featurize, load_classifier, predict

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("circle", "square")


def _manifest(root: Path, name: str, n: int, seed: int) -> Path:
    """Shapes in colours; the label is the colour, the text names the shape."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir()
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        shape = SHAPES[int(rng.integers(2))]
        image = Image.new("RGB", (64, 64), "white")
        box = tuple(int(v) for v in (*rng.integers(2, 14, 2), *rng.integers(48, 62, 2)))
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
        image.save(folder / f"{i}.png")
        rows.append({"image": f"{name}/{i}.png", "tags": [shape, "drawing"], "colour": colour})
    rows.append({"image": f"{name}/missing.png", "tags": ["x"], "colour": "red"})  # skipped
    path = root / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_train_a_classifier_head_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = _manifest(tmp_path, "train", 48, 0), _manifest(tmp_path, "test", 24, 1)
    out = tmp_path / "run"
    args = ["train", "--task", "classify", "--data", str(train), "--eval-data", str(test)]
    args += ["--text-column", "tags", "--label-column", "colour", "--head", "gated"]
    args += ["--steps", "60", "--batch-size", "16", "--lr", "3e-3", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "48 labelled samples in 3 classes, 1 skipped" in printed
    report = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert report["samples"] == 24 and report["skipped"] == 1
    assert report["accuracy"] >= 0.9, report  # colour is easy for the embedded model
    assert set(report["per_class"]) == set(COLOURS)
    assert (out / "metrics.csv").is_file()
    # the saved head rebuilds and predicts what the report says
    head, meta = load_classifier(out / "head.safetensors")
    assert meta["kind"] == "gated" and meta["classes"] == sorted(COLOURS)
    model = load_clip()
    data = featurize(
        model,
        open_source(test, caption_column="tags", label_column="colour", on_missing="skip"),
        classes=meta["classes"],
    )
    assert evaluate_classifier(head, data).accuracy == pytest.approx(report["accuracy"])
    assert predict(head, data).shape == (24, 3)


def test_features_are_the_models_embeddings_and_patch_tokens() -> None:
    model = load_clip().eval()
    images = [Image.new("RGB", (64, 64), c) for c in COLOURS.values()]
    features = extract_features(model, images, ["red", "green", "blue"])
    size = model.config.vision.image_size // model.config.vision.patch_size
    assert features.image_tokens.shape == (3, 1 + size * size, model.config.embed_dim)
    # the class token row, normalised, is the image embedding
    cls = torch.nn.functional.normalize(features.image_tokens[:, 0], dim=-1)
    assert torch.allclose(cls, features.h_i, atol=1e-5)
    assert torch.allclose(features.h_i.norm(dim=-1), torch.ones(3), atol=1e-5)
    # patch_tokens is what the extraction ran: the same tokens for the same pixels
    from crossmodal.encoders.native import build_preprocess

    pixels = torch.from_numpy(np.stack([build_preprocess(model.config)(i) for i in images]))
    with torch.inference_mode():
        _, tokens = patch_tokens(model, pixels)
    assert torch.allclose(tokens, features.image_tokens, atol=1e-5)
    with pytest.raises(InputError, match="3 images but 2 texts"):
        extract_features(model, images, ["a", "b"])


def test_evaluation_data_without_known_labels_is_refused(tmp_path: Path) -> None:
    rows = [{"image": "a.png", "tags": "x", "colour": "purple"}]
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    source = open_source(path, caption_column="tags", label_column="colour")
    with pytest.raises(InputError, match="no sample has a usable label"):
        featurize(load_clip(), source, classes=("red", "blue"))


def test_features_of_augmented_pictures_are_seeded() -> None:
    from crossmodal.train.augment import TrainAugment

    model = load_clip()
    images = [Image.new("RGB", (64, 64), c) for c in COLOURS.values()]
    plain = extract_features(model, images, ["", "", ""])
    off = extract_features(model, images, ["", "", ""], augment=TrainAugment.off())
    assert torch.allclose(off.h_i, plain.h_i, atol=1e-4)  # the augmentation path, doing nothing
    styled = TrainAugment(zoom_out=(0.5, 0.6), grayscale=1.0)
    a = extract_features(model, images, ["", "", ""], augment=styled, seed=1)
    b = extract_features(model, images, ["", "", ""], augment=styled, seed=1)
    assert torch.equal(a.h_i, b.h_i)  # seeded
    assert not torch.allclose(a.h_i, plain.h_i, atol=1e-2)  # and it did change the pictures


def test_modality_dropout_reaches_the_head(tmp_path: Path) -> None:
    """``--modality-dropout`` trains another head than the same run without it (it was parsed
    and then dropped on the way to the library)."""
    from safetensors.torch import load_file

    train = _manifest(tmp_path, "train", 12, 0)
    weights = []
    for p in ("0", "0.5"):
        out = tmp_path / f"run{p}"
        args = ["train", "--task", "classify", "--data", str(train), "--text-column", "tags"]
        args += ["--label-column", "colour", "--steps", "3", "--batch-size", "12"]
        args += ["--modality-dropout", p, "--out", str(out), "--no-progress"]
        assert main(args) == 0
        weights.append(load_file(out / "head.safetensors"))
    assert not torch.equal(weights[0]["trunk.3.weight"], weights[1]["trunk.3.weight"])
