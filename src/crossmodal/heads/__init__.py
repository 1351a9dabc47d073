"""Heads on top of the dual encoder: joint embedding, cross-modal attention, modality fusion.

    from crossmodal.heads import BilinearAttention, LinearFusion, MultimodalClassifier

Modules, one job each: :mod:`~crossmodal.heads.attention` (``α = softmax_j(h_tᵀ W h_i_j)``
and token-level multi-head cross-attention), :mod:`~crossmodal.heads.fusion`
(``h = W_t h_t + W_i h_i``, gated and attention fusion), :mod:`~crossmodal.heads.joint`
(``f(t, i) = g(h_t, h_i)`` with ``g`` cosine, concat + MLP, product or bilinear),
:mod:`~crossmodal.heads.features` (frozen encoder features, patch tokens in the joint space),
:mod:`~crossmodal.heads.classify` (image + text classifiers built from the above),
:mod:`~crossmodal.heads.rerank` (a re-ranker: the query attends over a memory of captioned
pictures).
"""

from __future__ import annotations

from crossmodal.heads.attention import (
    AttentionOutput,
    BilinearAttention,
    CrossAttention,
    masked_softmax,
)
from crossmodal.heads.classify import CLASSIFIER_KINDS, MultimodalClassifier
from crossmodal.heads.features import Features, extract_features, patch_tokens
from crossmodal.heads.fusion import AttentionFusion, GatedFusion, LinearFusion
from crossmodal.heads.joint import JOINT_KINDS, JointEmbedding, joint_head

__all__ = [
    "CLASSIFIER_KINDS",
    "JOINT_KINDS",
    "AttentionFusion",
    "AttentionOutput",
    "BilinearAttention",
    "CrossAttention",
    "Features",
    "GatedFusion",
    "JointEmbedding",
    "LinearFusion",
    "MultimodalClassifier",
    "extract_features",
    "joint_head",
    "masked_softmax",
    "patch_tokens",
]
