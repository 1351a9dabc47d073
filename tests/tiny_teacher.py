"""A tiny sentence-transformers teacher, built locally with the reference libraries (a
one-layer BERT with random weights over a word vocabulary, mean pooling)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def save_tiny_teacher(folder: Path, words: Iterable[str], seed: int = 0) -> Path:
    """A SentenceTransformer saved in ``folder`` whose tokenizer knows ``words``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    from transformers import BertConfig, BertModel, BertTokenizer

    bert = folder / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(bert)
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    word = models.Transformer(str(bert), max_seq_length=32)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pooling = models.Pooling(dim(), pooling_mode="mean")
    teacher = folder / "teacher"
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(teacher))
    return teacher
