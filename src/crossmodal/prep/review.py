"""Review decisions merged into a labels manifest: the corrected manifest, written atomically.

    review = apply_review("labels/", "decisions.json", "reviewed.jsonl")
    review.accepted, review.corrected, review.unreviewed

``decisions.json`` is what the review page exports (:mod:`crossmodal.prep.review_page`): per
item (a row's ``source``) ``accept`` with the label it accepted, or ``correct`` with the new
label. In the corrected manifest every row of ``labels.jsonl`` comes back in order, with

- ``review``: ``"accepted"``, ``"corrected"`` or ``null`` (not reviewed);
- an accepted row: ``needs_review`` false, the rest unchanged;
- a corrected row: ``label`` the new one (a one-item list in multi-label mode),
  ``auto_label`` the model's, ``confidence`` null (the model's probabilities stay in
  ``candidates``), ``needs_review`` false.

With ``drop_unreviewed`` the rows that still need review are left out, so the manifest holds
only labels that are confident or checked by a person. The labels file is only read: writing
the result over it is refused, and the result replaces ``out`` atomically. Every decision must
name a row of the labels file and an accept must name its current label; otherwise nothing is
written and the error names the decision (decisions made on another run, or edited by hand).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from crossmodal.atomic import atomic_write_text
from crossmodal.errors import ConfigError, InputError
from crossmodal.prep.review_page import DECISIONS_FORMAT

__all__ = [
    "Decision",
    "ReviewResult",
    "apply_review",
    "merge_decisions",
    "read_decisions",
    "read_labels",
]

LABELS_FILE = "labels.jsonl"  # what `crossmodal data label` writes into its --out folder
Label = str | list[str]  # one label, or the labels of a multi-label row


@dataclass(frozen=True)
class Decision:
    """A person's decision on one item of the review page."""

    item: str  # the row's "source"
    action: Literal["accept", "correct"]
    label: Label  # the label accepted, or the one it is corrected to


@dataclass(frozen=True)
class ReviewResult:
    """The corrected manifest's rows and what the decisions did."""

    rows: list[dict[str, Any]]  # in the labels file's order (less the dropped ones)
    accepted: int  # rows whose label a person accepted
    corrected: int  # rows whose label a person changed
    new_labels: tuple[str, ...]  # corrected labels no row of the labels file had, sorted
    unreviewed: int  # rows that still need review (kept, unless dropped)
    dropped: int  # rows left out by drop_unreviewed
    path: Path | None = None  # where apply_review wrote the rows


def read_labels(path: str | os.PathLike[str]) -> tuple[Path, list[dict[str, Any]]]:
    """The rows of a ``labels.jsonl`` (or of the ``crossmodal data label`` folder holding it).

    Raises:
        InputError: Missing, unreadable, not JSON lines, or a row without ``source`` and
            ``label`` (the message names the file and line).
    """
    file = Path(path)
    if file.is_dir():
        file = file / LABELS_FILE
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(
            f"{file}: no such labels file; pass the {LABELS_FILE} (or the --out folder) that "
            "`crossmodal data label` wrote"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read the labels ({exc})") from exc
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}:line {number}: not valid JSON ({exc.msg})") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("source"), str)
            or "label" not in row
        ):
            raise InputError(
                f"{file}:line {number}: not a labels row (an object with source and label)"
            )
        rows.append(row)
    if not rows:
        raise InputError(f"{file}: holds no labels")
    return file, rows


def _label(value: Any, where: str) -> Label:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    raise InputError(f"{where}: label must be a class name or a list of them, not {value!r}")


