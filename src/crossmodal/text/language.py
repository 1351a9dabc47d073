"""Which language a text is in, as far as search and training need to know: en or zh."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["query_language"]


def query_language(texts: Sequence[str]) -> str:
    """``"zh"`` when most letters of ``texts`` are CJK ideographs, else ``"en"``."""
    letters = [c for text in texts for c in text if c.isalpha()]
    cjk = sum(1 for c in letters if "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff")
    return "zh" if letters and cjk * 2 >= len(letters) else "en"
