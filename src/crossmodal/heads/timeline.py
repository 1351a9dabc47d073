"""The moments of a video that match a text: cross-modal attention over its frames.

The frames ``i_1 … i_F`` of a video (sampled with :mod:`crossmodal.data.video`) are the set
the text attends over, with the design's bilinear attention and ``W = s·I``::

    α_j = exp(s · h_t(t)ᵀ h_i(i_j)) / Σ_k exp(s · h_t(t)ᵀ h_i(i_k))

``s`` is the model's logit scale when it has one (a native CLIP), else 100 (CLIP's). The
weights say *where in this video* the text is, relative to the rest of it; the cosines say
*how well* each frame matches in absolute terms. Both are returned, with the frame times, and
:func:`plot_timeline` draws them as a timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from crossmodal.encoders.base import Encoder
from crossmodal.errors import InputError
from crossmodal.heads.attention import BilinearAttention

__all__ = [
    "DEFAULT_SCALE",
    "Moments",
    "attend_frames",
    "model_scale",
    "plot_timeline",
    "video_moments",
]

DEFAULT_SCALE = 100.0  # CLIP's trained logit scale, for encoders that do not expose theirs

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Moments:
    """One text's attention over one video's frames."""

    query: str
    times: FloatArray  # (F,) seconds, increasing
    scores: FloatArray  # (F,) cosine of each frame with the text
    weights: FloatArray  # (F,) attention α, sums to 1

    def top(self, n: int = 5) -> list[tuple[float, float, float]]:
        """The ``n`` frames with the most weight: ``(time, weight, score)``, best first."""
        order = np.argsort(-self.weights, kind="stable")[:n]
        return [
            (float(self.times[i]), float(self.weights[i]), float(self.scores[i])) for i in order
        ]


def attend_frames(
    query: npt.ArrayLike, frames: npt.ArrayLike, scale: float = DEFAULT_SCALE
) -> tuple[FloatArray, FloatArray]:
    """Cosines (F,) and attention weights (F,) of a unit ``query`` (D,) over ``frames`` (F, D)."""
    q = torch.as_tensor(np.asarray(query, dtype=np.float32)).reshape(1, -1)
    f = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    if f.dim() != 2 or f.shape[1] != q.shape[1] or f.shape[0] == 0:
        raise InputError(
            f"frames: expected (F >= 1, {q.shape[1]}) frame vectors, got {tuple(f.shape)}"
        )
    attention = BilinearAttention(q.shape[1], q.shape[1], init_scale=scale)  # W = s·I
    with torch.no_grad():
        out = attention(q, f)
        cosines = (f @ q[0]).numpy()
    return cosines.astype(np.float32), out.weights[0].numpy().astype(np.float32)


def video_moments(
    encoder: Encoder,
    video: str | Path,
    queries: Sequence[str],
    *,
    every: float = 1.0,
    scale: float | None = None,
) -> list[Moments]:
    """Sample ``video`` every ``every`` seconds, embed the frames once, attend with each query.

    Raises:
        ImageDecodeError: The video cannot be read (the message names it).
        BackendUnavailableError: PyAV is not installed.
    """
    from crossmodal.data.video import VideoSampling, sample_frames
    from crossmodal.encoders.embedder import Embedder

    frames = list(sample_frames(video, VideoSampling(every=every)))
    embedder = Embedder(encoder)
    vectors = embedder.embed_images([f.image for f in frames]).vectors
    texts = embedder.embed_texts(list(queries))
    s = model_scale(encoder) if scale is None else scale
    times = np.asarray([f.time for f in frames], dtype=np.float32)
    out = []
    for query, text in zip(queries, texts, strict=True):
        cosines, weights = attend_frames(text, vectors, s)
        out.append(Moments(query=query, times=times, scores=cosines, weights=weights))
    return out


def model_scale(encoder: Encoder) -> float:
    """The encoder's own logit scale (native CLIP), else :data:`DEFAULT_SCALE`."""
    model = getattr(encoder, "model", None)
    logit_scale = getattr(model, "logit_scale", None)
    if isinstance(logit_scale, torch.Tensor):
        return float(logit_scale.detach().float().exp().clamp(max=100))
    return DEFAULT_SCALE


def plot_timeline(moments: Sequence[Moments] | Moments, path: str | Path) -> Path:
    """Attention weight (bars) and cosine (line) over time, one panel per query; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [moments] if isinstance(moments, Moments) else list(moments)
    fig, axes = plt.subplots(len(items), 1, figsize=(9, 2.4 * len(items)), squeeze=False)
    for ax, m in zip(axes[:, 0], items, strict=True):
        width = float(np.min(np.diff(m.times))) * 0.8 if len(m.times) > 1 else 0.5
        ax.bar(m.times, m.weights, width=width, color="#d9534f", label="attention α")
        ax.set_ylabel("α")
        ax.set_title(f"“{m.query}”")
        twin = ax.twinx()
        twin.plot(m.times, m.scores, color="#337ab7", marker=".", label="cosine")
        twin.set_ylabel("cosine")
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
