"""A query set's result on disk: ``results.json`` and a self-contained ``report.html``.

The page shows success@k against chance, overall, by language and by kind, then every query
that missed the top 10 with the five images it found instead and where its answer ranked.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

from crossmodal.errors import InputError
from crossmodal.eval.queries import QUERY_KS, QuerySetResult
from crossmodal.eval.report import THUMBNAIL_SIZE, Thumbnails, html_page, write_atomic

__all__ = ["MAX_MISSES_SHOWN", "render_query_report", "write_query_report"]

MAX_MISSES_SHOWN = 120  # queries listed under "missed the top 10"


def write_query_report(result: QuerySetResult, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``results.json`` (first) and ``report.html`` into ``out_dir``; the page's path.

    Raises:
        InputError: ``out_dir`` cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the report folder ({exc})") from exc
    data = json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / "results.json", data.encode("utf-8"))
    page = out / "report.html"
    write_atomic(page, render_query_report(result).encode("utf-8"))
    return page


def render_query_report(result: QuerySetResult) -> str:
    """The HTML page of a query-set result, as one string."""
    title = "Query set"
    meta = [
        ("model", result.model),
        ("queries", f"{len(result.outcomes)} from {result.queries_file}"),
        ("gallery", f"{result.n_images} images in {result.gallery}"),
        ("not scored", f"{len(result.unanswerable)} (no answer in the gallery)"),
        ("run time", f"{result.seconds:.1f} s"),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta)
    header = f'<section><h1>{title}</h1><dl class="meta">{rows}</dl></section>'
    return html_page(title, result.model, header + _table(result) + _misses(result))


def _table(result: QuerySetResult) -> str:
    heads = "".join(f"<th>success@{k}</th><th>chance</th>" for k in QUERY_KS)
    body = []
    groups: list[tuple[str, str | None, str | None]] = [("all", None, None)]
    groups += [(f"lang {lang}", lang, None) for lang in result.languages()]
    groups += [(f"kind {kind}", None, kind) for kind in result.kinds()]
    for name, lang, kind in groups:
        n = len(result.chosen(kind, lang))
        cells = "".join(
            f'<td class="num">{result.success(k, kind, lang):.3f}</td>'
            f'<td class="num muted">{result.chance(k, kind, lang):.3f}</td>'
            for k in QUERY_KS
        )
        body.append(f'<tr><td>{escape(name)}</td><td class="num">{n}</td>{cells}</tr>')
    table = f"<table><tr><th>queries</th><th>n</th>{heads}</tr>{''.join(body)}</table>"
    return f"<section><h2>Success against chance</h2>{table}</section>"


def _misses(result: QuerySetResult) -> str:
    thumbs = Thumbnails(THUMBNAIL_SIZE)
    missed = [o for o in result.outcomes if o.rank is None or o.rank > 10]
    cards = []
    for o in missed[:MAX_MISSES_SHOWN]:
        images = "".join(thumbs.tag(path) for path in o.top)
        where = "not in the gallery" if o.rank is None else f"first answer at rank {o.rank}"
        cards.append(
            f"<tr><td><b>{escape(o.query.text)}</b><br><span class=muted>"
            f"{escape(o.query.kind)} · {escape(where)} · answers "
            f"{escape(', '.join(o.query.answers[:6]))}</span></td>"
            f"<td style='white-space:nowrap'>{images}</td></tr>"
        )
    more = len(missed) - len(cards)
    tail = f'<p class="muted">{more} more in results.json.</p>' if more > 0 else ""
    return (
        f"<section><h2>Missed the top 10 ({len(missed)})</h2>"
        f"<table>{''.join(cards)}</table>{tail}</section>"
    )
