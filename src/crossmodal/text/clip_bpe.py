"""OpenAI CLIP's byte-level BPE tokenizer, written for crossmodal.

:class:`ClipBpeTokenizer` gives the same ids as OpenCLIP's ``SimpleTokenizer``
(``open_clip.tokenize`` / ``open_clip.get_tokenizer("ViT-B-32")``) with its default
``"lower"`` cleaning and plain truncation: the text is cleaned (``ftfy.fix_text``,
``html.unescape`` twice, whitespace collapsed, lowercased), split with CLIP's regular
expression, each piece turned into byte-level symbols and merged with the BPE ranks,
then wrapped in ``<start_of_text>`` (49406) and ``<end_of_text>`` (49407) and
truncated to ``context_length`` keeping the end token last.

Vocabulary: ``bpe_simple_vocab_16e6.txt.gz``, shipped next to this module, is the
merge list released by OpenAI with CLIP (https://github.com/openai/CLIP), copied
byte for byte from OpenCLIP's copy of it. It is under the MIT licence, Copyright (c)
2021 OpenAI; the notice is in ``LICENSE-CLIP-BPE.txt`` next to it. The algorithm
here follows the same public description (byte-to-unicode table, rank-ordered pair
merges with a ``</w>`` end-of-word marker).

Nothing heavy happens at import: ``regex``, ``ftfy`` and the vocabulary are loaded
when a tokenizer is built.
"""

from __future__ import annotations

import gzip
import html
import importlib.resources
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from crossmodal.text.base import TokenBatch

if TYPE_CHECKING:
    import regex

__all__ = ["DEFAULT_VOCAB_FILE", "ClipBpeTokenizer", "bytes_to_unicode"]

DEFAULT_VOCAB_FILE: Final = "bpe_simple_vocab_16e6.txt.gz"
"""Name of the vocabulary shipped inside ``crossmodal.text``."""

_NUM_MERGES: Final = 49152 - 256 - 2  # merges CLIP uses: vocab 49408 = 2*256 + merges + 2
_SOT: Final = "<start_of_text>"
_EOT: Final = "<end_of_text>"
_END_OF_WORD: Final = "</w>"
_CACHE_SIZE: Final = 200_000  # words whose ids are remembered per tokenizer
# CLIP's pre-tokenizer; the special tokens come first so they are kept whole.
_PATTERN: Final = (
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character, as GPT-2 and CLIP do.

    Printable Latin-1 bytes map to themselves; the remaining 68 bytes (controls,
    space, soft hyphen, ...) map to code points 256 and up, in byte order. The BPE
    then works on strings without whitespace or control characters. The dict's
    order (printable bytes first, then the rest) is the order of the first 256
    vocabulary entries. Do not modify the returned dict: it is shared.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    rest = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(rest)})
    return table


