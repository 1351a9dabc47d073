"""The JSON request bodies of the search API (pydantic models).

A router caps ``k`` and ``rerank`` at its settings' ``max_k`` in a subclass
(:func:`crossmodal.service.routes.search_router`).

No ``from __future__ import annotations``: pydantic and FastAPI read these annotations at run
time.
"""

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["SearchFields"]

_WEIGHT = Field(default=1.0, ge=-10, le=10)


class SearchFields(BaseModel):  # type: ignore[misc]
    """``POST /api/search``'s body: what to look for, how many, and the filters."""

    text: str | None = Field(default=None, max_length=1000)
    image_id: str | None = Field(default=None, max_length=64)
    image_url: str | None = Field(default=None, max_length=2000)
    negative: str | None = Field(default=None, max_length=1000)  # a text to move away from
    text_weight: float = _WEIGHT
    image_weight: float = _WEIGHT
    negative_weight: float = _WEIGHT
    k: int = Field(default=10, ge=1)
    rerank: int = Field(default=0, ge=0)  # re-score the top N (one text)
    folder: str | None = None
    kind: Literal["image", "video"] | None = None
    suffixes: list[str] = Field(default_factory=list, max_length=50)  # file types: jpg, png
    after: str | None = Field(default=None, max_length=40)  # modified on or after YYYY-MM-DD
    before: str | None = Field(default=None, max_length=40)  # modified before YYYY-MM-DD
