"""The cleaning pass: every sample of a source through the rules, in order, and why each left.

    result = clean(open_source("photos.jsonl"), CleanConfig(min_similarity=0.2), encoder)
    result.counts     # {"kept": 940, "image_corrupt": 3, "duplicate_near": 41, ...}

Rules run in this order; a sample leaves at the first one it fails:

1. ``source``: the source itself could not read it (a manifest row whose file is missing);
2. ``image_corrupt``, ``image_bomb``, ``image_size``, ``image_aspect``
   (:mod:`~crossmodal.prep.cleaning.images`);
3. the caption rules (:mod:`~crossmodal.prep.cleaning.captions`), per caption: a sample that
   had captions and has none left leaves with its first caption's rule, and a sample with no
   caption at all leaves as ``caption_empty`` when the source has captions (a manifest row
   with an empty caption) unless ``require_captions=False``;
4. ``mismatch``: image-text agreement, per caption, cosine of the two embeddings below
   ``min_similarity`` or below the ``drop_percentile``-th percentile of every caption's score
   (the LAION recipe); the score is kept in the output;
5. ``duplicate_exact`` (same decoded pixels), then ``duplicate_near`` (image cosine at least
   ``near_duplicate``). The largest image of a group is kept, and the captions of the copies
   that leave are added to it.

Nothing here writes a file or changes the source: :mod:`~crossmodal.prep.cleaning.outputs`
writes the results. The run is deterministic: the same source, config and model give the
same result, whatever the number of worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from crossmodal.data.samples import DataSource, Sample
from crossmodal.encoders.base import Encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import ConfigError
from crossmodal.prep.cleaning.captions import CaptionRules, CaptionVerdict, check_caption
from crossmodal.prep.cleaning.duplicates import (
    exact_duplicate_groups,
    group_pairs,
    near_duplicate_pairs,
    pick_representatives,
)
from crossmodal.prep.cleaning.images import ImageRules, ImageVerdict, check_image

__all__ = ["RULES", "CleanConfig", "CleanItem", "CleanResult", "clean"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

RULES = (
    "source",
    "image_corrupt",
    "image_bomb",
    "image_size",
    "image_aspect",
    "caption_empty",
    "caption_length",
    "caption_non_text",
    "caption_language",
    "mismatch",
    "duplicate_exact",
    "duplicate_near",
)
"""Every rule, in the order they run."""


@dataclass(frozen=True)
class CleanConfig:
    """The rules and thresholds of one cleaning run."""

    images: ImageRules = field(default_factory=ImageRules)
    captions: CaptionRules = field(default_factory=CaptionRules)
    near_duplicate: float | None = 0.98  # image cosine for near duplicates; None: exact only
    min_similarity: float | None = None  # drop captions scoring below this cosine
    drop_percentile: float | None = None  # drop the lowest P% of caption scores (0-100)
    require_captions: bool | None = None  # refuse captionless images; None: if any has one
    batch_size: int = 64  # images per forward pass
    workers: int = 2  # threads decoding and checking images
    progress: bool = False  # a progress bar on stderr

    def __post_init__(self) -> None:
        for name in ("near_duplicate", "min_similarity"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a cosine in [-1, 1], not {value}")
        if self.drop_percentile is not None and not 0.0 <= self.drop_percentile < 100.0:
            raise ConfigError(f"drop_percentile must be in [0, 100), not {self.drop_percentile}")
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError("batch_size and workers must be at least 1")

    @property
    def needs_model(self) -> bool:
        """Whether a rule needs image or text embeddings."""
        return (
            self.near_duplicate is not None
            or self.min_similarity is not None
            or self.drop_percentile is not None
        )


@dataclass
class CleanItem:
    """One sample of the source and what cleaning made of it."""

    position: int  # order in the source
    source: str  # the sample's source string (path, "shard.tar:key", "manifest.csv:row 3")
    sample: Sample | None  # None for an entry the source itself skipped
    rule: str | None = None  # the rule it left by (see RULES), or None when kept
    reason: str = ""  # why, in words
    image: ImageVerdict | None = None
    captions: list[str] = field(default_factory=list)  # kept captions, repaired
    languages: list[str] = field(default_factory=list)  # one per kept caption
    scores: list[float] = field(default_factory=list)  # image-text cosine per kept caption
    dropped_captions: list[tuple[str, str, str]] = field(default_factory=list)  # (text, rule, why)
    mismatch_scores: list[float] = field(default_factory=list)  # cosine of captions cut as mismatch
    duplicate_of: int | None = None  # position of the kept item of its duplicate group
    merged_from: list[int] = field(default_factory=list)  # duplicates whose captions it took

    @property
    def kept(self) -> bool:
        """Whether the item survives cleaning."""
        return self.rule is None


@dataclass(frozen=True)
class CleanResult:
    """Every item, kept or not, and the thresholds that were applied."""

    items: list[CleanItem]  # in source order
    config: CleanConfig
    similarity_threshold: float | None  # the agreement cut applied (from the percentile too)
    dim: int | None  # embedding width, None when no model ran
    image_vectors: FloatArray | None = None  # (N, D), zero rows where an image was refused

    @property
    def kept(self) -> list[CleanItem]:
        """The items that survive, in source order."""
        return [item for item in self.items if item.kept]

    @property
    def counts(self) -> dict[str, int]:
        """``{"total", "kept", rule: n, ...}`` with every rule present (0 when unused)."""
        counts = {"total": len(self.items), "kept": 0} | dict.fromkeys(RULES, 0)
        for item in self.items:
            counts["kept" if item.rule is None else item.rule] += 1
        return counts

    @property
    def caption_counts(self) -> dict[str, int]:
        """Captions dropped per rule (on kept and dropped items alike)."""
        counts: dict[str, int] = {}
        for item in self.items:
            for _, rule, _ in item.dropped_captions:
                counts[rule] = counts.get(rule, 0) + 1
        return counts


def clean(source: DataSource, config: CleanConfig, encoder: Encoder | None = None) -> CleanResult:
    """Run every rule over ``source`` (see the module docstring).

    Raises:
        ConfigError: A rule needs embeddings and ``encoder`` is None.
    """
    if config.needs_model and encoder is None:
        raise ConfigError(
            "near-duplicate and image-text agreement rules need a model; pass an encoder, or "
            "turn them off (near_duplicate=None, no min_similarity or drop_percentile)"
        )
    items = [CleanItem(i, s.source, s) for i, s in enumerate(source)]
    skipped = [CleanItem(0, s.source, None, "source", s.reason) for s in source.skipped]
    for i, item in enumerate(skipped, start=len(items)):
        item.position = i
    items += skipped
    if config.require_captions is None:
        config = replace(
            config, require_captions=any(i.sample and i.sample.captions for i in items)
        )
    vectors = _check_and_embed(items, config, encoder)
    threshold = None
    if encoder is not None and vectors is not None:
        threshold = _apply_agreement(items, vectors, config, encoder)
    _apply_duplicates(items, vectors, config)
    dim = encoder.dim if encoder is not None else None
    return CleanResult(items, config, threshold, dim, vectors)


# ------------------------------------------------------------------ image and caption checks


def _check_and_embed(
    items: list[CleanItem], config: CleanConfig, encoder: Encoder | None
) -> FloatArray | None:
    """Image and caption checks on worker threads; image embeddings batch by batch."""
    todo = [item for item in items if item.sample is not None]
    vectors = np.zeros((len(items), encoder.dim), dtype=np.float32) if encoder else None
    bar = tqdm(total=len(todo), desc="clean", unit="image", disable=not config.progress)
    with bar, ThreadPoolExecutor(config.workers) as pool:
        for batch in _chunks(todo, config.batch_size):
            checked = list(pool.map(lambda it: _check_one(it, config, encoder), batch))
            ready = [(item, pixels) for item, pixels in zip(batch, checked, strict=True)]
            with_pixels = [(item, p) for item, p in ready if p is not None]
            if vectors is not None and encoder is not None and with_pixels:
                h_i = encoder.encode_pixels(np.stack([p for _, p in with_pixels]))
                for (item, _), row in zip(with_pixels, h_i, strict=True):
                    vectors[item.position] = row
            bar.update(len(batch))
    return vectors


def _check_one(item: CleanItem, config: CleanConfig, encoder: Encoder | None) -> FloatArray | None:
    """Check one sample's image and captions; its model input when it passes (and a model runs)."""
    assert item.sample is not None
    verdict = check_image(item.sample.image, config.images)
    item.image = replace(verdict, image=None)  # pixels are not kept past this point
    if verdict.rule is not None:
        item.rule, item.reason = verdict.rule, verdict.reason or ""
        return None
    rules = config.captions
    verdicts: list[CaptionVerdict] = [check_caption(c, rules) for c in item.sample.captions]
    for v in verdicts:
        if v.rule is None:
            item.captions.append(v.text)
            item.languages.append(v.language)
        else:
            item.dropped_captions.append((v.text, v.rule, v.reason or ""))
    if verdicts and not item.captions:
        first = verdicts[0]
        item.rule, item.reason = first.rule, f"no usable caption: {first.reason}"
        return None
    if not verdicts and config.require_captions:
        item.rule, item.reason = "caption_empty", "no caption (other images of the source have one)"
        return None
    if encoder is None or verdict.image is None:
        return None
    return encoder.preprocess(verdict.image)


