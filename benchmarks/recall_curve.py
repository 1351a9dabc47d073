"""Held-out recall against training time: evaluate a run's checkpoints, plot the curves.

For every checkpoint of each run (``RUN/keep/step-*.pt`` or ``RUN/checkpoints/step-*.pt``
of an emoji-mini run of ``scripts/train_emoji_mini.sh``, or of any run with a final
``model.safetensors``), text→image Recall@10 on each evaluation manifest; the training time
of a step is summed from the run's ``metrics.csv`` (batch / samples-per-second of each
step). Writes ``curve.json`` and ``curve.png`` (one line per run and manifest) into ``--out``.

    python benchmarks/recall_curve.py --run 2-styles=runs/m10k/run --run mix=runs/mix4k/run \
        --eval openmoji-en=DATA/eval/test.en.retrieval.jsonl \
        --eval fxemoji-en=DATA/eval/val.en.retrieval.jsonl --out runs/curve
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
from pathlib import Path
from typing import Any

from crossmodal.data.sources import open_source
from crossmodal.encoders.native import NativeEncoder
from crossmodal.encoders.runtime import cpu_has_fast_bf16
from crossmodal.eval.runner import EvalConfig, run_retrieval
from crossmodal.models.clip import CLIP
from crossmodal.models.config import CLIPConfig
from crossmodal.models.weights import read_config
from crossmodal.train.checkpoint import load_checkpoint_state
from crossmodal.train.start import fresh_config


def step_hours(metrics: Path, batch: int) -> dict[int, float]:
    """Hours of training up to each logged step: ``batch`` / samples-per-second, summed."""
    hours, total = {}, 0.0
    with metrics.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rate = float(row["samples_per_s"])
            total += batch / rate / 3600 if rate > 0 else 0.0
            hours[int(row["step"])] = total
    return hours


def architecture(run: Path) -> CLIPConfig:
    """The run's architecture: its final weights' record, else emoji-mini with its tokenizer."""
    if (run / "model.safetensors").is_file():
        return read_config(run / "model.safetensors")
    return fresh_config("emoji-mini", run / "tokenizer.json")


def checkpoints(run: Path) -> list[Path]:
    """The run's checkpoints, by step (kept copies first, else the rotating ones)."""
    found = {p.name: p for p in sorted(run.glob("checkpoints/step-*.pt"))}
    found.update({p.name: p for p in sorted(run.glob("keep/step-*.pt"))})
    return [found[name] for name in sorted(found)]


def evaluate(
    run: Path, evals: dict[str, str], batch: int, train_batch: int
) -> list[dict[str, Any]]:
    """Recall@10 (text→image) of each checkpoint of ``run`` on each manifest."""
    config = architecture(run)
    hours = step_hours(run / "metrics.csv", train_batch)
    rows = []
    for path in checkpoints(run):
        state = load_checkpoint_state(path)
        model = CLIP(config)
        model.load_state_dict(state.model)
        encoder = NativeEncoder(model, f"native:@{path}", device="cpu", precision="fp32")
        row: dict[str, Any] = {"step": state.step, "hours": round(hours.get(state.step, 0), 3)}
        for name, manifest in evals.items():
            lang = "zh" if re.search(r"\.zh\.", manifest) else "en"
            result = run_retrieval(
                encoder, open_source(manifest), EvalConfig(batch_size=batch, language=lang)
            )
            row[name] = round(result.report.recall("text_to_image", 10), 4)
        print(json.dumps(row))
        rows.append(row)
    return rows


def plot(curves: dict[str, list[dict[str, Any]]], evals: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run, rows in curves.items():
        for name in evals:
            ax.plot([r["hours"] for r in rows], [r[name] for r in rows], marker="o",
                    label=f"{run}: {name}")  # fmt: skip
    ax.set_xlabel("training hours (2 CPU cores)")
    ax.set_ylabel("text→image Recall@10")
    ax.set_title("Held-out recall against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR (repeat)")
    p.add_argument("--eval", action="append", required=True, help="NAME=MANIFEST (repeat)")
    p.add_argument("--out", type=Path, required=True, help="folder for curve.json / curve.png")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (256)")
    p.add_argument("--train-batch", type=int, default=128, help="the runs' batch size (128)")
    args = p.parse_args()
    flags = "avx512_bf16/amx" if cpu_has_fast_bf16() else "no native bf16"
    print(f"cpu: {platform.processor() or platform.machine()}, {flags}; path: fp32 eval")
    evals = dict(e.split("=", 1) for e in args.eval)
    curves = {}
    for spec in args.run:
        label, run = spec.split("=", 1)
        curves[label] = evaluate(Path(run), evals, args.batch_size, args.train_batch)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(curves, indent=2) + "\n", encoding="utf-8")
    plot(curves, list(evals), args.out / "curve.png")
    print(f"wrote {args.out / 'curve.json'} and {args.out / 'curve.png'}")


if __name__ == "__main__":
    main()
