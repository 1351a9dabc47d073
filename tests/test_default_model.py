"""The bundled default model, emoji-mini: shipped, loaded with no argument, and it works.

These tests use the real shipped weights (a few MB), not the tiny test model: what they check
is the file we ship.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from crossmodal.encoders import DEFAULT_MODEL, Encoder, load_encoder
from crossmodal.encoders.embedder import Embedder
from crossmodal.models.bundled import bundled_weights, list_bundled
from crossmodal.models.weights import CONFIG_METADATA_KEY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(device="cpu")


def test_default_model_is_the_bundled_emoji_mini() -> None:
    assert DEFAULT_MODEL == "native:emoji-mini"
    assert list_bundled() == ["emoji-mini"]
    path = bundled_weights("emoji-mini")
    assert path is not None and path.suffix == ".safetensors"
    assert path.stat().st_size <= 30 * 2**20  # the budget for shipped weights
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()[CONFIG_METADATA_KEY])
    assert config["text"]["tokenizer"] == "trained" and config["text"]["tokenizer_json"]
    assert bundled_weights("ViT-B-32") is None


def test_loads_with_no_argument_and_no_random_weights_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        enc = load_encoder(device="cpu")
    assert not [r for r in caplog.records if "random" in r.getMessage()]
    assert enc.dim == 256


def test_it_reads_the_example_shapes_in_both_languages(encoder: Encoder) -> None:
    images = [EXAMPLES / "red-circle.png", EXAMPLES / "blue-square.jpg"]
    vectors = Embedder(encoder).embed_images(images).vectors
    texts = Embedder(encoder).embed_texts(["red circle", "blue square", "红色圆", "蓝色方块"])
    sims = texts @ vectors.T  # (4 texts, 2 images)
    assert np.argmax(sims, axis=1).tolist() == [0, 1, 0, 1]


def test_cli_runs_on_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "e.npy"
    run = subprocess.run(
        [sys.executable, "-m", "crossmodal", "embed", str(EXAMPLES), "-t", "星星", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert np.load(out).shape == (5, 256) and "random" not in run.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "crossmodal", "models"], capture_output=True, text=True
    )
    assert "default model: native:emoji-mini" in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if line.startswith("emoji-mini"))
    assert row.rstrip().endswith("bundled")


@pytest.mark.timeout(300)
def test_the_wheel_ships_the_weights(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    wheel = next(tmp_path.glob("crossmodal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "crossmodal/assets/emoji-mini.safetensors" in names


def test_training_emoji_mini_starts_from_the_shipped_weights() -> None:
    """One spec names the bundled model everywhere: ``train -m emoji-mini`` fine-tunes it."""
    import torch
    from safetensors.torch import load_file

    from crossmodal.train.start import build_model

    path = bundled_weights("emoji-mini")
    assert path is not None
    shipped = load_file(str(path))
    model = build_model("emoji-mini")
    state = model.state_dict()
    assert shipped.keys() <= state.keys()
    assert all(torch.equal(state[k].to(shipped[k].dtype), shipped[k]) for k in shipped)


def test_random_emoji_mini_is_the_shipped_architecture_with_fresh_weights() -> None:
    import torch

    from crossmodal.errors import ConfigError
    from crossmodal.models.registry import get_model_config
    from crossmodal.models.weights import read_config
    from crossmodal.train.start import build_model

    path = bundled_weights("emoji-mini")
    assert path is not None
    shipped_config = read_config(path)
    fresh = build_model("emoji-mini", init="random")
    assert fresh.config == shipped_config  # architecture and trained tokenizer
    assert sum(p.numel() for p in fresh.parameters()) < 12_000_000  # 9.3 M, not 20.9 M
    loaded = build_model("emoji-mini")
    assert not torch.equal(fresh.visual.proj, loaded.visual.proj)
    # the registered JSON describes the shipped towers; only the tokenizer is the file's
    registered = get_model_config("emoji-mini")
    assert registered.vision == shipped_config.vision
    assert registered.embed_dim == shipped_config.embed_dim
    for field in ("width", "layers", "heads", "context_length"):
        assert getattr(registered.text, field) == getattr(shipped_config.text, field), field
    # CLIP's BPE on request (the OpenCLIP peer run); a registered name without weights refused
    assert build_model("emoji-mini", "clip-bpe", init="random").config == registered
    with pytest.raises(ConfigError, match="--init random"):
        build_model("test-tiny")
