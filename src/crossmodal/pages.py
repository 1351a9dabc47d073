"""One page template and stylesheet for every HTML file crossmodal writes.

    html_document("Cleaning report: photos/", body, css=".why{color:#a00}")

Evaluation reports, query-set reports, the search results page and the demo, the cleaning
report and the label review page all come out of :func:`html_document`: the same head (UTF-8,
a Content-Security-Policy that forbids scripts and every request, pictures inline as data
URIs), the same type, colours, tables, cards and thumbnail grid (:data:`STYLESHEET`), and a
page's own few rules after them.

A page that needs a script (the label review page's accept / correct buttons) passes it to
:func:`html_document`, which inlines it and allows exactly that script by its SHA-256 in the
CSP (``script-src 'sha256-…'``): no other script, inline handler or request can run.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Final

__all__ = ["CSP", "STYLESHEET", "html_document", "script_csp"]

CSP: Final = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLESHEET: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",
"PingFang SC","Microsoft YaHei",sans-serif;color:#1d2330;background:#f3f5f8;margin:0}
main{max-width:1150px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:16px 20px;
margin:0 0 18px}
table{border-collapse:collapse}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e8ebf0;vertical-align:top}
th{background:#f7f8fa;font-weight:600}
td.num,td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.src{font:12px ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(116px,1fr));gap:10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:8px;
overflow-wrap:anywhere}
.muted{color:#6b7385}.tag{display:inline-block;font-size:11px;padding:0 5px;
border-radius:4px;background:#eef2f8;color:#34405a}
"""


def script_csp(script: str) -> str:
    """:data:`CSP` that also lets exactly ``script`` (inline, byte for byte) run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return f"{CSP}; script-src 'sha256-{digest}'"


def html_document(
    title: str, body: str, *, css: str = "", lang: str = "en", script: str = ""
) -> str:
    """A self-contained page: ``body``'s HTML inside ``<main>``, the shared stylesheet then
    ``css``, then ``script`` (if any) inline at the end of the body, allowed by its hash;
    nothing is loaded from anywhere (the CSP forbids it)."""
    if "</script" in script.lower():
        raise ValueError("an inline script cannot contain '</script'")
    csp = script_csp(script) if script else CSP
    head = (
        f'<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLESHEET}{css}</style>"
    )
    tail = f"<script>{script}</script>" if script else ""
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(lang)}"><head>{head}</head>'
        f"<body><main>{body}</main>{tail}</body></html>\n"
    )
