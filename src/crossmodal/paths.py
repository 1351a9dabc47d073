"""File names that are not UTF-8: stored losslessly, shown readably.

A POSIX file name is bytes. Python decodes the bytes that are not UTF-8 (an old archive's
Latin-1 ``café``, a Windows copy) to lone surrogates (``'bad_\\udcff.png'``, PEP 383), and such a
string opens the right file but cannot be encoded to UTF-8: not into SQLite, a JSON answer,
a web page or a terminal. Two views of one path:

- :func:`to_text` / :func:`from_text`: a lossless UTF-8 text form for storage. A path that is
  valid text maps to itself (so existing indexes read unchanged); a byte that is not UTF-8
  becomes the marker U+10FFFF (a Unicode noncharacter, reserved for internal use) and two hex
  digits, and a marker already in the name is doubled, so the form is one-to-one and maps a
  prefix to a prefix (folder filters keep working on the stored text).
- :func:`printable`: for people, each undecodable byte as ``\\xff`` (``bad_\\xff.png``).
"""

from __future__ import annotations

import os
import re

__all__ = ["MARK", "from_text", "json_text", "printable", "to_text"]

MARK = "\U0010ffff"  # a noncharacter: never in a sane name; doubled when it is
_LOW, _HIGH = 0xDC80, 0xDCFF  # the surrogates PEP 383 decodes bytes 0x80-0xFF to


def _clean(path: str) -> bool:
    return MARK not in path and not any(_LOW <= ord(c) <= _HIGH for c in path)


def to_text(path: str) -> str:
    """``path`` as text that encodes to UTF-8; ``from_text`` gives ``path`` back exactly."""
    if _clean(path):
        return path
    out = []
    for c in path:
        if c == MARK:
            out.append(MARK + MARK)
        elif _LOW <= ord(c) <= _HIGH:
            out.append(f"{MARK}{ord(c) - 0xDC00:02x}")
        else:
            out.append(c)
    return "".join(out)


def from_text(text: str) -> str:
    """The path whose stored form is ``text`` (see :func:`to_text`)."""
    if MARK not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != MARK:
            out.append(c)
            i += 1
        elif text[i + 1 : i + 2] == MARK:
            out.append(MARK)
            i += 2
        else:
            out.append(chr(0xDC00 + int(text[i + 1 : i + 3], 16)))
            i += 3
    return "".join(out)


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` for people: bytes that are not UTF-8 shown as ``\\xff``; other text unchanged."""
    text = os.fspath(path)
    if _clean(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def json_text(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with undecodable name bytes written as
    ``\\udcff`` escapes: valid UTF-8 and valid JSON, and ``json.loads`` gives the path back."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_SURROGATE = re.compile("[\ud800-\udfff]")
