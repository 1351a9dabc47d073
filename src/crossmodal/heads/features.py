"""Frozen encoder features for the heads: pooled vectors and image patch tokens.

Heads trained on frozen encoders need each sample's features once, not once per epoch:
:func:`extract_features` runs a native :class:`~crossmodal.models.clip.CLIP` over images and
texts and keeps

* ``h_i`` (N, D) and ``h_t`` (N, D): the unit joint-space embeddings (what search uses);
* ``image_tokens`` (N, 1 + P, D): the final tokens of the image tower, class token first,
  mapped into the joint space by the tower's own projection (as MaskCLIP does). A patch
  token's cosine with a text vector then says how well that patch matches the text, which is
  what cross-modal attention over patches and its heat maps build on.

Features are plain tensors in a :class:`Features` (``save`` / ``load`` as safetensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from crossmodal.data.images import ImageInput, ImagePreprocess, load_image
from crossmodal.errors import InputError
from crossmodal.models.clip import CLIP
from crossmodal.train.augment import TrainAugment

__all__ = ["Features", "extract_features", "load_clip", "patch_tokens", "text_tokens"]


@dataclass(frozen=True)
class Features:
    """Per-sample frozen features, row-aligned."""

    h_i: Tensor  # (N, D) unit image embeddings
    h_t: Tensor  # (N, D) unit text embeddings
    image_tokens: Tensor  # (N, 1 + P, D) joint-space image tokens, class token first

    def __len__(self) -> int:
        return int(self.h_i.shape[0])

    def save(self, path: str | Path) -> None:
        """Write the tensors to a safetensors file."""
        from safetensors.torch import save_file

        save_file({"h_i": self.h_i, "h_t": self.h_t, "image_tokens": self.image_tokens}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> Features:
        """Read features written by :meth:`save` (safetensors: no code is unpickled)."""
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
            return cls(data["h_i"], data["h_t"], data["image_tokens"])
        except (OSError, KeyError, RuntimeError) as exc:
            raise InputError(f"{path}: not a features file ({exc}); extract them again") from exc


def load_clip(spec: str | None = None, device: str = "cpu") -> CLIP:
    """The native CLIP a model spec names (default: the embedded model), weights loaded."""
    from crossmodal.encoders import DEFAULT_MODEL
    from crossmodal.encoders.native import load_native
    from crossmodal.encoders.spec import parse_spec
    from crossmodal.errors import ConfigError

    parsed = parse_spec(spec or DEFAULT_MODEL)
    if parsed.backend != "native":
        raise ConfigError(
            f"heads read a native model's token features; {spec!r} is a {parsed.backend} model"
        )
    return load_native(parsed, device=device, precision="fp32").model


def patch_tokens(model: CLIP, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, D) unit image embeddings and (B, 1 + P, D) joint-space tokens of ``pixels``."""
    out = model.visual(pixels)
    tokens = out.tokens @ model.visual.proj  # the class token row equals out.embedding
    return nn.functional.normalize(out.embedding, dim=-1), tokens


def _augmented(
    squares: Tensor, augment: TrainAugment, preprocess: ImagePreprocess, seed: int, first: int
) -> Tensor:
    """uint8 squares (B, 3, S, S) → augmented, normalised pixels, seeded per image."""
    from crossmodal.data.images import BACKGROUND
    from crossmodal.train.augment import apply_batch, draw_params

    params = np.stack(
        [
            draw_params(augment, np.random.default_rng([seed, first + i]))
            for i in range(len(squares))
        ]
    )
    config = preprocess.config
    return apply_batch(
        squares,
        torch.from_numpy(params),
        preprocess.image_size,
        config.mean,
        config.std,
        BACKGROUND,
    )


@torch.inference_mode()
def text_tokens(
    model: CLIP, texts: Sequence[str], batch_size: int = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """Word tokens (N, T, width), their mask (N, T) and unit embeddings (N, D) of ``texts``."""
    from crossmodal.encoders.native import build_tokenizer

    tokenizer = build_tokenizer(model.config)
    tokens, masks, pooled = [], [], []
    for start in range(0, len(texts), batch_size):
        ids = torch.from_numpy(tokenizer(list(texts[start : start + batch_size])).ids)
        out = model.text(ids)
        tokens.append(out.tokens)
        masks.append(out.mask)
        pooled.append(nn.functional.normalize(out.embedding, dim=-1))
    return torch.cat(tokens), torch.cat(masks), torch.cat(pooled)


@torch.inference_mode()
def extract_features(
    model: CLIP,
    images: Sequence[ImageInput],
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = False,
    augment: TrainAugment | None = None,
    seed: int = 0,
) -> Features:
    """Embed ``images`` and ``texts`` (row-aligned) with a frozen ``model``.

    With ``augment`` the pictures are first put through the training augmentation
    (:mod:`crossmodal.train.augment`; image ``n`` draws from a generator seeded with
    ``(seed, n)``): features of pictures in styles the encoder has not memorised, for heads
    that must carry over to a new style.

    Raises:
        InputError: ``images`` and ``texts`` differ in length.
        ImageDecodeError: An image cannot be read (the message names it).
    """
    from crossmodal.encoders.native import build_preprocess, build_tokenizer

    if len(images) != len(texts):
        raise InputError(f"extract_features: {len(images)} images but {len(texts)} texts")
    model = model.eval()
    preprocess = build_preprocess(model.config)
    tokenizer = build_tokenizer(model.config)
    h_i, h_t, tokens = [], [], []

    def prepare(image: ImageInput) -> np.ndarray:
        picture = load_image(image, draft_size=preprocess.draft_size)
        return preprocess.square(picture) if augment is not None else preprocess(picture)

    bar = tqdm(total=len(images), desc="features", unit="img", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = torch.from_numpy(np.stack(list(pool.map(prepare, chunk))))
            if augment is not None:
                pixels = _augmented(pixels, augment, preprocess, seed, start)
            pooled, toks = patch_tokens(model, pixels)
            ids = torch.from_numpy(tokenizer(list(texts[start : start + batch_size])).ids)
            h_i.append(pooled)
            tokens.append(toks)
            h_t.append(model.encode_text(ids))
            bar.update(len(chunk))
    bar.close()
    return Features(torch.cat(h_i), torch.cat(h_t), torch.cat(tokens))
