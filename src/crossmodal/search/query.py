"""Search queries: texts and images, weighted, added and subtracted.

    beach                               one text
    beach + 0.5:./sunset.jpg - people   text, plus half an image, minus a text
    ./photo.jpg                         an image (a path to an existing image file)
    "./photo.jpg"                       the text "./photo.jpg" (quotes force text)

A query is split on ``+`` and ``-`` standing alone between spaces (so "t-shirt" stays one
word); each term may start with ``WEIGHT:``. A term is an image when it names an existing
image file, or looks like a path (starts with ``./``, ``../``, ``/`` or ``~``), in which
case the file must exist. The query vector is the normalised weighted sum of the terms'
unit embeddings, as in rclip: negative terms push their concept away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal.data.files import is_image_path
from crossmodal.errors import InputError

__all__ = ["Query", "Term", "parse_query", "unit_sum"]

_WEIGHT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)):(.+)$", re.DOTALL)
_PATH_PREFIXES = ("./", "../", "/", "~")


@dataclass(frozen=True)
class Term:
    """One part of a query: a text or an image path, with its signed weight."""

    weight: float
    text: str | None = None
    image: Path | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise InputError("a query term is either a text or an image")


@dataclass(frozen=True)
class Query:
    """A combination of weighted texts and images."""

    terms: tuple[Term, ...]

    @classmethod
    def of(
        cls,
        text: str | Sequence[str] | None = None,
        image: str | Path | Sequence[str | Path] | None = None,
    ) -> Query:
        """Texts and images with weight 1 each (the Python API's ``search(text=, image=)``)."""
        texts = [text] if isinstance(text, str) else list(text or [])
        images = [image] if isinstance(image, str | Path) else list(image or [])
        terms = [Term(1.0, text=t) for t in texts]
        terms += [Term(1.0, image=_existing_image(Path(i).expanduser())) for i in images]
        if not terms:
            raise InputError("empty query: give a text, an image, or both")
        return cls(tuple(terms))


def parse_query(parts: str | Sequence[str], *, cwd: Path | None = None) -> Query:
    """Parse the command-line form (the words of ``crossmodal search QUERY…``).

    Raises:
        InputError: An empty query or term, a bad weight, or a path-like term that is not
            an existing image file.
    """
    text = parts if isinstance(parts, str) else " ".join(parts)
    tokens = re.split(r"(?:^|\s+)([+-])(?=\s|$)", text.strip())
    terms: list[Term] = []
    sign = 1.0
    for position, token in enumerate(tokens):
        if position % 2 == 1:  # an operator captured by the split
            sign = -1.0 if token == "-" else 1.0
            continue
        chunk = token.strip()
        if not chunk:
            if position == 0:
                continue  # the query starts with an operator
            raise InputError(f"query {text!r}: an operator with nothing after it")
        terms.append(_term(chunk, sign, cwd))
        sign = 1.0
    if not terms:
        raise InputError("empty query: give a text, an image path, or both")
    return Query(tuple(terms))


def _term(chunk: str, sign: float, cwd: Path | None) -> Term:
    weight = 1.0
    match = _WEIGHT.match(chunk)
    if match:
        weight = float(match.group(1))
        chunk = match.group(2).strip()
    weight *= sign
    if len(chunk) >= 2 and chunk[0] == chunk[-1] and chunk[0] in "\"'":
        return Term(weight, text=chunk[1:-1])
    path = Path(chunk).expanduser()
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    if chunk.startswith(_PATH_PREFIXES):
        return Term(weight, image=_existing_image(path))
    if is_image_path(path) and path.is_file():
        return Term(weight, image=path)
    return Term(weight, text=chunk)


def _existing_image(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"image query {path}: no such file (quote it to search it as text)")
    return path


def unit_sum(parts: Iterable[tuple[float, npt.ArrayLike]]) -> npt.NDArray[np.float32]:
    """The normalised weighted sum of ``(weight, unit vector)`` parts: a query's vector.

    Raises:
        InputError: No parts, or parts that cancel out.
    """
    total: npt.NDArray[np.float64] | None = None
    for weight, vector in parts:
        term = weight * np.asarray(vector, dtype=np.float64)
        total = term if total is None else total + term
    norm = 0.0 if total is None else float(np.linalg.norm(total))
    if total is None or norm < 1e-8:
        raise InputError("the query's parts cancel out (or there are none); change the weights")
    return (total / norm).astype(np.float32)
