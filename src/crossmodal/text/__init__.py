"""Tokenizers: text to fixed-length id tensors."""

from crossmodal.text.base import TokenBatch, Tokenizer

__all__ = ["TokenBatch", "Tokenizer"]
