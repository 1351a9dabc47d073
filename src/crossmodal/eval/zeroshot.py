"""Zero-shot classification: a class embedding per class from prompt templates, as CLIP does.

Each class name is put into every template, the prompts are embedded, the embeddings of one
class are averaged and re-normalised (Radford et al., 2021, section 3.1.4), and an image's
score for a class is the cosine similarity of the two unit vectors.

A broad class ("food & drink") is hard to see in one prompt; its members ("fruit", "banana")
are not. :func:`hierarchical_scores` classifies into named subclasses as well and reweighs
(CHiLS, Novack et al., 2023): ``p(c) · max_{s ∈ c} p(s)``, both probabilities a softmax over
the cosines at :data:`HIERARCHY_SCALE`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from crossmodal.encoders.base import Encoder, FloatArray, l2_normalize
from crossmodal.encoders.embedder import Embedder
from crossmodal.errors import ConfigError, InputError

__all__ = [
    "HIERARCHY_SCALE",
    "TEMPLATES",
    "build_classifier",
    "check_templates",
    "hierarchical_scores",
    "predict",
    "softmax",
]

HIERARCHY_SCALE = 30.0  # logit scale of the two softmaxes of hierarchical_scores

TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "a photo of a {}.",
        "a bad photo of a {}.",
        "a close-up photo of a {}.",
        "a cropped photo of the {}.",
        "a low resolution photo of the {}.",
        "a drawing of a {}.",
        "a rendering of a {}.",
        "a picture of {}.",
        "an emoji of {}.",
        "itap of a {}.",
    ),
    "zh": (
        "一张{}的照片。",
        "{}的图片。",
        "一个{}的表情符号。",
        "{}的特写照片。",
        "一张模糊的{}的照片。",
        "{}的低分辨率照片。",
        "一幅{}的画。",
        "{}的素描。",
    ),
}  # language → CLIP ImageNet-style prompt templates; "{}" stands for the class name


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """``templates`` as a tuple, checked: at least one, each with a ``{}`` for the class name.

    Raises:
        ConfigError: No template, or one that is not a string with a ``{}``.
    """
    out = tuple(templates)
    if not out:
        raise ConfigError("templates: is empty; pass at least one, e.g. 'a photo of a {}.'")
    for template in out:
        if not isinstance(template, str) or "{}" not in template:
            raise ConfigError(f"template {template!r} has no '{{}}' placeholder for the class name")
    return out


def build_classifier(
    encoder: Encoder | Embedder, class_names: Sequence[str], templates: Sequence[str]
) -> FloatArray:
    """The ``(C, D)`` zero-shot classifier: one unit vector per class.

    Args:
        encoder: The model, or an :class:`Embedder` around it (its batch size and progress
            setting are used).
        class_names: The ``C`` names put into the templates, in class-index order.
        templates: Prompts with ``{}`` where the class name goes (see :data:`TEMPLATES`).

    Returns:
        ``(C, D)`` float32: for each class, the mean of its ``T`` prompt embeddings, L2
        normalised.

    Raises:
        InputError: No class name, or a class name that is not a non-empty string.
        ConfigError: Bad templates (see :func:`check_templates`).
    """
    embedder = encoder if isinstance(encoder, Embedder) else Embedder(encoder)
    names = list(class_names)
    if not names:
        raise InputError("class_names: is empty; pass at least one class")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"class name {name!r} is not a non-empty string")
    prompts = check_templates(templates)
    texts = [template.replace("{}", name) for name in names for template in prompts]
    text_emb = embedder.embed_texts(texts, desc="class prompts")  # (C * T, D)
    per_class = text_emb.reshape(len(names), len(prompts), -1)  # (C, T, D)
    return l2_normalize(per_class.mean(axis=1).astype(np.float32))  # (C, D)


def predict(image_emb: npt.ArrayLike, classifier: npt.ArrayLike) -> FloatArray:
    """Scores ``(N, C)``: the cosine of each image embedding ``(N, D)`` with each class ``(C, D)``.

    Both inputs are expected to be unit vectors (as the embedder and
    :func:`build_classifier` give); nothing is re-normalised here.

    Raises:
        InputError: Inputs that are not 2-D or whose dimensions differ.
    """
    images = np.asarray(image_emb, dtype=np.float32)
    classes = np.asarray(classifier, dtype=np.float32)
    if images.ndim != 2 or classes.ndim != 2:
        raise InputError(
            f"expected (N, D) image embeddings and a (C, D) classifier, got shapes "
            f"{images.shape} and {classes.shape}"
        )
    if images.shape[1] != classes.shape[1]:
        raise InputError(
            f"image embeddings have dimension {images.shape[1]} but the classifier has "
            f"{classes.shape[1]}; build both with the same model"
        )
    scores: FloatArray = images @ classes.T  # (N, C)
    return scores


def hierarchical_scores(
    scores: npt.ArrayLike,
    sub_scores: npt.ArrayLike,
    owner: npt.ArrayLike,
    scale: float = HIERARCHY_SCALE,
) -> FloatArray:
    """CHiLS scores ``(N, C)``: ``p(c | x) · max_{s ∈ c} p(s | x)``.

    Args:
        scores: ``(N, C)`` cosines of each image with each class (:func:`predict`).
        sub_scores: ``(N, S)`` cosines of each image with each subclass.
        owner: ``(S,)`` the class index of each subclass; every class needs one (give a class
            without members its own name as its subclass).
        scale: The logit scale of both softmaxes.

    Raises:
        InputError: Shapes that do not match, or an owner list that leaves a class out or
            names one that does not exist.
    """
    plain = np.asarray(scores, dtype=np.float32)
    subs = np.asarray(sub_scores, dtype=np.float32)
    owners = np.asarray(owner, dtype=np.int64)
    if plain.ndim != 2 or subs.ndim != 2 or len(plain) != len(subs):
        raise InputError(
            f"expected (N, C) class and (N, S) subclass scores, got {plain.shape} and {subs.shape}"
        )
    n_classes = plain.shape[1]
    if owners.shape != (subs.shape[1],) or set(owners.tolist()) != set(range(n_classes)):
        raise InputError(
            f"owner: need a class index in 0..{n_classes - 1} for each of the {subs.shape[1]} "
            "subclasses, and at least one subclass per class"
        )
    best = np.zeros_like(plain)
    np.maximum.at(best.T, owners, softmax(subs * scale).T)  # best[:, c]: max over c's subclasses
    out: FloatArray = (softmax(plain * scale) * best).astype(np.float32)
    return out


def softmax(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Row-wise softmax of ``(N, C)`` logits, computed in float64 (each row sums to 1)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out
