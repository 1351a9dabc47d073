"""How far a hit stands out: the ``relevance`` of search hits and the weak-match flag.

Raw cosine scores drift with the model, the query and the picture, so a hit's score alone
does not say whether it matches. Two references turn a score into a z-score:

* **text queries: the query bank** (image-side query-bank normalisation, as in QB-Norm,
  Bogolin et al. 2022). For each hit picture, the scores of a fixed bank of everyday texts
  (1,024 Emojibase tags per language, ``assets/query_bank.json``) give that picture's
  typical score and spread; the query's relevance is how many standard deviations it stands
  above them. It is a property of the query, the picture and the model only: adding other
  files to the collection does not change it, and it works for a collection of one picture.
  Pictures that score high against any text ("hubs") are discounted.
* **image and mixed queries: the collection.** The query's scores over a fixed sample of at
  most ``NULL_SAMPLE`` stored pictures give its typical score and spread. Below
  ``MIN_SAMPLE`` pictures that spread means nothing, and no hit is flagged weak.

``weak`` is ``relevance < WEAK_RELEVANCE`` (2.5) against the bank and
``relevance < WEAK_RELEVANCE_COLLECTION`` (2.5) against the collection.
``benchmarks/weak_match.py`` measures both references on captioned data; the README ("Scores
you can read") gives the numbers the thresholds were chosen from.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crossmodal.atomic import atomic_write
from crossmodal.text.language import query_language

if TYPE_CHECKING:
    from crossmodal.index.store import Store
    from crossmodal.index.sync import DerivedVectors

log = logging.getLogger(__name__)

__all__ = [
    "BANK_FILE",
    "MIN_SAMPLE",
    "QueryBank",
    "WEAK_RELEVANCE",
    "WEAK_RELEVANCE_COLLECTION",
    "bank_relevance",
    "bank_texts",
    "hit_relevance",
    "sample_relevance",
]

WEAK_RELEVANCE = 2.5  # text queries: hits less relevant than this against the bank are weak
WEAK_RELEVANCE_COLLECTION = 2.5  # image and mixed queries, against the collection
MIN_SAMPLE = 20  # fewer stored pictures: a collection spread is not judged
BANK_FILE = Path(__file__).resolve().parents[1] / "assets" / "query_bank.json"
BANK_LANGUAGES = ("en", "zh")
CACHE_NAME = "query-bank.{language}.npy"  # one file per language, made when first needed


@cache
def bank_texts(language: str) -> tuple[str, ...]:
    """The shipped bank's texts in ``language`` (``"en"`` or ``"zh"``)."""
    if language not in BANK_LANGUAGES:
        raise ValueError(f"no query bank for language {language!r}: {BANK_LANGUAGES}")
    return tuple(json.loads(BANK_FILE.read_text("utf-8"))[language])


def bank_relevance(
    scores: npt.NDArray[np.floating],
    pictures: npt.NDArray[np.floating],
    bank: npt.NDArray[np.floating],
) -> npt.NDArray[np.float64]:
    """``(score - mean) / std`` of each picture's scores against the bank's texts.

    ``scores`` (K,) are the query's scores for ``pictures`` (K, D); ``bank`` (B, D) the unit
    vectors of the bank's texts.
    """
    reference = np.asarray(pictures, np.float64) @ np.asarray(bank, np.float64).T  # (K, B)
    spread = np.maximum(reference.std(axis=1), 1e-6)
    relevance: npt.NDArray[np.float64] = (
        np.asarray(scores, np.float64) - reference.mean(axis=1)
    ) / spread
    return relevance


def sample_relevance(
    scores: npt.NDArray[np.floating], sample_scores: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """``(score - mean) / std`` of the query's scores over a sample of the collection."""
    sample = np.asarray(sample_scores, np.float64)
    spread = float(sample.std()) or 1.0
    return (np.asarray(scores, np.float64) - float(sample.mean())) / spread


def hit_relevance(
    vector: npt.NDArray[np.float32],
    pairs: Sequence[tuple[float, int]],
    texts: Sequence[str] | None,
    store: Store,
    collection: DerivedVectors,
    bank: Callable[[], QueryBank],
) -> tuple[dict[int, float], float]:
    """The relevance of each hit ``(score, vector id)``, and the weak-match threshold.

    With ``texts`` (a query of texts only) against ``bank()`` in their language, else against
    the ``collection``'s sample; the threshold is ``-inf`` (nothing flagged) when that
    sample is smaller than ``MIN_SAMPLE``. A vector removed from ``store`` meanwhile (by
    another process) is left out.
    """
    if not pairs:
        return {}, WEAK_RELEVANCE
    if texts:
        dim = len(vector)
        ids, pictures = store.vectors_by_id([i for _, i in pairs], dim)
        position = {int(i): n for n, i in enumerate(ids)}
        kept = [(s, i) for s, i in pairs if i in position]
        z = bank_relevance(
            np.array([s for s, _ in kept]),
            pictures[[position[i] for _, i in kept]],
            bank().vectors(query_language(texts)),
        )
        return {i: float(r) for (_, i), r in zip(kept, z, strict=True)}, WEAK_RELEVANCE
    sample = collection.null_sample(len(vector))
    z = sample_relevance(np.array([s for s, _ in pairs]), sample @ vector)
    threshold = WEAK_RELEVANCE_COLLECTION if len(sample) >= MIN_SAMPLE else -np.inf
    return {i: float(r) for (_, i), r in zip(pairs, z, strict=True)}, threshold


class QueryBank:
    """The bank's text vectors for one model, made when first needed and kept beside the index.

    ``embed`` turns texts into unit vectors; ``model`` names the model. Each language's
    vectors are saved in the index directory under a name that carries a digest of the model
    and the bank, so a file made by another model or from another bank is never used. An
    index directory that cannot be written keeps the vectors in memory only.
    """

    def __init__(
        self,
        embed: Callable[[list[str]], npt.NDArray[np.float32]],
        model: str,
        directory: Path | None,
    ) -> None:
        self._embed = embed
        self._key = hashlib.sha256(model.encode() + b"\0" + BANK_FILE.read_bytes()).hexdigest()
        self._directory = directory
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}

    def vectors(self, language: str) -> npt.NDArray[np.float32]:
        """The unit vectors (B, D) of the bank's texts in ``language``."""
        if language not in self._vectors:
            loaded = self._load(language)
            self._vectors[language] = self._make(language) if loaded is None else loaded
        return self._vectors[language]

    def path(self, language: str) -> Path | None:
        """Where ``language``'s vectors are kept (``None``: in memory only)."""
        if self._directory is None:
            return None
        return self._directory / CACHE_NAME.format(language=f"{language}.{self._key[:16]}")

    def _load(self, language: str) -> npt.NDArray[np.float32] | None:
        path = self.path(language)
        if path is None or not path.is_file():
            return None
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); making the query bank again", path, exc)
            return None
        if vectors.ndim != 2 or len(vectors) != len(bank_texts(language)):
            log.warning("%s: wrong shape %s; making the query bank again", path, vectors.shape)
            return None
        return np.asarray(vectors, dtype=np.float32)

    def _make(self, language: str) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self._embed(list(bank_texts(language))), dtype=np.float32)
        path = self.path(language)
        if path is not None:
            try:
                for stale in path.parent.glob(CACHE_NAME.format(language=f"{language}.*")):
                    stale.unlink(missing_ok=True)  # another model's or bank's
                atomic_write(path, lambda out: np.save(out, vectors, allow_pickle=False))
            except OSError as exc:  # a read-only index: keep it in memory
                log.warning("%s: cannot save the query bank (%s)", path, exc)
        return vectors