def _chunks(items: Sequence[CleanItem], size: int) -> Iterator[list[CleanItem]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# ------------------------------------------------------------------ agreement


def _apply_agreement(
    items: list[CleanItem], vectors: FloatArray, config: CleanConfig, encoder: Encoder
) -> float | None:
    """Score every kept caption against its image; drop those under the cut. Returns the cut."""
    pairs = [(item, k) for item in items if item.kept for k in range(len(item.captions))]
    if not pairs:
        return config.min_similarity
    texts = [item.captions[k] for item, k in pairs]
    h_t = Embedder(encoder, EmbedConfig(batch_size=config.batch_size)).embed_texts(texts)
    h_i = vectors[[item.position for item, _ in pairs]]
    scores = np.einsum("nd,nd->n", h_i, h_t)  # (N,) cosine of each caption with its image
    per_item: dict[int, list[float]] = {}
    for (item, _), score in zip(pairs, scores.tolist(), strict=True):
        per_item.setdefault(item.position, []).append(float(score))
    for item in items:
        if item.position in per_item:
            item.scores = per_item[item.position]
    cut = _similarity_cut(scores, config)
    if cut is None:
        return None
    for item in items:
        if not item.kept or not item.scores:
            continue
        keep = [k for k, s in enumerate(item.scores) if s >= cut]
        for k, s in enumerate(item.scores):
            if s < cut:
                why = f"image-text similarity {s:.3f} is below {cut:.3f}"
                item.dropped_captions.append((item.captions[k], "mismatch", why))
                item.mismatch_scores.append(s)
        if not keep:
            best = max(item.scores)
            item.rule, item.reason = (
                "mismatch",
                (f"no caption agrees with the image: best similarity {best:.3f} < {cut:.3f}"),
            )
        item.captions = [item.captions[k] for k in keep]
        item.languages = [item.languages[k] for k in keep]
        item.scores = [item.scores[k] for k in keep]
    return cut


def _similarity_cut(scores: FloatArray, config: CleanConfig) -> float | None:
    cuts = []
    if config.min_similarity is not None:
        cuts.append(config.min_similarity)
    if config.drop_percentile is not None and len(scores):
        cuts.append(float(np.percentile(scores, config.drop_percentile, method="lower")))
    return max(cuts) if cuts else None


# ------------------------------------------------------------------ duplicates


def _apply_duplicates(
    items: list[CleanItem], vectors: FloatArray | None, config: CleanConfig
) -> None:
    """Exact, then near duplicates among the items still kept; captions merge into the keeper."""
    live = [item for item in items if item.kept and item.image is not None]
    sizes = [item.image.width * item.image.height if item.image else 0 for item in live]
    exact = exact_duplicate_groups([item.image.digest if item.image else "" for item in live])
    _drop_copies(live, exact, sizes, "duplicate_exact", "the same pixels as")
    if vectors is None or config.near_duplicate is None:
        return
    live = [item for item in live if item.kept]
    sizes = [item.image.width * item.image.height if item.image else 0 for item in live]
    x = vectors[[item.position for item in live]] if live else vectors[:0]
    pairs = near_duplicate_pairs(x, config.near_duplicate)
    _drop_copies(
        live,
        group_pairs(len(live), pairs),
        sizes,
        "duplicate_near",
        f"image similarity ≥ {config.near_duplicate} with",
    )


def _drop_copies(
    live: list[CleanItem], groups: list[list[int]], sizes: list[int], rule: str, why: str
) -> None:
    for copy, keep in sorted(pick_representatives(groups, sizes).items()):
        item, keeper = live[copy], live[keep]
        item.rule, item.reason = rule, f"{why} {keeper.source}"
        item.duplicate_of = keeper.position
        keeper.merged_from.append(item.position)
        for k, text in enumerate(item.captions):
            if text not in keeper.captions:
                keeper.captions.append(text)
                keeper.languages.append(item.languages[k])
                if item.scores:
                    keeper.scores.append(item.scores[k])
