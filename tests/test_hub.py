"""Hub loading, offline: the real huggingface_hub code path, served from a local cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal.encoders import load_encoder
from crossmodal.errors import CheckpointError
from crossmodal.models.registry import create_model
from crossmodal.models.weights import save_weights


def _seed_cache(cache: Path, repo: str, filename: str, source: Path) -> None:
    """Lay out a file as huggingface_hub caches a download of ``repo@main``."""
    commit = "0" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(source.read_bytes())


def test_hf_hub_weights_resolve_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    model = create_model("test-tiny")
    weights = save_weights(model, tmp_path / "tiny.safetensors")
    cache = tmp_path / "hub"
    _seed_cache(cache, "crossmodal-test/tiny", "open_clip_model.safetensors", weights)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    encoder = load_encoder("native:test-tiny@hf-hub:crossmodal-test/tiny", device="cpu")
    local = load_encoder(f"native:test-tiny@{weights}", device="cpu")
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(encoder.encode_pixels(pixels), local.encode_pixels(pixels))
    with pytest.raises(CheckpointError, match="could not fetch"):
        load_encoder("native:test-tiny@hf-hub:crossmodal-test/absent", device="cpu")
