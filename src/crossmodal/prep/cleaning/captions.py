"""Caption checks: repair encoding damage, tell the language, and refuse what is not a caption.

    verdict = check_caption("cafÃ© au lait", CaptionRules())
    verdict.text, verdict.language, verdict.reason    # "café au lait", "latin", None

Language detection is by script, which is what keeping or splitting English and Chinese
subsets needs: Han characters without kana are ``zh``, kana ``ja``, Hangul ``ko``, Cyrillic
``ru``; Latin text is ``en`` when it is plain ASCII and ``latin`` when it has other letters
(French, German, Spanish, ... are not told apart). Text with no letters is ``und``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crossmodal.errors import ConfigError

__all__ = [
    "LANGUAGES",
    "CaptionRules",
    "CaptionVerdict",
    "check_caption",
    "detect_language",
    "repair_text",
]

LANGUAGES: Final = ("en", "latin", "zh", "ja", "ko", "ru", "ar", "he", "el", "th", "hi", "und")
"""Every code :func:`detect_language` returns."""

# Unicode script ranges, (first, last, language); checked in order.
_SCRIPT_RANGES: Final = (
    (0x3040, 0x30FF, "ja"),  # Hiragana, Katakana
    (0x31F0, 0x31FF, "ja"),  # Katakana phonetic extensions
    (0xAC00, 0xD7AF, "ko"),  # Hangul syllables
    (0x1100, 0x11FF, "ko"),  # Hangul jamo
    (0x3130, 0x318F, "ko"),  # Hangul compatibility jamo
    (0x4E00, 0x9FFF, "zh"),  # CJK unified ideographs
    (0x3400, 0x4DBF, "zh"),  # CJK extension A
    (0x20000, 0x2FA1F, "zh"),  # CJK extensions B-F, compatibility supplement
    (0xF900, 0xFAFF, "zh"),  # CJK compatibility ideographs
    (0x0400, 0x052F, "ru"),  # Cyrillic
    (0x0600, 0x06FF, "ar"),  # Arabic
    (0x0590, 0x05FF, "he"),  # Hebrew
    (0x0370, 0x03FF, "el"),  # Greek
    (0x0E00, 0x0E7F, "th"),  # Thai
    (0x0900, 0x097F, "hi"),  # Devanagari
)


@dataclass(frozen=True)
class CaptionRules:
    """What a usable caption looks like."""

    min_chars: int = 2  # shorter captions (after trimming) are refused as too short
    max_chars: int = 1000  # longer ones are refused as too long (a web page pasted in)
    min_letter_ratio: float = 0.5  # letters / non-space characters below this: "mostly non-text"
    repair: bool = True  # repair mojibake ("cafÃ©" → "café") before the checks
    languages: tuple[str, ...] = ()  # keep only these languages (see LANGUAGES); () keeps all

    def __post_init__(self) -> None:
        if self.min_chars < 0 or self.max_chars < max(self.min_chars, 1):
            raise ConfigError(
                f"caption length limits [{self.min_chars}, {self.max_chars}] are not a range; "
                "min_chars must be >= 0 and max_chars >= min_chars"
            )
        if not 0.0 <= self.min_letter_ratio <= 1.0:
            raise ConfigError(f"min_letter_ratio must be in [0, 1], not {self.min_letter_ratio}")
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ConfigError(
                f"unknown language code(s) {unknown}; the codes are {', '.join(LANGUAGES)}"
            )


@dataclass(frozen=True)
class CaptionVerdict:
    """What the checks made of one caption."""

    text: str  # the caption, repaired and with surrounding whitespace trimmed
    language: str  # one of LANGUAGES
    reason: str | None  # why it is refused ("caption too short (1 < 2 characters)"), or None
    rule: str | None  # the rule that refused it ("caption_length", ...), or None
    repaired: bool  # whether repair changed the text (beyond trimming)


def repair_text(text: str) -> str:
    """``text`` with mojibake and other encoding damage undone ("cafÃ©" → "café"), by ftfy."""
    import ftfy  # a core dependency (the CLIP tokenizer cleans with it too), loaded lazily

    fixed: str = ftfy.fix_text(text, normalization="NFC")
    return fixed


def detect_language(text: str) -> str:
    """The language of ``text`` by the script of its letters (see the module docstring)."""
    counts: dict[str, int] = {}
    for char in text:
        if not char.isalpha():
            continue
        code = _script_language(ord(char))
        counts[code] = counts.get(code, 0) + 1
    if not counts:
        return "und"
    if counts.get("ja", 0) > 0:  # Japanese mixes kanji (Han) with kana
        return "ja"
    if "latin" in counts:  # one accented letter makes Latin text not (plain) English
        counts["latin"] += counts.pop("en", 0)
    best = max(counts.items(), key=lambda kv: (kv[1], kv[0] == "zh"))[0]
    return best


def _script_language(point: int) -> str:
    for first, last, code in _SCRIPT_RANGES:
        if first <= point <= last:
            return code
    return "en" if point < 0x80 else "latin"


def check_caption(text: str, rules: CaptionRules) -> CaptionVerdict:
    """Repair ``text`` and check it against ``rules``; the first failed rule is the reason."""
    trimmed = text.strip()
    fixed = repair_text(trimmed).strip() if rules.repair else trimmed
    language = detect_language(fixed)
    reason, rule = _first_failure(fixed, language, rules)
    return CaptionVerdict(fixed, language, reason, rule, fixed != trimmed)


def _first_failure(text: str, language: str, rules: CaptionRules) -> tuple[str | None, str | None]:
    if not text:
        return "empty caption", "caption_empty"
    n = len(text)
    if n < rules.min_chars:
        return f"caption too short ({n} < {rules.min_chars} characters)", "caption_length"
    if n > rules.max_chars:
        return f"caption too long ({n} > {rules.max_chars} characters)", "caption_length"
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    ratio = letters / len(visible)
    if ratio < rules.min_letter_ratio:
        return (
            f"mostly non-text ({letters} of {len(visible)} characters are letters, "
            f"below {rules.min_letter_ratio:.0%})",
            "caption_non_text",
        )
    if rules.languages and language not in rules.languages:
        return (
            f"language {language!r} is not kept (keeping {', '.join(rules.languages)})",
            "caption_language",
        )
    return None, None
