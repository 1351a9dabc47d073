"""Batched, no-grad embedding of images and texts into float32 unit vectors.

The embedder owns everything around an :class:`Encoder`: decoding files (JPEG draft mode,
EXIF orientation, alpha composited onto one background), preprocessing on a thread pool while
the model runs the previous batch, batching, progress, and what to do with a bad file.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Never

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from crossmodal.data.images import ImageInput, load_image
from crossmodal.encoders.base import Encoder, FloatArray
from crossmodal.errors import ConfigError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig:
    """How the embedder batches and reports."""

    batch_size: int = 32  # items per forward pass
    workers: int = 2  # threads decoding and preprocessing images (PIL releases the GIL)
    prefetch: int = 2  # batches prepared ahead of the model
    progress: bool = False  # draw a tqdm progress bar on stderr
    on_error: Literal["raise", "skip"] = "raise"  # a bad image: stop, or skip and record it
    draft: bool = True  # let JPEG decoding downscale by 2^k towards the model's input size

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1 or self.prefetch < 1:
            raise ConfigError("batch_size, workers and prefetch must be at least 1")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}")


@dataclass(frozen=True)
class ImageEmbeddings:
    """Embeddings of the images that decoded, and a record of those that did not."""

    vectors: FloatArray  # (N_ok, D) unit vectors, in input order
    indices: npt.NDArray[np.int64]  # (N_ok,) position in the input of each row of vectors
    failures: list[tuple[int, str]] = field(default_factory=list)  # (input position, reason)


class Embedder:
    """Embeds many images or texts with one encoder."""

    def __init__(self, encoder: Encoder, config: EmbedConfig | None = None) -> None:
        self.encoder = encoder
        self.config = config or EmbedConfig()

    # ------------------------------------------------------------------ texts

    def embed_texts(self, texts: Sequence[str], desc: str = "texts") -> FloatArray:
        """(N, D) unit vectors for ``texts`` (an empty list gives shape (0, D))."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text #{i} is {type(text).__name__}, not str")
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        bs = self.config.batch_size
        with self._bar(len(texts), desc) as bar:
            for start in range(0, len(texts), bs):
                chunk = texts[start : start + bs]
                out[start : start + len(chunk)] = self.encoder.encode_tokens(
                    self.encoder.tokenizer(chunk)
                )
                bar.update(len(chunk))
        return out

    # ------------------------------------------------------------------ images

    def embed_images(self, sources: Sequence[ImageInput], desc: str = "images") -> ImageEmbeddings:
        """Embed images given as paths, PIL images or arrays.

        With ``on_error='raise'`` the first undecodable file raises
        :class:`~crossmodal.errors.ImageDecodeError` naming it; with ``'skip'`` it is left out
        of ``vectors`` and listed in ``failures``.
        """
        vectors: list[FloatArray] = []
        indices: list[int] = []
        failures: list[tuple[int, str]] = []
        with self._bar(len(sources), desc) as bar:
            for batch_idx, pixels, batch_failures in self._prepared_batches(sources):
                failures.extend(batch_failures)
                if batch_idx:
                    vectors.append(self.encoder.encode_pixels(pixels))
                    indices.extend(batch_idx)
                bar.update(len(batch_idx) + len(batch_failures))
        for index, reason in failures:
            log.warning("skipped image #%d: %s", index, reason)
        return ImageEmbeddings(
            vectors=(
                np.concatenate(vectors)
                if vectors
                else np.empty((0, self.encoder.dim), dtype=np.float32)
            ),
            indices=np.asarray(indices, dtype=np.int64),
            failures=failures,
        )

    def _prepare_one(self, source: ImageInput) -> FloatArray | str:
        """Decode and preprocess one image; a bad one returns the reason (or raises)."""
        transform = self.encoder.preprocess
        draft = transform.image_size if self.config.draft else None
        try:
            return transform(load_image(source, draft_size=draft))
        except InputError as exc:
            if self.config.on_error == "raise":
                raise
            return str(exc)

    def _prepared_batches(
        self, sources: Sequence[ImageInput]
    ) -> Iterator[tuple[list[int], FloatArray, list[tuple[int, str]]]]:
        """Batches decoded on worker threads, ``prefetch`` batches ahead of the model.

        Each image is its own task, so one batch of big JPEGs spreads over every worker.
        """
        bs = self.config.batch_size
        starts = iter(range(0, len(sources), bs))
        with ThreadPoolExecutor(self.config.workers) as pool:
            pending: deque[tuple[int, list[Future[FloatArray | str]]]] = deque()

            def submit_next() -> None:
                start = next(starts, None)
                if start is not None:
                    chunk = sources[start : start + bs]
                    pending.append((start, [pool.submit(self._prepare_one, s) for s in chunk]))

            for _ in range(self.config.prefetch):
                submit_next()
            while pending:
                start, futures = pending.popleft()
                ok: list[int] = []
                arrays: list[FloatArray] = []
                failures: list[tuple[int, str]] = []
                for offset, future in enumerate(futures):
                    result = future.result()
                    if isinstance(result, str):
                        failures.append((start + offset, result))
                    else:
                        ok.append(start + offset)
                        arrays.append(result)
                submit_next()
                pixels = np.stack(arrays) if arrays else np.empty((0,), dtype=np.float32)
                yield ok, pixels, failures

    def _bar(self, total: int, desc: str) -> tqdm[Never]:
        return tqdm(total=total, desc=desc, unit="item", disable=not self.config.progress)
