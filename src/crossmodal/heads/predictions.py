"""The predictions file of ``crossmodal classify``: one row per sample, JSONL or CSV.

Columns: ``image`` (the sample's path, or ``shard.tar:key``), ``label`` (the predicted
class), ``probability`` (its softmax probability), ``top_k`` (the most probable classes and
their probabilities; in CSV as JSON text) and ``truth`` (the input's own label, or empty).
With ``image`` and ``label`` the file is a manifest again: pseudo-labels that ``crossmodal
train --task classify`` can read. The file is written atomically: a reader sees the previous
file or the whole new one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from crossmodal.atomic import atomic_write_text
from crossmodal.errors import ConfigError, InputError
from crossmodal.heads.apply import Prediction

__all__ = ["PREDICTION_SUFFIXES", "check_predictions_path", "write_predictions"]

PREDICTION_SUFFIXES: Final = (".jsonl", ".csv")  # the formats, by the file's suffix
_COLUMNS: Final = ("image", "label", "probability", "top_k", "truth")


def check_predictions_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a predictions file to write (checked before any work is done).

    Raises:
        ConfigError: It is a folder, or its suffix is not ``.jsonl`` or ``.csv``.
    """
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; name the predictions file to write")
    if out.suffix.lower() not in PREDICTION_SUFFIXES:
        raise ConfigError(
            f"{out}: a predictions file ends in {' or '.join(PREDICTION_SUFFIXES)}, "
            "which picks its format"
        )
    return out


def _record(p: Prediction) -> dict[str, Any]:
    return {
        "image": p.source,
        "label": p.label,
        "probability": round(p.probability, 6),
        "top_k": [{"label": name, "p": round(prob, 6)} for name, prob in p.top_k],
        "truth": p.truth,
    }


def write_predictions(predictions: Sequence[Prediction], path: str | os.PathLike[str]) -> Path:
    """Write ``predictions`` to ``path`` (``.jsonl`` or ``.csv``) atomically; return it.

    Raises:
        ConfigError: As :func:`check_predictions_path`.
        InputError: The file cannot be written (the message names it).
    """
    out = check_predictions_path(path)
    records = [_record(p) for p in predictions]
    if out.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "top_k": json.dumps(r["top_k"], ensure_ascii=False)})
        text = buffer.getvalue()
    try:
        return atomic_write_text(out, text)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the predictions ({exc})") from exc
