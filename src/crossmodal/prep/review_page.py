"""The auto-label review page: the flagged items, least confident first, to accept or correct.

One self-contained HTML file (thumbnails as data URIs, no request leaves it). Each card has
**Accept** (the label stands), a field to **correct** it (any class of the run, offered as
suggestions, or a new name typed in) and **Undo**; the decisions stay in the browser
(``localStorage``, keyed by the run, so a reload keeps them) until **Export decisions**
downloads ``decisions.json``::

    {"format": "crossmodal.label-decisions", "version": 1, "run": "…", "labels": "…",
     "decisions": [{"item": SOURCE, "action": "accept", "label": LABEL},
                   {"item": SOURCE, "action": "correct", "label": NEW_LABEL}, …]}

``crossmodal data apply-review`` (:mod:`crossmodal.prep.review`) merges them into a corrected
manifest. A static page cannot write files, so the browser keeps the decisions and the
command line writes; the script is inline and allowed by its hash alone
(:func:`crossmodal.pages.html_document`), so the page works offline under a strict CSP.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Final

from crossmodal.data.images import jpeg_data_uri, load_image
from crossmodal.errors import CrossmodalError
from crossmodal.pages import html_document
from crossmodal.prep.labeling import LabelledItem, LabelResult

__all__ = ["DECISIONS_FORMAT", "MAX_REVIEW_CARDS", "render_review_page"]

THUMB: Final = 128  # longest side of a review thumbnail
MAX_REVIEW_CARDS: Final = 500  # the page shows at most this many items (the jsonl has all)
DECISIONS_FORMAT: Final = "crossmodal.label-decisions"  # the "format" of decisions.json
_CSS: Final = (
    ".card{width:220px}.card img{max-width:128px;max-height:128px}.bar{background:#4a7;height:6px}"
    ".review{display:flex;flex-wrap:wrap;gap:4px;margin-top:6px}.review input{width:110px}"
    ".card.accepted{border-color:#4a7;background:#f1faf3}"
    ".card.corrected{border-color:#d80;background:#fff7ea}"
    ".decision{font-weight:600;min-height:1.2em}"
    "#review-bar{position:sticky;top:0;background:#f3f5f8;padding:8px 0;z-index:1}"
)

# The page's one script: decisions per item, kept in localStorage, exported as a JSON file.
_SCRIPT: Final = """
(() => {
  "use strict";
  const root = document.getElementById("review");
  const key = "crossmodal-review:" + root.dataset.run;
  let decisions = {};
  try { decisions = JSON.parse(localStorage.getItem(key) || "{}"); } catch (e) { decisions = {}; }
  const cards = Array.from(document.querySelectorAll(".card[data-item]"));
  const exportButton = document.getElementById("review-export");
  const save = () => { try { localStorage.setItem(key, JSON.stringify(decisions)); } catch (e) {} };
  const show = (card) => {
    const d = decisions[card.dataset.item];
    card.classList.toggle("accepted", !!d && d.action === "accept");
    card.classList.toggle("corrected", !!d && d.action === "correct");
    card.querySelector(".decision").textContent =
      !d ? "" : d.action === "accept" ? "accepted" : "corrected to " + d.label;
  };
  const update = () => {
    const n = cards.filter((c) => c.dataset.item in decisions).length;
    document.getElementById("review-count").textContent = n + " of " + cards.length + " decided";
    exportButton.disabled = n === 0;
  };
  const decide = (card, decision) => {
    const item = card.dataset.item;
    if (decision) { decisions[item] = decision; } else { delete decisions[item]; }
    save(); show(card); update();
  };
  for (const card of cards) {
    const label = JSON.parse(card.dataset.label);
    const input = card.querySelector(".fix");
    const correct = () => {
      const value = input.value.trim();
      if (value) { decide(card, {action: "correct", label: value}); } else { input.focus(); }
    };
    const accept = () => decide(card, {action: "accept", label});
    card.querySelector(".accept").addEventListener("click", accept);
    card.querySelector(".correct").addEventListener("click", correct);
    card.querySelector(".undo").addEventListener("click", () => decide(card, null));
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { correct(); } });
    show(card);
  }
  exportButton.addEventListener("click", () => {
    const out = {
      format: root.dataset.format, version: 1, run: root.dataset.run, labels: root.dataset.labels,
      decisions: cards.filter((c) => c.dataset.item in decisions)
        .map((c) => Object.assign({item: c.dataset.item}, decisions[c.dataset.item])),
    };
    const blob = new Blob([JSON.stringify(out, null, 2) + "\\n"], {type: "application/json"});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "decisions.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  });
  update();
})();
"""


def render_review_page(
    result: LabelResult, report: dict[str, Any], *, run: str, labels: str
) -> str:
    """The review page: the summary, then the flagged items, least confident first.

    ``run`` identifies the labels file (its hash: the browser keeps each run's decisions
    apart); ``labels`` is its path, shown in the command that applies the decisions.
    """
    flagged = sorted(
        (i for i in result.items if i.needs_review), key=lambda i: (i.confidence, i.source)
    )
    accuracy = report["accuracy"]
    lines = [
        f"<p>{report['images']:,} images labelled with {len(result.class_names)} classes by "
        f"{escape(report['model'])}; {report['needs_review']:,} need review (best probability "
        f"under {result.config.threshold:.2f}).</p>"
    ]
    if accuracy["judged"]:
        lines.append(
            "<table><tr><th>items</th><th>n</th><th>accuracy</th></tr>"
            + "".join(
                f"<tr><td>{name}</td><td>{accuracy[name + '_n']:,}</td>"
                f"<td>{_percent(accuracy[name])}</td></tr>"
                for name in ("all", "confident", "needs_review")
            )
            + "</table>"
        )
    shown = flagged[:MAX_REVIEW_CARDS]
    more = f" (the first {len(shown)} of {len(flagged):,})" if len(flagged) > len(shown) else ""
    multi = result.config.multi_label
    cards = "".join(_card(item, multi) for item in shown)
    options = "".join(f'<option value="{escape(name)}">' for name in result.class_names)
    title = f"Labels to review: {report['source']}"
    bar = (
        '<div id="review-bar"><button type="button" id="review-export" disabled>Export '
        'decisions</button> <span id="review-count" class="muted"></span></div>'
        '<p class="muted">Accept a label, or correct it (pick a class or type one), then '
        "export the decisions and apply them: <code>crossmodal data apply-review "
        f"{escape(labels)} decisions.json -o reviewed.jsonl</code></p>"
    )
    body = (
        f'<div id="review" data-run="{escape(run)}" data-labels="{escape(labels)}" '
        f'data-format="{DECISIONS_FORMAT}"><h1>{escape(title)}</h1>{"".join(lines)}'
        f"<h2>Needs review{more}</h2>{bar}"
        f'<datalist id="classes">{options}</datalist><div class="cards">{cards}</div></div>'
    )
    return html_document(title, body, css=_CSS, script=_SCRIPT)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _card(item: LabelledItem, multi: bool) -> str:
    thumb = ""
    if item.image is not None:
        try:
            image = load_image(item.image, draft_size=THUMB)
            thumb = f'<img src="{jpeg_data_uri(image, THUMB, quality=80)}" alt="">'
        except (CrossmodalError, OSError, ValueError):
            thumb = ""
    options = "".join(
        f'<div>{escape(name)} {p:.2f}<div class="bar" style="width:{p * 100:.0f}%"></div></div>'
        for name, p in item.candidates
    )
    truth = f"<div>truth: {escape(item.truth)}</div>" if item.truth is not None else ""
    label = list(item.labels) if multi else item.labels[0]
    shown = ", ".join(item.labels)
    review = (
        f'<div class="review"><button type="button" class="accept">Accept {escape(shown)}'
        '</button><input class="fix" list="classes" placeholder="correct to…" '
        f'aria-label="correct label of {escape(item.source)}"><button type="button" '
        'class="correct">Correct</button><button type="button" class="undo">Undo</button>'
        '</div><div class="decision"></div>'
    )
    return (
        f'<div class="card" data-item="{escape(item.source)}" '
        f'data-label="{escape(json.dumps(label, ensure_ascii=False))}">{thumb}'
        f'<div class="src">{escape(item.source)}</div>{options}{truth}{review}</div>'
    )
