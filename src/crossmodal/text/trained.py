"""A small bilingual (English + Chinese) subword tokenizer trained on our own captions.

:class:`TrainedTokenizer` wraps a Hugging Face ``tokenizers.Tokenizer`` whose whole
pipeline lives in one ``tokenizer.json``:

1. **Normalise**: NFKC (full-width Latin and punctuation become ASCII), lowercase,
   whitespace runs collapsed to one space, ends stripped.
2. **Pre-tokenise**: spaces become ``▁`` and start a new piece (SentencePiece's
   ``Metaspace``), so a word keeps its leading ``▁`` and decoding is exact; CJK
   characters are split apart (``cjk="chars"``: one piece per character, with the
   ``▁`` of a preceding space) or kept as runs apart from Latin text (``cjk="runs"``,
   the default: BPE then merges frequent character pairs into words, e.g. ``表情``);
   punctuation and each digit are pieces of their own.
3. **Model**: BPE (default) or Unigram, trained on the captions; a character never
   seen in training becomes ``<unk>``.
4. **Wrap**: ``<bos> ... <eos>``; truncation to ``context_length`` keeps ``<eos>``
   last; batches are padded with ``<pad>`` (id 0).

Ids: ``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, then the learned pieces, and
``<eos>`` is the **highest** id (``vocab_size - 1``), so a text tower pools
correctly with either ``pool="eos"`` or CLIP's ``pool="argmax"``.

Training is deterministic: the same texts and settings give a byte-identical file.
``tokenizers`` is imported when a tokenizer is built or trained, never at import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from crossmodal.errors import BackendUnavailableError, ConfigError
from crossmodal.text.base import TokenBatch

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "TokenizerTrainConfig",
    "TrainedTokenizer",
    "train_tokenizer",
]

PAD_TOKEN: Final = "<pad>"
UNK_TOKEN: Final = "<unk>"
BOS_TOKEN: Final = "<bos>"
EOS_TOKEN: Final = "<eos>"
_WORD_START: Final = "▁"  # U+2581, SentencePiece's marker for "a space came before"
# Han (CJK unified ideographs, extension A, compatibility) and Japanese kana. Korean is
# left to the word splitter: it writes spaces between words.
_CJK_CLASS: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
# What NFKC + lowercase can leave of printable ASCII: never <unk>, even if unseen in training.
_PRINTABLE_ASCII: Final = "".join(chr(c) for c in range(33, 127) if not chr(c).isupper())
_MIN_VOCAB: Final = 8  # the four special tokens and a few pieces


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """How :func:`train_tokenizer` builds and trains the tokenizer (vocab size apart)."""

    model: Literal["bpe", "unigram"] = "bpe"  # the subword model learned on the pre-tokens
    cjk: Literal["chars", "runs"] = "runs"  # CJK pre-tokens: whole runs (measured best) or chars
    min_frequency: int = 2  # BPE: a pair seen fewer times is never merged
    max_piece_length: int = 16  # longest learned piece, in characters
    seed_alphabet: str = _PRINTABLE_ASCII  # characters always in the vocabulary, seen or not


def _import_tokenizers() -> Any:
    """The ``tokenizers`` module, or :class:`BackendUnavailableError`."""
    try:
        import tokenizers
    except ImportError as exc:
        raise BackendUnavailableError("trained tokenizer", "hf", "tokenizers") from exc
    return tokenizers


def _special_id(backend: tokenizers.Tokenizer, token: str) -> int:
    """Id of a special token that the file must hold."""
    token_id = backend.token_to_id(token)
    if token_id is None:
        raise ConfigError(f"tokenizer.json has no {token!r} token; retrain it with train_tokenizer")
    return int(token_id)


class TrainedTokenizer:
    """A subword tokenizer trained on our captions; see the module docstring.

    Implements :class:`crossmodal.text.base.Tokenizer`.

    Args:
        path: A ``tokenizer.json`` written by :func:`train_tokenizer`.
        context_length: Ids per text, ``<bos>`` and ``<eos>`` included.

    Raises:
        BackendUnavailableError: ``tokenizers`` is not installed.
        ConfigError: The file cannot be read, or lacks a special token, or
            ``<pad>`` is not id 0.
        ValueError: ``context_length`` leaves no room for ``<bos>`` and ``<eos>``.
    """

    context_length: int
    """Ids per text in :meth:`__call__` and the truncation length of :meth:`encode`."""

    def __init__(self, path: str | Path, context_length: int = 77) -> None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read tokenizer ({exc})") from exc
        self._setup(text, context_length, where=str(path))

    @classmethod
    def from_str(cls, json_text: str, context_length: int = 77) -> TrainedTokenizer:
        """A tokenizer from the text of a ``tokenizer.json`` (e.g. from safetensors metadata)."""
        self = cls.__new__(cls)
        self._setup(json_text, context_length, where="tokenizer JSON")
        return self

    def _setup(self, json_text: str, context_length: int, where: str) -> None:
        """Build the backend from JSON text and check its special tokens."""
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        hf = _import_tokenizers()
        try:
            backend: tokenizers.Tokenizer = hf.Tokenizer.from_str(json_text)
        except Exception as exc:  # the Rust side raises a bare Exception
            raise ConfigError(f"{where}: not a valid tokenizer.json ({exc})") from exc
        self.context_length = context_length
        self._json = json_text
        self._pad_id = _special_id(backend, PAD_TOKEN)
        self._unk_id = _special_id(backend, UNK_TOKEN)
        self._bos_id = _special_id(backend, BOS_TOKEN)
        self._eos_id = _special_id(backend, EOS_TOKEN)
        if self._pad_id != 0:
            raise ConfigError(f"{where}: {PAD_TOKEN!r} must be id 0, is {self._pad_id}")
        # The post-processor adds <bos>/<eos>; truncation counts them, so <eos> stays last.
        backend.enable_truncation(max_length=context_length)
        backend.no_padding()
        self._backend = backend

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (``eos_token_id + 1``)."""
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    @property
    def bos_token_id(self) -> int:
        """Id of ``<bos>``, the first id of every encoded text."""
        return self._bos_id

    @property
    def eos_token_id(self) -> int:
        """Id of ``<eos>``, the last id of every encoded text (the highest id)."""
        return self._eos_id

    @property
    def pad_token_id(self) -> int:
        """Id used to pad batches: 0 (``<pad>``)."""
        return self._pad_id

    @property
    def unk_token_id(self) -> int:
        """Id of ``<unk>``, given to characters never seen in training."""
        return self._unk_id

    def to_str(self) -> str:
        """The ``tokenizer.json`` text this tokenizer was built from."""
        return self._json

    def tokens(self, text: str) -> list[str]:
        """The pieces of one text, ``<bos>`` and ``<eos>`` included (for inspection)."""
        return list(self._backend.encode(text).tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of one text: ``<bos>``, pieces, ``<eos>``, at most ``context_length`` long."""
        return list(self._backend.encode(text).ids)

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize texts into ``(len(texts), context_length)`` int64 ids padded with 0.

        A bare ``str`` is taken as one text. ``attention_mask`` is 1 on the ids of
        :meth:`encode` and 0 on padding.
        """
        if isinstance(texts, str):
            texts = [texts]
        encodings = self._backend.encode_batch(list(texts))
        ids = np.zeros((len(encodings), self.context_length), dtype=np.int64)  # (B, T)
        lengths = np.empty(len(encodings), dtype=np.int64)  # (B,)
        for i, encoding in enumerate(encodings):
            row = encoding.ids
            ids[i, : len(row)] = row
            lengths[i] = len(row)
        positions = np.arange(self.context_length, dtype=np.int64)
        mask = (positions[None, :] < lengths[:, None]).astype(np.int64)  # (B, T)
        return TokenBatch(ids=ids, attention_mask=mask)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids (a list, an array row, a tensor row of ints).

        With ``skip_special_tokens`` (the default) ``<bos>``, ``<eos>`` and padding
        are dropped, so a padded row decodes to its normalised text (lowercased, NFKC,
        single spaces); ``<unk>`` is dropped too.
        """
        return str(self._backend.decode([int(i) for i in ids], skip_special_tokens))

    def __repr__(self) -> str:
        """Short description with the context length and vocabulary size."""
        return (
            f"{type(self).__name__}(context_length={self.context_length}, "
            f"vocab_size={self.vocab_size})"
        )


def _build_untrained(hf: Any, config: TokenizerTrainConfig) -> tokenizers.Tokenizer:
    """A tokenizer with the normaliser, pre-tokeniser and decoder, its model not trained."""
    normalizers, pre_tokenizers, decoders = hf.normalizers, hf.pre_tokenizers, hf.decoders
    cjk = f"{_WORD_START}?[{_CJK_CLASS}]" + ("" if config.cjk == "chars" else "+")
    if config.model == "bpe":
        model = hf.models.BPE(unk_token=UNK_TOKEN, fuse_unk=True)
    else:
        model = hf.models.Unigram()
    backend: tokenizers.Tokenizer = hf.Tokenizer(model)
    backend.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.Replace(hf.Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always"),
            pre_tokenizers.Split(hf.Regex(cjk), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=_WORD_START, prepend_scheme="always")
    return backend


def _trainer(hf: Any, vocab_size: int, config: TokenizerTrainConfig) -> Any:
    """The trainer for ``config.model``; ``<eos>`` is added after training (highest id)."""
    specials = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN]
    alphabet = sorted(set(config.seed_alphabet))
    if config.model == "bpe":
        return hf.trainers.BpeTrainer(
            vocab_size=vocab_size - 1,
            min_frequency=config.min_frequency,
            special_tokens=specials,
            initial_alphabet=alphabet,
            max_token_length=config.max_piece_length,
            show_progress=False,
        )
    return hf.trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=specials,
        unk_token=UNK_TOKEN,
        initial_alphabet=alphabet,
        max_piece_length=config.max_piece_length,
        show_progress=False,
    )


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_path: str | Path,
    config: TokenizerTrainConfig | None = None,
    context_length: int = 77,
) -> TrainedTokenizer:
    """Train a tokenizer on ``texts``, write its ``tokenizer.json`` and return it.

    Deterministic: the texts are deduplicated and sorted first, so the same set of
    texts gives a byte-identical file whatever their order or repetition. The file
    may hold fewer than ``vocab_size`` ids when the texts run out of pairs to merge.

    Args:
        texts: Training captions (any languages; English and Chinese in mind).
        vocab_size: Target number of ids, special tokens included.
        out_path: Where to write ``tokenizer.json`` (parent folders are created).
        config: Model and pre-tokenisation choices; the defaults are the measured best.
        context_length: Context length of the returned tokenizer.

    Raises:
        BackendUnavailableError: ``tokenizers`` is not installed.
        ValueError: ``vocab_size`` is too small (Unigram needs room for every
            character) or there are no texts.
    """
    config = config or TokenizerTrainConfig()
    if vocab_size < _MIN_VOCAB:
        raise ValueError(f"vocab_size must be at least {_MIN_VOCAB}, got {vocab_size}")
    corpus = sorted({text for text in texts if text.strip()})
    if not corpus:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    hf = _import_tokenizers()
    backend = _build_untrained(hf, config)
    try:
        backend.train_from_iterator(corpus, trainer=_trainer(hf, vocab_size, config))
    except Exception as exc:  # the Rust trainer raises a bare Exception
        raise ValueError(f"cannot train a {vocab_size}-id {config.model} tokenizer: {exc}") from exc
    backend.add_special_tokens([EOS_TOKEN])  # after training: the highest id
    backend.post_processor = hf.processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[
            (BOS_TOKEN, _special_id(backend, BOS_TOKEN)),
            (EOS_TOKEN, _special_id(backend, EOS_TOKEN)),
        ],
    )
    json_text = _canonical_json(backend.to_str())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json_text, encoding="utf-8")
    return TrainedTokenizer.from_str(json_text, context_length=context_length)


def _canonical_json(json_text: str) -> str:
    """Compact JSON with keys in a fixed order: smaller, and stable across runs."""
    return json.dumps(json.loads(json_text), ensure_ascii=False, separators=(",", ":"))
