"""Hub loading, offline: the real huggingface_hub code path, served from a local cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crossmodal.encoders import load_encoder
from crossmodal.encoders.hub import hub_offline, hub_reachable
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
    with pytest.raises(CheckpointError, match="not in the local cache"):
        load_encoder("native:test-tiny@hf-hub:crossmodal-test/absent", device="cpu")


CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused


@pytest.fixture()
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh reachability probe (it is asked once per process), fresh again afterwards."""
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


def test_an_unreachable_hub_is_offline_at_once(
    probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    assert not hub_reachable() and hub_offline()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # a proxy may still reach it
    hub_reachable.cache_clear()
    assert hub_reachable() and not hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # asked for: offline whatever the network
    assert hub_offline()


def test_without_a_network_the_cli_says_so_in_one_line(probe: None, tmp_path: Path) -> None:
    """Before: five retries per file with two warning lines each, ~25 s, then the error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=CLOSED, HF_HOME=str(tmp_path / "hf"))
    for spec, fix in [
        ("native:test-tiny@hf-hub:crossmodal-test/absent", "looked for open_clip_model"),
        ("hf:crossmodal-test/absent", "(hf:DIR)"),
    ]:
        argv = ["embed", "-m", spec, "--text", "a cat", "-o", str(tmp_path / "e.npy")]
        run = subprocess.run(
            [sys.executable, "-m", "crossmodal", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and len(lines) == 1, run.stderr
        assert "cannot be reached and it is not in the local cache" in lines[0] and fix in lines[0]
        assert not (tmp_path / "e.npy").exists()


def test_an_openclip_tag_loads_from_the_cache_offline(
    probe: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_clip = pytest.importorskip("open_clip")
    from crossmodal.encoders.openclip import cached_pretrained

    cache = tmp_path / "hub"
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    hub = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].strip("/")
    with pytest.raises(CheckpointError, match=r"local copy \('openclip:ViT-B-32@FILE'\)"):
        cached_pretrained(open_clip, "ViT-B-32", "openai")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    _seed_cache(cache, hub, "open_clip_pytorch_model.bin", weights)
    found = Path(cached_pretrained(open_clip, "ViT-B-32", "openai"))
    assert found.read_bytes() == b"weights" and found.is_relative_to(cache)
