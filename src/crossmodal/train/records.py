"""Training records: ``metrics.csv`` written line by line, and ``curves.png`` at the end."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TextIO

from crossmodal.atomic import atomic_write_text

__all__ = ["METRIC_COLUMNS", "MetricsLog", "plot_curves", "read_metrics"]

log = logging.getLogger(__name__)

METRIC_COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "loss",
    "lr",
    "grad_norm",
    "logit_scale",
    "samples_per_s",
)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a metrics CSV as floats (an empty cell reads as NaN)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


class MetricsLog:
    """Appends one CSV row per optimizer step to ``path``, flushed line by line.

    ``extra`` names columns after the common ones (an objective's own terms, e.g.
    ``distill``). A fresh run starts the file over. A resumed run (``resume_step`` set)
    first drops the rows after the step it resumes from (the killed run may have logged past
    its last checkpoint), rewriting the file atomically, then appends.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resume_step: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.path = Path(path)  # the CSV file
        self.columns = METRIC_COLUMNS + tuple(c for c in extra if c not in METRIC_COLUMNS)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, float]] = []
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r.get("step", math.inf) <= resume_step]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in kept:
            writer.writerow(_cells(row, self.columns))
        atomic_write_text(self.path, buffer.getvalue())
        self._file: TextIO = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file, lineterminator="\n")

    def write(self, row: Mapping[str, float]) -> None:
        """Append one row (missing or NaN columns stay empty) and flush it."""
        self._writer.writerow(_cells(row, self.columns))
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _cells(row: Mapping[str, float], columns: tuple[str, ...] = METRIC_COLUMNS) -> list[str]:
    cells = []
    for column in columns:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            cells.append("")
        elif column in ("step", "epoch"):
            cells.append(str(int(value)))
        else:
            cells.append(f"{value:.8g}")
    return cells


def plot_curves(
    metrics_path: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> Path | None:
    """Plot loss and learning rate against step into a PNG; None if matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib is not installed; skipping %s (pip install matplotlib)", out_path)
        return None
    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_lr = fig.subplots(1, 2)
    ax_loss.plot(steps, [r["loss"] for r in rows])
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:orange")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    out = Path(out_path)
    fig.savefig(out, dpi=100)
    return out