def _read_merges(vocab_path: str | Path | None) -> list[tuple[str, str]]:
    """The first ``_NUM_MERGES`` merge rules of a CLIP BPE file (gzip-compressed or plain)."""
    if vocab_path is None:
        data = importlib.resources.files("crossmodal.text").joinpath(DEFAULT_VOCAB_FILE)
        raw = data.read_bytes()
    else:
        raw = Path(vocab_path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]  # line 0 is a version header
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{vocab_path or DEFAULT_VOCAB_FILE}:{number}: bad merge {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


class ClipBpeTokenizer:
    """OpenAI CLIP's byte-level BPE tokenizer; same ids as OpenCLIP's ``SimpleTokenizer``.

    Implements :class:`crossmodal.text.base.Tokenizer`. Building one reads the
    vocabulary (about 0.1 s); encoded words are cached, so repeated words cost a
    dictionary look-up.

    Args:
        context_length: Ids per text, start and end tokens included (CLIP uses 77).
        vocab_path: A CLIP merges file (``.txt`` or ``.txt.gz``); the default is
            the OpenAI CLIP vocabulary shipped with crossmodal.

    Raises:
        ValueError: ``context_length`` leaves no room for the start and end tokens,
            or the vocabulary file is malformed.
    """

    context_length: int
    """Ids per text in :meth:`__call__` and the truncation length of :meth:`encode`."""

    def __init__(self, context_length: int = 77, vocab_path: str | Path | None = None) -> None:
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        import ftfy
        import regex

        self.context_length = context_length
        self._fix_text: Callable[[str], str] = ftfy.fix_text
        self._pattern: regex.Pattern[str] = regex.compile(_PATTERN, regex.IGNORECASE)

        merges = _read_merges(vocab_path)
        byte_symbols = list(bytes_to_unicode().values())
        vocab = [
            *byte_symbols,
            *(symbol + _END_OF_WORD for symbol in byte_symbols),
            *(first + second for first, second in merges),
            _SOT,
            _EOT,
        ]
        self._encoder: dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self._decoder: list[str] = vocab
        self._bpe_ranks: dict[tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}
        self._byte_encoder: list[str] = [bytes_to_unicode()[b] for b in range(256)]
        self._byte_decoder: dict[str, int] = {s: b for b, s in bytes_to_unicode().items()}
        self._sot_id = self._encoder[_SOT]
        self._eot_id = self._encoder[_EOT]
        # the special tokens, matched whole by the pattern, keep their own ids, as in OpenCLIP
        self._special: dict[str, tuple[int, ...]] = {_SOT: (self._sot_id,), _EOT: (self._eot_id,)}
        self._cache: dict[str, tuple[int, ...]] = {}  # raw pre-token -> ids, oldest first
        self._cache_size = _CACHE_SIZE

    @property
    def vocab_size(self) -> int:
        """Number of ids: 49408 for the CLIP vocabulary."""
        return len(self._decoder)

    @property
    def sot_token_id(self) -> int:
        """Id of ``<start_of_text>`` (49406), the first id of every encoded text."""
        return self._sot_id

    @property
    def eot_token_id(self) -> int:
        """Id of ``<end_of_text>`` (49407), the last id of every encoded text."""
        return self._eot_id

    @property
    def pad_token_id(self) -> int:
        """Id used to pad batches: 0, as in OpenCLIP (it is also the id of ``!``)."""
        return 0

    def clean(self, text: str) -> str:
        """OpenCLIP's default ``"lower"`` cleaning.

        ``ftfy.fix_text``, ``html.unescape`` twice, whitespace runs collapsed to one
        space, ends stripped, lowercased.
        """
        text = html.unescape(html.unescape(self._fix_text(text)))
        return " ".join(text.split()).lower()

    def _bpe(self, symbols: str) -> list[str]:
        """Merge the byte symbols of one word by rank; the last symbol carries ``</w>``."""
        word = [*symbols[:-1], symbols[-1] + _END_OF_WORD]
        ranks = self._bpe_ranks
        while len(word) > 1:
            best: tuple[str, str] | None = None
            best_rank = len(ranks)
            for pair in pairwise(word):
                rank = ranks.get(pair)
                if rank is not None and rank < best_rank:
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i, n = 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def _word_ids(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-tokenized piece, cached."""
        ids = self._cache.get(piece)
        if ids is None:
            special = self._special.get(piece)
            if special is not None:
                return special
            symbols = "".join([self._byte_encoder[b] for b in piece.encode("utf-8")])
            ids = tuple(self._encoder[s] for s in self._bpe(symbols))
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # drop the oldest word
            self._cache[piece] = ids
        return ids

    def encode_words(self, text: str) -> list[int]:
        """Ids of a text without start/end tokens and without truncation."""
        ids: list[int] = []
        for piece in self._pattern.findall(self.clean(text)):
            ids.extend(self._word_ids(piece))
        return ids

    def encode(self, text: str) -> list[int]:
        """Ids of one text: start token, words, end token, at most ``context_length`` long.

        A text too long is cut to ``context_length`` ids and its last id replaced by
        the end token, as OpenCLIP does. No padding.
        """
        ids = [self._sot_id, *self.encode_words(text), self._eot_id]
        if len(ids) > self.context_length:
            ids = ids[: self.context_length]
            ids[-1] = self._eot_id
        return ids

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize texts into ``(len(texts), context_length)`` int64 ids padded with 0.

        A bare ``str`` is taken as one text. ``attention_mask`` is 1 on the ids of
        :meth:`encode` (start and end tokens included) and 0 on padding; it is built
        from lengths, so a real ``!`` (id 0) still counts as a token.
        """
        if isinstance(texts, str):
            texts = [texts]
        rows = [self.encode(text) for text in texts]
        ids = np.zeros((len(rows), self.context_length), dtype=np.int64)
        lengths = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            lengths[i] = len(row)
        positions = np.arange(self.context_length, dtype=np.int64)
        mask = (positions[None, :] < lengths[:, None]).astype(np.int64)
        return TokenBatch(ids=ids, attention_mask=mask)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids (a list, an array row, a tensor row of ints).

        With ``skip_special_tokens`` (the default) the start token is dropped, decoding
        stops at the first end token (so a padded row decodes to its text) and the
        result is stripped; without it every id is decoded, as OpenCLIP's ``decode``
        does. Word ends become spaces, so the text comes back cleaned and lowercased,
        with punctuation, contractions and digits split off by spaces
        (``"a cat."`` decodes to ``"a cat ."``). Invalid UTF-8 becomes U+FFFD.
        """
        pieces: list[str] = []
        for token in ids:
            token = int(token)
            if skip_special_tokens:
                if token == self._eot_id:
                    break
                if token == self._sot_id:
                    continue
            pieces.append(self._decoder[token])
        data = bytes(self._byte_decoder[c] for c in "".join(pieces))
        text = data.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")
        return text.strip() if skip_special_tokens else text

    def __repr__(self) -> str:
        """Short description with the context length and vocabulary size."""
        return (
            f"{type(self).__name__}(context_length={self.context_length}, "
            f"vocab_size={self.vocab_size})"
        )