def read_decisions(path: str | os.PathLike[str]) -> list[Decision]:
    """The decisions in a ``decisions.json`` exported by the review page.

    Raises:
        InputError: Missing, unreadable, not JSON, not a decisions file, a decision without
            its item, action or label, or an item decided twice (the message names which).
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{file}: no such decisions file; export it from review.html (Export decisions)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read the decisions ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != DECISIONS_FORMAT:
        raise InputError(
            f'{file}: not a review decisions file (no "format": "{DECISIONS_FORMAT}"); '
            "export it from review.html"
        )
    entries = data.get("decisions")
    if not isinstance(entries, list):
        raise InputError(f'{file}: "decisions" must be a list')
    decisions: list[Decision] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"{file}: decision {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), str):
            raise InputError(f'{where}: must be an object with an "item"')
        item, action = entry["item"], entry.get("action")
        if action not in ("accept", "correct"):
            raise InputError(
                f"{where} ({item!r}): action must be accept or correct, not {action!r}"
            )
        if item in seen:
            raise InputError(f"{where}: item {item!r} is decided twice")
        seen.add(item)
        decisions.append(Decision(item, action, _label(entry.get("label"), f"{where} ({item!r})")))
    return decisions


def merge_decisions(
    rows: list[dict[str, Any]],
    decisions: list[Decision],
    *,
    drop_unreviewed: bool = False,
    where: str = "the decisions",
) -> ReviewResult:
    """``rows`` (not changed) with ``decisions`` applied: see the module docstring.

    Raises:
        InputError: A decision names an item no row has, or accepts a label the row does not
            have (``where`` names the decisions in the message).
    """
    index = {row["source"]: i for i, row in enumerate(rows)}
    known = {name for row in rows for name in _names(row["label"])}
    out = [dict(row, review=None) for row in rows]
    new: set[str] = set()
    for number, decision in enumerate(decisions, start=1):
        at = index.get(decision.item)
        if at is None:
            raise InputError(
                f"{where}: decision {number} is for item {decision.item!r}, which the labels "
                "file does not hold; were the decisions made on another labelling run?"
            )
        row = out[at]
        if decision.action == "accept":
            if _names(decision.label) != _names(row["label"]):
                raise InputError(
                    f"{where}: decision {number} accepts {decision.label!r} for item "
                    f"{decision.item!r}, but the labels file says {row['label']!r}; were the "
                    "decisions made on another labelling run?"
                )
            row.update(review="accepted", needs_review=False)
            continue
        label = decision.label
        if isinstance(row["label"], list) and isinstance(label, str):
            label = [label]  # a multi-label row stays a list
        new.update(n for n in _names(label) if n not in known)
        row.update(
            auto_label=row["label"],
            label=label,
            confidence=None,
            review="corrected",
            needs_review=False,
        )
    unreviewed = sum(bool(row.get("needs_review")) for row in out)
    kept = [r for r in out if not (drop_unreviewed and r.get("needs_review"))]
    return ReviewResult(
        rows=kept,
        accepted=sum(r["review"] == "accepted" for r in out),
        corrected=sum(r["review"] == "corrected" for r in out),
        new_labels=tuple(sorted(new)),
        unreviewed=unreviewed,
        dropped=len(out) - len(kept),
    )


def _names(label: Any) -> list[str]:
    return [str(n) for n in label] if isinstance(label, list) else [str(label)]


def apply_review(
    labels: str | os.PathLike[str],
    decisions: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    drop_unreviewed: bool = False,
) -> ReviewResult:
    """Read ``labels`` and ``decisions``, merge them, write the corrected manifest to ``out``.

    Raises:
        ConfigError: ``out`` is the labels file itself, or a folder.
        InputError: As :func:`read_labels`, :func:`read_decisions` and
            :func:`merge_decisions`; ``out`` cannot be written.
    """
    file, rows = read_labels(labels)
    target = Path(out)
    if target.is_dir():
        raise ConfigError(f"{target}: is a folder; name the corrected manifest to write")
    if target.resolve() == file.resolve() or (target.exists() and target.samefile(file)):
        raise ConfigError(
            f"{target}: is the labels file itself; the review writes a new manifest and never "
            "changes the labels, so name another file"
        )
    result = merge_decisions(
        rows, read_decisions(decisions), drop_unreviewed=drop_unreviewed, where=str(decisions)
    )
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
    try:
        path = atomic_write_text(target, text)
    except OSError as exc:
        raise InputError(f"{target}: cannot write the corrected manifest ({exc})") from exc
    return replace(result, path=path)
