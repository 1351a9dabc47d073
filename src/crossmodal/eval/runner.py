"""Evaluation runs: a model and a dataset in, a typed result out.

:func:`run_zeroshot` classifies the images of a labelled dataset against prompt-template class
embeddings; :func:`run_retrieval` ranks images for captions and captions for images. Both read
the source once, in chunks, so a large WebDataset never sits in memory, and both carry every
input they could not use into the result's ``skipped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import numpy as np
from tqdm import tqdm

from crossmodal.data.sources import DataSource, Sample
from crossmodal.encoders.base import Encoder, FloatArray
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import ConfigError, InputError
from crossmodal.eval.classification import IntArray
from crossmodal.eval.metrics import (
    RetrievalReport,
    classification_report,
    pairs_from_image_index,
    retrieval_metrics,
    top_k_accuracy,
)
from crossmodal.eval.results import RetrievalExample, RetrievalResult, Skipped, ZeroShotResult
from crossmodal.eval.zeroshot import (
    TEMPLATES,
    build_classifier,
    check_templates,
    hierarchical_scores,
    predict,
)

__all__ = ["EvalConfig", "run_retrieval", "run_zeroshot"]

log = logging.getLogger(__name__)

_CHUNK_BATCHES = 16  # batches of images read from the source and embedded at a time
_TOP_RETRIEVED = 5  # items shown for each worst-ranked query


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation run embeds, prompts and reports."""

    batch_size: int = 32  # images or texts per forward pass
    workers: int = 2  # threads decoding and preprocessing images
    language: Literal["en", "zh"] = "en"  # which built-in templates zero-shot uses
    templates: tuple[str, ...] | None = None  # zero-shot prompts overriding TEMPLATES[language]
    ks: tuple[int, ...] = (1, 5, 10)  # k of retrieval recall@k; zero-shot top-k adds 1 and 5
    worst_n: int = 12  # worst-ranked retrieval queries kept per direction, for the report
    progress: bool = False  # draw progress bars on stderr while embedding
    on_error: Literal["skip", "raise"] = "skip"  # an undecodable image: record it, or stop

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError("batch_size and workers must be at least 1")
        if self.language not in TEMPLATES:
            raise ConfigError(
                f"language must be one of {', '.join(sorted(TEMPLATES))}, not {self.language!r}"
            )
        if self.templates is not None:
            check_templates(self.templates)
        if not self.ks or any(isinstance(k, bool) or k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers, e.g. (1, 5, 10); got {self.ks}")
        if self.worst_n < 0:
            raise ConfigError(f"worst_n must be at least 0, got {self.worst_n}")
        if self.on_error not in ("skip", "raise"):
            raise ConfigError(f"on_error must be 'skip' or 'raise', not {self.on_error!r}")

    def embed_config(self, progress: bool) -> EmbedConfig:
        """The embedder settings for this run."""
        return EmbedConfig(
            batch_size=self.batch_size,
            workers=self.workers,
            progress=progress,
            on_error=self.on_error,
        )


@dataclass(frozen=True)
class _Item:
    """What a run keeps of a sample once its image is embedded (the pixels are let go)."""

    source: str  # Sample.source
    captions: tuple[str, ...]  # Sample.captions
    label: str | None  # Sample.label


@dataclass(frozen=True)
class _Embedded:
    """The images of a source that could be used, embedded, and those that could not."""

    vectors: FloatArray  # (N, D) unit vectors, one per item
    items: list[_Item]  # (N,) the samples behind the vectors, in source order
    skipped: list[Skipped]  # samples left out by the run (unusable or undecodable)


def run_zeroshot(
    encoder: Encoder,
    source: DataSource,
    config: EvalConfig | None = None,
    model_name: str | None = None,
    *,
    class_names: Mapping[str, str] | None = None,
    subclasses: Mapping[str, Sequence[str]] | None = None,
) -> ZeroShotResult:
    """Zero-shot classification of every labelled image of ``source``.

    The classes are ``source.class_names`` (class folders, the sorted manifest labels) or,
    for a source that cannot tell in advance, the sorted labels of the images evaluated.

    Args:
        encoder: The model.
        source: A labelled dataset; unlabelled samples are skipped and recorded.
        config: Run settings (default :class:`EvalConfig`).
        model_name: The name reported (default ``encoder.spec``).
        class_names: Optional display names by label (``{"n01440764": "tench"}``) used in the
            prompts and the report; labels not in it keep their own name.
        subclasses: Optional member names by label (``{"food & drink": ["fruit", "banana"]}``):
            the images are classified by :func:`hierarchical_scores` (each class's own name
            counts as one of its members) and the plain top-k is kept beside.

    Raises:
        InputError: The dataset has no labels or no usable image, the display names are
            not unique, or ``subclasses`` names none of the dataset's labels.
        ImageDecodeError: A bad image, with ``on_error='raise'``.
    """
    config = config or EvalConfig()
    start = time.perf_counter()
    if source.class_names == ():
        raise InputError(
            f"{source.name}: has no labels; zero-shot classification needs one per image "
            "(class sub-folders, a 'label' column, or a .cls / .json 'label' member)"
        )
    embedded = _embed_source(encoder, source, config, _lacks_label)
    labels = _labels(source, embedded.items)
    index = {label: c for c, label in enumerate(labels)}
    names = tuple((class_names or {}).get(label, label) for label in labels)
    templates = config.templates or TEMPLATES[config.language]
    text_embedder = Embedder(encoder, config.embed_config(config.progress))
    scores = predict(embedded.vectors, build_classifier(text_embedder, names, templates))
    ks = sorted({1, 5, *config.ks})
    plain_top_k: dict[int, float] | None = None
    n_subclasses = 0
    y_true = np.asarray([index[str(i.label)] for i in embedded.items], dtype=np.int64)
    if subclasses is not None:
        plain_top_k = top_k_accuracy(scores, y_true, ks)
        sub_names, owner = _subclass_table(labels, names, subclasses)
        sub_scores = predict(
            embedded.vectors, build_classifier(text_embedder, sub_names, templates)
        )
        scores = hierarchical_scores(scores, sub_scores, owner)
        n_subclasses = len(sub_names)
    # Ties go to the higher class index, the rule top_k_accuracy follows, so acc1 == accuracy.
    y_pred = (scores.shape[1] - 1 - np.argmax(scores[:, ::-1], axis=1)).astype(np.int64)
    report = classification_report(y_true, y_pred, len(labels), names)
    log.info("zero-shot %s: %d images, accuracy %.4f", source.name, len(y_true), report.accuracy)
    return ZeroShotResult(
        model=model_name or encoder.spec,
        dataset=source.name,
        language=config.language,
        templates=tuple(templates),
        report=report,
        top_k=top_k_accuracy(scores, y_true, ks),
        plain_top_k=plain_top_k,
        n_subclasses=n_subclasses,
        y_true=y_true,
        y_pred=y_pred,
        images=tuple(i.source for i in embedded.items),
        skipped=(*source.skipped, *embedded.skipped),
        seconds=time.perf_counter() - start,
    )


def run_retrieval(
    encoder: Encoder,
    source: DataSource,
    config: EvalConfig | None = None,
    model_name: str | None = None,
) -> RetrievalResult:
    """Text-to-image and image-to-text retrieval over the captioned images of ``source``.

    Every caption is a text query whose one positive is its image; every image is a query
    whose positives are its captions. The ``worst_n`` worst-ranked queries of each direction
    are kept with their top-5 retrieved items (scored for those queries only).

    Args:
        encoder: The model.
        source: A captioned dataset; images without a caption are skipped and recorded.
        config: Run settings (default :class:`EvalConfig`).
        model_name: The name reported (default ``encoder.spec``).

    Raises:
        InputError: No image with a caption could be used.
        ImageDecodeError: A bad image, with ``on_error='raise'``.
    """
    config = config or EvalConfig()
    start = time.perf_counter()
    embedded = _embed_source(encoder, source, config, _lacks_caption)
    texts = [caption for item in embedded.items for caption in item.captions]
    text_image = np.repeat(  # (Nt,) the image of each caption
        np.arange(len(embedded.items), dtype=np.int64),
        [len(item.captions) for item in embedded.items],
    )
    embedder = Embedder(encoder, config.embed_config(config.progress))
    text_emb = embedder.embed_texts(texts, desc="captions")
    report = retrieval_metrics(
        text_emb, embedded.vectors, pairs_from_image_index(text_image), ks=config.ks
    )
    worst = _worst_examples(
        text_emb, embedded.vectors, texts, text_image, embedded.items, report, config.worst_n
    )
    log.info("retrieval %s: %d texts, %d images", source.name, len(texts), len(embedded.items))
    return RetrievalResult(
        model=model_name or encoder.spec,
        dataset=source.name,
        report=report,
        n_texts=len(texts),
        n_images=len(embedded.items),
        worst=worst,
        skipped=(*source.skipped, *embedded.skipped),
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------------------ embedding


def _subclass_table(
    labels: Sequence[str], names: Sequence[str], subclasses: Mapping[str, Sequence[str]]
) -> tuple[list[str], IntArray]:
    """Every subclass name and the index of its class: each class's own name first, then its
    members (a name listed twice for one class counts once). A shared hierarchy may name
    classes a split lacks (logged); one that names none of them is the wrong file."""
    unknown = sorted(set(subclasses) - set(labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        if len(unknown) == len(subclasses):
            raise InputError(
                f"subclasses name none of the dataset's labels (they name {shown}); its labels "
                f"are {', '.join(repr(x) for x in labels[:8])}{' …' if len(labels) > 8 else ''}"
            )
        log.warning(
            "subclasses of %d label(s) the dataset lacks are unused: %s", len(unknown), shown
        )
    sub_names: list[str] = []
    owner: list[int] = []
    for c, (label, name) in enumerate(zip(labels, names, strict=True)):
        members = [m for m in subclasses.get(label, ()) if m.strip()]
        for member in dict.fromkeys([name, *members]):
            sub_names.append(member)
            owner.append(c)
    return sub_names, np.asarray(owner, dtype=np.int64)


def _labels(source: DataSource, items: list[_Item]) -> tuple[str, ...]:
    """The classes: the source's own list, else the sorted labels of the evaluated images."""
    labels = source.class_names or tuple(sorted({i.label for i in items if i.label}))
    unknown = [i.label for i in items if i.label not in labels]
    if unknown:
        raise InputError(f"{source.name}: label {unknown[0]!r} is not among {labels}")
    return labels


def _lacks_label(sample: Sample) -> str | None:
    return None if sample.label is not None else "no label"


def _lacks_caption(sample: Sample) -> str | None:
    return None if sample.captions else "no caption"


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(samples)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _embed_source(
    encoder: Encoder,
    source: DataSource,
    config: EvalConfig,
    unusable: Callable[[Sample], str | None],
) -> _Embedded:
    """Embed the usable images of ``source`` a chunk at a time; record the rest.

    ``unusable`` gives the reason a sample cannot serve the task (or None); such samples are
    recorded without being decoded. Only one chunk of samples is held at a time.
    """
    embedder = Embedder(encoder, config.embed_config(progress=False))
    vectors: list[FloatArray] = []
    items: list[_Item] = []
    skipped: list[Skipped] = []
    total = len(source) if isinstance(source, Sized) else None
    with tqdm(total=total, desc="images", unit="image", disable=not config.progress) as bar:
        for chunk in _chunks(source, config.batch_size * _CHUNK_BATCHES):
            usable: list[Sample] = []
            for sample in chunk:
                reason = unusable(sample)
                if reason is None:
                    usable.append(sample)
                else:
                    skipped.append(Skipped(sample.source, reason))
            result = embedder.embed_images([s.image for s in usable])
            vectors.append(result.vectors)
            items.extend(
                _Item(usable[i].source, usable[i].captions, usable[i].label) for i in result.indices
            )
            skipped.extend(Skipped(usable[i].source, reason) for i, reason in result.failures)
            bar.update(len(chunk))
    if not items:
        first = f"; first: {skipped[0].source}: {skipped[0].reason}" if skipped else ""
        raise InputError(
            f"{source.name}: no image could be evaluated ({len(skipped)} skipped{first})"
        )
    return _Embedded(np.concatenate(vectors), items, skipped)


# ------------------------------------------------------------------------------ worst queries


def _worst(ranks: IntArray, n: int) -> IntArray:
    """Indices of the ``n`` highest ranks, worst first (equal ranks: earlier query first)."""
    return np.argsort(-ranks, kind="stable")[:n]


def _top(queries: FloatArray, gallery: FloatArray) -> IntArray:
    """``(n, 5)`` gallery indices of each query's highest scores, best first."""
    sims = queries @ gallery.T  # (n, G)
    return np.argsort(-sims, axis=1, kind="stable")[:, :_TOP_RETRIEVED]


def _worst_examples(
    text_emb: FloatArray,
    image_emb: FloatArray,
    texts: list[str],
    text_image: IntArray,
    items: list[_Item],
    report: RetrievalReport,
    n: int,
) -> tuple[RetrievalExample, ...]:
    """The ``n`` worst-ranked queries of each direction, with what came back instead."""
    sources = [item.source for item in items]
    out: list[RetrievalExample] = []
    t_worst = _worst(report.text_to_image_ranks, n)
    for q, top in zip(t_worst, _top(text_emb[t_worst], image_emb), strict=True):
        out.append(
            RetrievalExample(
                direction="text_to_image",
                query=texts[q],
                rank=int(report.text_to_image_ranks[q]),
                positives=(sources[text_image[q]],),
                retrieved=tuple(sources[i] for i in top),
            )
        )
    i_worst = _worst(report.image_to_text_ranks, n)
    for q, top in zip(i_worst, _top(image_emb[i_worst], text_emb), strict=True):
        out.append(
            RetrievalExample(
                direction="image_to_text",
                query=sources[q],
                rank=int(report.image_to_text_ranks[q]),
                positives=items[q].captions,
                retrieved=tuple(texts[i] for i in top),
            )
        )
    return tuple(out)
