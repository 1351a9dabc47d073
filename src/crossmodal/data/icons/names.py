"""Icon names to captions: style words out, words split, brands and long keyword lists dropped.

``mdi:food-apple-outline`` → ``food apple``; ``fluent:payment-20-regular`` → ``payment``;
``ph:pentagon-thin`` → ``pentagon``; ``fa:heart-o`` → ``heart``. A name left with no word, or
with more than :data:`MAX_WORDS` (Streamline names its icons by keyword lists), with a
single letter (``alpha-u``, ``user-x``), or naming a brand or logo, gives no caption.
"""

from __future__ import annotations

import re

__all__ = ["MAX_WORDS", "STYLE_WORDS", "caption_of"]

MAX_WORDS = 4  # a longer cleaned name is a keyword list, not a caption

STYLE_WORDS = frozenset(
    {
        "alt", "bold", "bulk", "duo", "duotone", "fill", "filled", "glyph", "icon", "light",
        "line", "linear", "lined", "o", "outline", "outlined", "regular", "remix", "round",
        "rounded", "sharp", "simple", "sm", "solid", "stroke", "thin", "twotone", "variant",
        "xs", "lg", "md", "xl", "mini", "micro", "tone",
    }
)  # fmt: skip
"""Words that say how an icon is drawn, not what it shows."""

_BRAND_WORDS = frozenset({"logo", "brand", "brands", "logos", "wordmark"})
_WORD = re.compile(r"^[a-z]+$")


def caption_of(name: str) -> str | None:
    """The caption an icon name gives (words joined by spaces), or None when it gives none."""
    words = [w for w in re.split(r"[-_\s]+", name.lower()) if w]
    if _BRAND_WORDS & set(words):
        return None
    kept = [w for w in words if w not in STYLE_WORDS and not w.isdigit()]
    kept = [w for w in kept if not re.fullmatch(r"\d+[a-z]?|[a-z]\d+", w)]  # 8k, x2, 01a
    if not kept or len(kept) > MAX_WORDS or not all(_WORD.match(w) for w in kept):
        return None
    if any(len(w) == 1 for w in kept):  # letters: alpha-u, letter-a, user-x
        return None
    return " ".join(kept)
