"""Attention over a video's frames: the math, and the moments of a real video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal.cli.main import main
from crossmodal.encoders import load_encoder
from crossmodal.encoders.embedder import Embedder
from crossmodal.errors import InputError
from crossmodal.heads.timeline import attend_frames, model_scale, video_moments

pytest.importorskip("av")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_attention_over_frames_is_a_scaled_softmax_of_cosines() -> None:
    rng = np.random.default_rng(0)
    query, frames = _unit(rng.normal(size=8)), _unit(rng.normal(size=(6, 8)))
    cosines, weights = attend_frames(query, frames, scale=20.0)
    assert np.allclose(cosines, frames @ query, atol=1e-6)
    expected = np.exp(20 * cosines) / np.exp(20 * cosines).sum()
    assert np.allclose(weights, expected, atol=1e-6) and weights.sum() == pytest.approx(1.0)
    order = rng.permutation(6)  # frames in another order: the same weights, permuted
    assert np.allclose(attend_frames(query, frames[order], 20.0)[1], weights[order], atol=1e-6)
    # videos of any length: one frame gets all the weight
    assert attend_frames(query, frames[:1], 20.0)[1].tolist() == [1.0]
    with pytest.raises(InputError, match="frame vectors"):
        attend_frames(query, frames[:, :4])
    with pytest.raises(InputError, match="frame vectors"):
        attend_frames(query, np.zeros((0, 8)))


def test_the_moments_of_a_video_are_where_its_picture_is(tmp_path: Path) -> None:
    from tests.test_search_video import COLOURS, three_colours

    video = three_colours(tmp_path / "colours.mp4")  # red 0-1.5 s, green, blue 3-4.5 s
    encoder = load_encoder()
    [moments] = video_moments(encoder, video, ["blue"], every=0.5)
    assert moments.times.tolist() == pytest.approx([0.5 * i for i in range(9)], abs=0.01)
    assert moments.weights.sum() == pytest.approx(1.0, abs=1e-5)
    # with a blue picture as the query, the blue frames get the weight
    blue = Embedder(encoder).embed_images([Image.new("RGB", (64, 64), COLOURS["blue"])])
    cosines, weights = attend_frames(
        blue.vectors[0], _frame_vectors(encoder, video), model_scale(encoder)
    )
    times = moments.times
    assert weights[times >= 3.0].sum() > 0.9
    assert times[int(np.argmax(cosines))] >= 3.0


def _frame_vectors(encoder: object, video: Path) -> np.ndarray:
    from crossmodal.data.video import VideoSampling, sample_frames

    frames = [f.image for f in sample_frames(video, VideoSampling(every=0.5))]
    return Embedder(encoder).embed_images(frames).vectors  # type: ignore[arg-type]


def test_moments_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_search_video import three_colours

    video = three_colours(tmp_path / "colours.mp4")
    plot = tmp_path / "timeline.png"
    args = ["moments", str(video), "red", "blue sky", "--every", "1", "--top", "3"]
    assert main([*args, "--json", "--plot", str(plot)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[0] == "{"]
    assert [line["query"] for line in lines] == ["red", "blue sky"]
    for line in lines:
        assert len(line["moments"]) == 3
        weights = [m["weight"] for m in line["moments"]]
        assert weights == sorted(weights, reverse=True) and sum(weights) <= 1 + 1e-6
        assert all(m["time"] in (0.0, 1.0, 2.0, 3.0, 4.0) for m in line["moments"])
    assert Image.open(plot).size[0] > 0
    assert main(["moments", str(tmp_path / "missing.mp4"), "red"]) == 1
    assert "missing.mp4" in capsys.readouterr().err
