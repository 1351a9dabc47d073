"""The main job, end to end: ``crossmodal demo``.

Builds a gallery from the held-out emoji style (OpenMoji colour: drawings the default model
never saw in training), indexes it through a captioned manifest, runs English and Chinese
queries, and writes a page of the hits. Each query is an emoji name; the demo reports at
which rank the emoji itself comes back, so the printout is also a small honest evaluation.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.atomic import atomic_write_text
from crossmodal.errors import StaleWeightsError
from crossmodal.search.index import Hit, Index, IndexConfig
from crossmodal.search.query import Query
from crossmodal.search.rerank import find_reranker, rerank_hits

__all__ = ["DEMO_QUERIES", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

# (query, the label_en of the emoji it names): English and Chinese.
DEMO_QUERIES: tuple[tuple[str, str], ...] = (
    ("red heart", "red heart"),
    ("dog face", "dog face"),
    ("pizza", "pizza"),
    ("rocket", "rocket"),
    ("smiling face with sunglasses", "smiling face with sunglasses"),
    ("猫脸", "cat face"),
    ("汽车", "automobile"),
    ("月亮", "crescent moon"),
)


@dataclass
class DemoQuery:
    """One query's hits and where the emoji it names ranked (None: beyond the hits), also
    after re-ranking the top ``RERANK_TOP`` (when a re-ranker ships for the model)."""

    query: str
    target: str
    hits: list[Hit]
    rank: int | None
    reranked: list[Hit] | None = None
    reranked_rank: int | None = None


RERANK_TOP = 20  # hits the demo re-scores with the shipped re-ranker


@dataclass
class DemoResult:
    """What the demo built and found."""

    gallery: int  # images indexed
    index_dir: Path
    page: Path
    queries: list[DemoQuery] = field(default_factory=list)


def run_demo(
    out: Path,
    *,
    model: str | None = None,
    queries: Sequence[tuple[str, str]] = DEMO_QUERIES,
    k: int = 10,
    progress: bool = False,
    offline: bool = False,
    cache_dir: Path | None = None,
) -> DemoResult:
    """Build the gallery (cached in ``out``), index it, search, write ``out/search.html``."""
    from crossmodal.data.emoji.build import EmojiBuildConfig, build_emoji_dataset
    from crossmodal.search.page import write_results_page

    data = out / "openmoji"
    if not (data / "manifest.jsonl").is_file():
        config = EmojiBuildConfig(
            out_dir=data,
            cache_dir=cache_dir,
            styles=("openmoji",),
            progress=progress,
            offline=offline,
        )
        build_emoji_dataset(config)
    gallery = _gallery_manifest(data, out / "gallery.jsonl")
    index_dir = out / "index"
    try:
        with Index.open(index_dir, IndexConfig(model=model, progress=progress)) as index:
            index.check_weights()  # a fingerprint of the weights file: no model loaded
    except StaleWeightsError:  # the demo's own index, of an earlier release's default model
        log.warning("the model changed since the last demo: indexing its gallery again")
        shutil.rmtree(index_dir)
    with Index.open(index_dir, IndexConfig(model=model, progress=progress)) as index:
        index.add([gallery])
        count = len(index)
        result = DemoResult(gallery=count, index_dir=index_dir, page=out / "search.html")
        reranker = find_reranker(index)  # the one shipped for the model, if any
        for query, target in queries:
            vector = index.query_vector(Query.of(query))
            wide = index.search(vector=vector, texts=[query], k=max(k, RERANK_TOP))
            hits = wide[:k]
            found = DemoQuery(query, target, hits, _rank(hits, target))
            if reranker is not None:
                found.reranked = rerank_hits(index, reranker, vector, wide, RERANK_TOP)[:k]
                found.reranked_rank = _rank(found.reranked, target)
            result.queries.append(found)
    sections = [(f"{q.query}  (looking for: {q.target})", q.hits) for q in result.queries]
    write_results_page(result.page, "demo on the held-out OpenMoji style", sections)
    return result


def _rank(hits: Sequence[Hit], target: str) -> int | None:
    """1-based rank of the hit labelled ``target``, None when it is not among ``hits``."""
    return next((i for i, h in enumerate(hits, 1) if _label(h) == target), None)


def _label(hit: Hit) -> str:
    """The English label of a gallery hit (its caption is "english / 中文")."""
    return (hit.caption or "").split(" / ")[0]


def _gallery_manifest(data: Path, path: Path) -> Path:
    """A JSONL manifest of the gallery: image and caption ("english / 中文")."""
    lines = []
    with (data / "manifest.jsonl").open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if row["style"] != "openmoji":
                continue
            image = (data / row["image"]).resolve()
            caption = f"{row['label_en']} / {row['label_zh']}".rstrip(" /")
            lines.append(json.dumps({"image": str(image), "caption": caption}, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
