"""The :class:`Encoder` protocol: what every backend offers, whatever runs it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from crossmodal.text.base import TokenBatch, Tokenizer

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class ImageTransform(Protocol):
    """Turns one RGB image into the model's input array."""

    image_size: int  # side of the square input, also the JPEG draft size to decode at

    def __call__(self, image: Image.Image) -> FloatArray:
        """(3, image_size, image_size) float32, normalised."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """A dual encoder behind one API: pixels and tokens in, float32 unit vectors out.

    Batching, decoding and progress live in :class:`crossmodal.encoders.embedder.Embedder`;
    an encoder only maps one prepared batch to embeddings.
    """

    spec: str  # the model spec it was loaded from
    dim: int  # dimension D of the joint embedding space
    preprocess: ImageTransform  # image → model input
    tokenizer: Tokenizer  # texts → padded ids

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """(B, 3, S, S) preprocessed images → (B, D) L2-normalised float32."""
        ...

    def encode_tokens(self, tokens: TokenBatch) -> FloatArray:
        """A token batch → (B, D) L2-normalised float32."""
        ...


def l2_normalize(x: FloatArray) -> FloatArray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: FloatArray = (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out
