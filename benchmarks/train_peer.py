"""Peer comparison of trainers: crossmodal's ``train`` against OpenCLIP's ``open_clip_train``.

Issue 4: train OpenCLIP's own trainer on the same CSV with the same architecture, batch size
and wall-clock budget; crossmodal must match or beat it on held-out Recall@10 and be at least
1.2x faster in samples/s. Both run in one invocation, each in its own process with the same
torch thread count, then both final models are scored by crossmodal's retrieval evaluation.

Two budgets (``--budget``):

- ``time`` (the issue's): OpenCLIP runs ``--steps`` steps first; crossmodal is then given
  OpenCLIP's training-loop time. A short calibration run (``--calibrate-steps``, same
  settings) measures crossmodal's rate, which sets its step count (so its cosine schedule
  ends where its time does); the report gives both loop times and says whether crossmodal
  stayed within OpenCLIP's.
- ``steps``: both run exactly ``--steps`` steps (same schedule step by step), crossmodal
  first; the report adds how many steps crossmodal would run in OpenCLIP's time.

    python benchmarks/train_peer.py --train-csv /work/emoji-data/train.csv \\
        --eval /work/runs/test_en.jsonl --model emoji-mini --steps 2000 --budget time \\
        --precision bf16 --out runs/peer
    python benchmarks/train_peer.py --train-csv /work/emoji-data/train.csv \\
        --eval /work/runs/test_en.jsonl --model test-tiny --steps 4 --batch-size 8 \\
        --eval-limit 200 --out /tmp/peer-tiny          # a smoke run, seconds

What is made equal (and how):

- architecture: an OpenCLIP model config generated from the crossmodal one (same widths,
  depths, heads, patch, context, vocab, GELU flavour), registered with
  ``open_clip.add_model_config`` inside a wrapper process, with crossmodal's pixel mean/std
  passed as ``--image-mean/--image-std``; both parameter counts are printed;
- data and length: OpenCLIP's CSV loader runs whole epochs (``--train-num-samples`` only
  applies to WebDataset), so the script writes one shuffled subset of the CSV holding
  ``steps / epochs × batch`` rows, with ``epochs`` the smallest divisor of ``steps`` that fits
  the CSV; both trainers read that subset; OpenCLIP runs exactly ``steps`` optimizer steps,
  and so does crossmodal under ``--budget steps`` (under ``time``, as many as fit);
- recipe: AdamW (0.9, 0.98, 1e-6), lr, warmup, cosine to 0, weight decay, gradient clipping
  at norm 1.0 (crossmodal's default), one precision for both (``--precision``: fp32, or
  bf16 autocast), CPU, same loader workers, same threads; augmentation: OpenCLIP's
  default random resized crop (scale 0.9-1) and, for crossmodal, ``--crop-scale 0.9
  --rotation 0`` (the same crop, no rotation).

What differs and is reported rather than hidden: crossmodal exempts token and positional
embeddings from weight decay (OpenCLIP decays every 2-D tensor), and the order of the data
(each trainer shuffles with its own generator).

Throughput is measured the same way on both sides: each trainer's own per-step timer runs
from the end of one optimizer step to the end of the next (data wait included, startup and
checkpoint writing excluded); crossmodal writes it to ``metrics.csv`` and OpenCLIP to its log
(``--log-every-n-steps 1``). ``samples/s`` = samples / sum of step times; ``steady`` drops the
first ``--skip-steps`` steps (thread pools, loader workers starting). The process wall time
(imports, model and data setup, saving) is reported beside it.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_OPENCLIP_WORKER = "_openclip-worker"  # argv[1] of the wrapper process running open_clip_train
_INSTALL_HINT = "pip install 'open_clip_torch[training]'"
_CSV_COLUMNS = ("filepath", "title")  # what both trainers read from the CSV
_RUN_NAME = "peer"  # open_clip_train --name
_OPENCLIP_PRECISION = {"fp32": "fp32", "bf16": "amp_bf16"}  # --precision: the same on both
# open_clip_train's per-step log line (with --log-every-n-steps 1)
_OC_LINE = re.compile(
    r"Train Epoch: (?P<epoch>\d+) \[\s*(?P<seen>\d+)/\d+.*?Batch \(t\): [\d.]+, "
    r"(?P<sps>[\d.eE+-]+)/s.*?Loss: (?P<loss>[\d.eE+-]+)"
)


class PeerError(Exception):
    """A peer run cannot start or did not finish; the message says why and what to do."""


@dataclass(frozen=True)
class PeerConfig:
    """One comparison, built from the command line."""

    train_csv: Path  # OpenCLIP CSV: tab-separated, columns filepath and title
    evals: tuple[Path, ...]  # held-out retrieval manifests
    model: str  # crossmodal native architecture name
    out: Path  # run folder
    batch_size: int = 128  # pairs per optimizer step, both trainers
    steps: int = 1000  # optimizer steps, both trainers
    lr: float = 5e-4  # peak learning rate
    warmup: int = 100  # linear warmup steps
    weight_decay: float = 0.2  # AdamW decay (each trainer's own exemptions)
    grad_clip: float = 1.0  # crossmodal's fixed default, given to OpenCLIP too
    workers: int = 2  # data loader processes, both trainers
    threads: int = 2  # torch intra-op threads, both trainers
    seed: int = 0  # subset shuffle and both trainers' seeds
    eval_limit: int | None = None  # keep the first N rows of each eval manifest
    skip_steps: int | None = None  # warm-up steps left out of the steady rate (None: auto)
    budget: str = "time"  # time: crossmodal gets OpenCLIP's loop time; steps: the same steps
    calibrate_steps: int = 30  # crossmodal steps timed to size its run under budget time
    crossmodal_steps: int | None = None  # budget time: this step count instead of calibrating
    reuse_openclip: bool = False  # take the finished OpenCLIP run already in ``out``
    precision: str = "fp32"  # fp32, or bf16: crossmodal's bf16 autocast, OpenCLIP's amp_bf16


@dataclass(frozen=True)
class DataPlan:
    """The CSV both trainers read and how many passes make exactly ``steps`` steps."""

    csv: Path  # the subset file
    rows: int  # rows in the subset (a multiple of the batch size)
    source_rows: int  # rows in the original CSV
    epochs: int  # passes over the subset; steps = epochs × rows / batch


@dataclass
class TrainerRow:
    """What one trainer did, measured the same way on both sides."""

    trainer: str
    params: int
    steps: int = 0
    final_loss: float = math.nan
    loop_seconds: float = math.nan  # sum of per-step times (data wait included)
    samples_per_s: float = math.nan  # steps × batch / loop_seconds
    steady_samples_per_s: float = math.nan  # the same without the first skip steps
    process_seconds: float = math.nan  # the whole subprocess: imports, setup, training, saving
    weights: str = ""  # checkpoint evaluated
    recall: dict[str, dict[str, float]] = field(default_factory=dict)  # eval → metric → value
    command: str = ""


# ------------------------------------------------------------------------------ architecture


def openclip_model_config(model: str) -> dict[str, Any]:
    """An OpenCLIP model config JSON equal to crossmodal's architecture ``model``."""
    from crossmodal.models.registry import get_model_config

    c = get_model_config(model)
    v, t = c.vision, c.text
    if t.tokenizer != "clip-bpe" or t.pool != "argmax" or c.init_logit_bias is not None:
        raise PeerError(
            f"{model}: the peer run needs OpenCLIP's CLIP layout (clip-bpe tokenizer, argmax "
            f"pool, no logit bias); got tokenizer={t.tokenizer}, pool={t.pool}"
        )
    return {
        "embed_dim": c.embed_dim,
        "quick_gelu": c.quick_gelu,
        "vision_cfg": {
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "width": v.width,
            "layers": v.layers,
            "head_width": v.width // v.heads,
            "mlp_ratio": v.mlp_ratio,
        },
        "text_cfg": {
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
        },
    }


def count_parameters_both(model: str, oc_config: Path) -> tuple[int, int]:
    """Parameters of the fresh crossmodal model and of the OpenCLIP model from ``oc_config``."""
    import open_clip

    from crossmodal.models.clip import count_parameters
    from crossmodal.models.registry import create_model

    native = count_parameters(create_model(model))
    open_clip.add_model_config(oc_config)
    oc_model = open_clip.create_model(oc_config.stem, device="cpu")
    return native, sum(p.numel() for p in oc_model.parameters())


# ------------------------------------------------------------------------------ data


def plan_data(cfg: PeerConfig) -> DataPlan:
    """Write the shuffled CSV subset both trainers read; pick the epochs for ``steps``."""
    with cfg.train_csv.open(encoding="utf-8", newline="") as f:
        header, *lines = f.read().splitlines(keepends=True)
    columns = header.rstrip("\r\n").split("\t")
    missing = [c for c in _CSV_COLUMNS if c not in columns]
    if missing:
        raise PeerError(
            f"{cfg.train_csv}: not an OpenCLIP CSV (tab-separated with columns "
            f"{', '.join(_CSV_COLUMNS)}); missing {missing}, header is {columns}"
        )
    lines = [ln for ln in lines if ln.strip()]
    batches = len(lines) // cfg.batch_size  # whole batches one pass over the CSV gives
    if batches == 0:
        raise PeerError(f"{cfg.train_csv}: {len(lines)} rows, fewer than one batch")
    # smallest epochs E dividing steps with steps/E batches fitting in the CSV
    epochs = next(
        e for e in range(1, cfg.steps + 1) if cfg.steps % e == 0 and cfg.steps // e <= batches
    )
    rows = cfg.steps // epochs * cfg.batch_size
    if epochs > 1 and rows < len(lines) // 2:
        print(
            f"note: {cfg.steps} steps run {epochs} epochs of {rows} of the {len(lines)} rows; "
            f"a step count with a divisor near {batches} would use more of the CSV",
            file=sys.stderr,
        )
    # raw lines, not re-serialised: both parsers see exactly the source bytes
    random.Random(cfg.seed).shuffle(lines)
    subset = cfg.out / "data" / "train.csv"
    subset.parent.mkdir(parents=True, exist_ok=True)
    subset.write_text(header + "".join(lines[:rows]), encoding="utf-8")
    return DataPlan(csv=subset, rows=rows, source_rows=len(lines), epochs=epochs)


def _absolute_images(row: dict[str, Any], root: Path) -> dict[str, Any]:
    """``row`` with its image path (``image`` or ``filepath``) resolved against ``root``."""
    for key in ("image", "filepath"):
        if isinstance(row.get(key), str) and row[key]:
            row[key] = str(root / os.path.expanduser(row[key]))
    return row


def eval_manifests(cfg: PeerConfig) -> list[Path]:
    """The eval manifests, cut to their first ``eval_limit`` rows when asked."""
    if cfg.eval_limit is None:
        return list(cfg.evals)
    out: list[Path] = []
    for path in cfg.evals:
        cut = cfg.out / "data" / f"eval-{len(out)}-{path.name}"
        cut.parent.mkdir(parents=True, exist_ok=True)
        root = path.parent.resolve()  # the cut copy lives elsewhere: relative images from here
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            lines = [json.dumps(_absolute_images(r, root), ensure_ascii=False) + "\n" for r in rows]
            cut.write_text("".join(lines[: cfg.eval_limit]), encoding="utf-8")
        else:  # CSV / TSV with a header
            delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
            reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
            with cut.open("w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, reader.fieldnames or [], delimiter=delimiter)
                writer.writeheader()
                for row in itertools.islice(reader, cfg.eval_limit):
                    writer.writerow(_absolute_images(row, root))
        out.append(cut)
    return out


# ------------------------------------------------------------------------------ trainers


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _run(cmd: list[str], log: Path, threads: int) -> float:
    """Run ``cmd`` with output into ``log``; return its wall time, raise on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(threads)).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
        raise PeerError(f"exit code {rc} from:\n  {shlex.join(cmd)}\n--- {log} (tail) ---\n{tail}")
    return seconds


def _rates(step_seconds: list[float], batch: int, skip: int) -> tuple[float, float, float]:
    """(loop seconds, samples/s over all steps, samples/s without the first ``skip``)."""
    total = sum(step_seconds)
    steady = step_seconds[skip:] or step_seconds
    return total, batch * len(step_seconds) / total, batch * len(steady) / sum(steady)


def run_crossmodal(
    cfg: PeerConfig, plan: DataPlan, row: TrainerRow, skip: int, steps: int, folder: str
) -> None:
    """``crossmodal train`` for ``steps`` on the subset into ``out/folder``; fill ``row``."""
    out = cfg.out / folder
    cmd = [
        sys.executable, "-m", "crossmodal", "train", "--data", str(plan.csv),
        "--model", cfg.model, "--init", "random", "--tokenizer", "clip-bpe",
        "--out", str(out), "--steps", str(steps),
        "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr),
        "--warmup-steps", str(cfg.warmup), "--weight-decay", str(cfg.weight_decay),
        "--crop-scale", "0.9", "--rotation", "0", "--checkpoint-every", "0",
        "--seed", str(cfg.seed), "--precision", cfg.precision, "--device", "cpu",
        "--workers", str(cfg.workers), "--no-progress",
    ]  # fmt: skip
    row.command = shlex.join(cmd)
    row.process_seconds = _run(cmd, out / "stdout.log", cfg.threads)
    from crossmodal.train.records import read_metrics

    metrics = read_metrics(out / "metrics.csv")
    times = [cfg.batch_size / m["samples_per_s"] for m in metrics]
    row.steps, row.final_loss = len(metrics), metrics[-1]["loss"]
    row.loop_seconds, row.samples_per_s, row.steady_samples_per_s = _rates(
        times, cfg.batch_size, skip
    )
    row.weights = f"native:@{out / 'model.safetensors'}"


def run_openclip(
    cfg: PeerConfig, plan: DataPlan, oc_config: Path, row: TrainerRow, skip: int
) -> None:
    """open_clip_train on the subset through the wrapper; fill ``row`` from its log."""
    logs = cfg.out / "openclip" / "logs"
    argv = [
        "--train-data", str(plan.csv), "--dataset-type", "csv", "--csv-separator", "\t",
        "--csv-img-key", _CSV_COLUMNS[0], "--csv-caption-key", _CSV_COLUMNS[1],
        "--model", oc_config.stem, "--batch-size", str(cfg.batch_size),
        "--epochs", str(plan.epochs), "--lr", str(cfg.lr), "--warmup", str(cfg.warmup),
        "--wd", str(cfg.weight_decay), "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6",
        "--grad-clip-norm", str(cfg.grad_clip), "--precision", _OPENCLIP_PRECISION[cfg.precision],
        "--device", "cpu",
        "--workers", str(cfg.workers), "--seed", str(cfg.seed), "--logs", str(logs),
        "--name", _RUN_NAME, "--log-every-n-steps", "1", "--save-frequency", str(plan.epochs),
        "--report-to", "", "--zeroshot-frequency", "0", "--val-frequency", "0",
    ]  # fmt: skip
    from crossmodal.models.registry import get_model_config

    vision = get_model_config(cfg.model).vision  # pixel normalisation: not in OpenCLIP configs
    argv += ["--image-mean", *map(str, vision.mean), "--image-std", *map(str, vision.std)]
    cmd = [sys.executable, str(Path(__file__).resolve()), _OPENCLIP_WORKER, str(oc_config)]
    cmd += [str(cfg.threads), *argv]
    row.command = shlex.join(cmd)
    run_dir = logs / _RUN_NAME
    saved = cfg.out / "openclip" / "process_seconds.json"  # what --reuse-openclip reads
    # the run is identified by its command with the run folder left out, so a copied or
    # moved folder is still recognised
    settings = row.command.replace(str(cfg.out), "OUT")
    if cfg.reuse_openclip:
        done = json.loads(saved.read_text()) if saved.is_file() else {}
        if done.get("command", "").replace(done.get("out", ""), "OUT") != settings:
            raise PeerError(
                f"--reuse-openclip: {saved} holds no finished OpenCLIP run of this command "
                "(other settings, or never finished); run without --reuse-openclip"
            )
        row.process_seconds = float(done["seconds"])
    else:
        if run_dir.exists():  # open_clip_train refuses to reuse an experiment name
            import shutil

            shutil.rmtree(run_dir)
        saved.unlink(missing_ok=True)
        row.process_seconds = _run(cmd, cfg.out / "openclip" / "stdout.log", cfg.threads)
        record = {"command": row.command, "out": str(cfg.out), "seconds": row.process_seconds}
        saved.write_text(json.dumps(record))
    text = (run_dir / "out.log").read_text(encoding="utf-8", errors="replace")
    matches = list(_OC_LINE.finditer(text))
    if not matches:
        raise PeerError(f"{run_dir / 'out.log'}: no 'Train Epoch' lines to read the rates from")
    times = [cfg.batch_size / float(m["sps"]) for m in matches]
    row.steps, row.final_loss = len(matches), float(matches[-1]["loss"])
    row.loop_seconds, row.samples_per_s, row.steady_samples_per_s = _rates(
        times, cfg.batch_size, skip
    )
    row.weights = f"native:{cfg.model}@{run_dir / 'checkpoints' / f'epoch_{plan.epochs}.pt'}"


def calibrate_crossmodal(cfg: PeerConfig, plan: DataPlan, params: int) -> float:
    """Time ``calibrate_steps`` crossmodal steps (same settings); return its samples/s.

    The rate leaves out the first few steps (thread pools starting) but keeps the rest,
    epoch boundaries included, as the real run will have them.
    """
    row = TrainerRow("crossmodal-calibration", params)
    skip = min(5, cfg.calibrate_steps // 3)
    run_crossmodal(cfg, plan, row, skip, cfg.calibrate_steps, "crossmodal-calibration")
    return row.steady_samples_per_s


def steps_in_time(seconds: float, samples_per_s: float, cfg: PeerConfig) -> int:
    """crossmodal's step count for ``seconds`` of loop at ``samples_per_s``, at least 1.

    Two percent is held back for the run's own slow first steps, so that it ends within
    the budget rather than just past it.
    """
    return max(1, int(0.98 * seconds * samples_per_s / cfg.batch_size))


def openclip_worker(argv: list[str]) -> None:
    """The wrapper process: register the generated config, then run open_clip_train."""
    config, threads, *train_argv = argv
    import open_clip
    import torch
    from open_clip_train.main import main

    torch.set_num_threads(int(threads))
    open_clip.add_model_config(config)
    main(train_argv)


# ------------------------------------------------------------------------------ evaluation


def evaluate(row: TrainerRow, manifests: list[Path], threads: int) -> None:
    """Recall@1/5/10 both ways of ``row.weights`` on each manifest (crossmodal's eval)."""
    from crossmodal.data.sources import open_source
    from crossmodal.encoders import load_encoder
    from crossmodal.eval.runner import EvalConfig, run_retrieval

    encoder = load_encoder(row.weights, device="cpu", precision="fp32")
    for path in manifests:
        result = run_retrieval(
            encoder, open_source(str(path), on_missing="skip"), EvalConfig(workers=threads)
        )
        rep = result.report
        name = path.name if path.name not in row.recall else str(path)  # two test.jsonl
        row.recall[name] = {
            f"{short}_R@{k}": 100 * rep.recall(direction, k)
            for short, direction in (("t2i", "text_to_image"), ("i2t", "image_to_text"))
            for k in (1, 5, 10)
        }


# ------------------------------------------------------------------------------ report


def summarise(
    cfg: PeerConfig, plan: DataPlan, rows: list[TrainerRow], sized_by: str = ""
) -> dict[str, Any]:
    """Both rows, the ratios issue 4 asks for, the verdicts and the budget each trainer had.

    ``sized_by`` says how crossmodal's step count was chosen under ``--budget time``.
    """
    cm, oc = rows
    ratios: dict[str, Any] = {
        "samples_per_s": cm.samples_per_s / oc.samples_per_s,
        "steady_samples_per_s": cm.steady_samples_per_s / oc.steady_samples_per_s,
        "process_seconds": oc.process_seconds / cm.process_seconds,
    }
    for name in cm.recall:
        for direction in ("t2i", "i2t"):
            key = f"{direction}_R@10"
            ratios[f"{name}:{key}_diff"] = cm.recall[name][key] - oc.recall[name][key]
    summary: dict[str, Any] = {
        "config": asdict(cfg),
        "data": {k: str(v) for k, v in asdict(plan).items()},
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
        "issue4": {
            "faster_1.2x": ratios["steady_samples_per_s"] >= 1.2,
            "recall10_match_or_beat": all(
                v >= 0 for k, v in ratios.items() if k.endswith("R@10_diff")
            ),
        },
    }
    summary["budget"] = {
        "kind": cfg.budget,
        "openclip_loop_seconds": oc.loop_seconds,
        "crossmodal_loop_seconds": cm.loop_seconds,
        "openclip_steps": oc.steps,
        "crossmodal_steps": cm.steps,
    }
    if cfg.budget == "time":
        summary["issue4"]["within_time_budget"] = cm.loop_seconds <= oc.loop_seconds
        summary["budget"]["sized_by"] = sized_by
    else:
        summary["budget"]["crossmodal_steps_in_openclip_time_estimate"] = int(
            oc.loop_seconds * cm.steady_samples_per_s / cfg.batch_size
        )
    return summary


def render_markdown(summary: dict[str, Any]) -> str:
    """The table and ratios as Markdown (also what is printed)."""
    rows = summary["rows"]
    evals = list(rows[0]["recall"])
    head = (
        "| trainer | params | steps | final loss | samples/s | steady samples/s | loop s "
        "| process s |"
    )
    lines = [head, "|---" * 8 + "|"]
    for r in rows:
        lines.append(
            f"| {r['trainer']} | {r['params']:,} | {r['steps']} | {r['final_loss']:.4f} | "
            f"{r['samples_per_s']:.1f} | {r['steady_samples_per_s']:.1f} | "
            f"{r['loop_seconds']:.1f} | {r['process_seconds']:.1f} |"
        )
    for name in evals:
        keys = list(rows[0]["recall"][name])
        lines += ["", f"Retrieval on `{name}` (%):", "", "| trainer | " + " | ".join(keys) + " |"]
        lines.append("|---" * (len(keys) + 1) + "|")
        for r in rows:
            vals = " | ".join(f"{r['recall'][name][k]:.2f}" for k in keys)
            lines.append(f"| {r['trainer']} | {vals} |")
    lines += ["", "Ratios (crossmodal vs OpenCLIP):", ""]
    lines += [f"- {k}: {v:.3f}" for k, v in summary["ratios"].items()]
    lines += [f"- issue 4, {k}: {v}" for k, v in summary["issue4"].items()]
    b = summary["budget"]
    if b["kind"] == "time":
        lines.append(
            f"- budget time: OpenCLIP {b['openclip_steps']} steps in "
            f"{b['openclip_loop_seconds']:.1f} s of loop; crossmodal "
            f"{b['crossmodal_steps']} steps in "
            f"{b['crossmodal_loop_seconds']:.1f} s (sized by {b['sized_by']})"
        )
    else:
        lines.append(
            f"- budget steps: in OpenCLIP's loop time ({b['openclip_loop_seconds']:.1f} s) "
            f"crossmodal would run about {b['crossmodal_steps_in_openclip_time_estimate']} "
            "steps (an estimate from its steady rate, no extra run)"
        )
    d = summary["data"]
    lines += [
        "",
        f"Data: {d['rows']} of {d['source_rows']} rows of the CSV (shuffled subset {d['csv']}),"
        f" {d['epochs']} epoch(s).",
        "",
        "Commands:",
        "",
    ]
    lines += [f"    {r['command']}" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None = None) -> PeerConfig:
    """Turn the command line into a :class:`PeerConfig`."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--train-csv", type=Path, required=True, help="OpenCLIP CSV (tab, filepath/title)"
    )
    p.add_argument("--eval", type=Path, nargs="+", required=True, help="retrieval manifest(s)")
    p.add_argument("--model", default="emoji-mini", help="crossmodal architecture (emoji-mini)")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step (128)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps, both (1000)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (5e-4)")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps (100)")
    p.add_argument("--weight-decay", type=float, default=0.2, help="AdamW decay (0.2)")
    p.add_argument("--workers", type=int, default=2, help="data loader processes (2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="subset shuffle and trainer seeds (0)")
    p.add_argument("--eval-limit", type=int, help="first N rows of each eval manifest only")
    p.add_argument("--skip-steps", type=int, help="warm-up steps left out of 'steady'")
    p.add_argument("--budget", choices=("time", "steps"), default="time",
                   help="time: crossmodal gets OpenCLIP's loop time (default); steps: both "
                   "run --steps")  # fmt: skip
    p.add_argument("--calibrate-steps", type=int, default=30,
                   help="crossmodal steps timed to size a --budget time run (30)")  # fmt: skip
    p.add_argument("--crossmodal-steps", type=int,
                   help="--budget time: run crossmodal this many steps, no calibration (e.g. "
                   "sized from an earlier run's measured rate)")  # fmt: skip
    p.add_argument("--reuse-openclip", action="store_true",
                   help="take the finished OpenCLIP run of the same command in --out")  # fmt: skip
    p.add_argument("--precision", choices=sorted(_OPENCLIP_PRECISION), default="fp32",
                   help="both trainers: fp32, or bf16 autocast (OpenCLIP's amp_bf16)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="run folder")
    a = p.parse_args(argv)
    for name in ("batch_size", "steps", "threads", "calibrate_steps", "crossmodal_steps"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for path in (a.train_csv, *a.eval):
        if not path.is_file():
            p.error(f"{path}: no such file")
    return PeerConfig(
        train_csv=a.train_csv, evals=tuple(a.eval), model=a.model, out=a.out,
        batch_size=a.batch_size, steps=a.steps, lr=a.lr, warmup=a.warmup,
        weight_decay=a.weight_decay, workers=a.workers, threads=a.threads, seed=a.seed,
        eval_limit=a.eval_limit, skip_steps=a.skip_steps, budget=a.budget,
        calibrate_steps=a.calibrate_steps, crossmodal_steps=a.crossmodal_steps,
        reuse_openclip=a.reuse_openclip, precision=a.precision,
    )  # fmt: skip


def check_openclip_train() -> None:
    """Raise :class:`PeerError` with the install command when open_clip_train cannot run."""
    try:
        import open_clip_train.main  # noqa: F401  (pulls in pandas, webdataset, ...)
    except ImportError as exc:
        raise PeerError(f"open_clip_train cannot be imported ({exc}); {_INSTALL_HINT}") from exc


def run_peer(cfg: PeerConfig) -> dict[str, Any]:
    """Both trainers, both evaluations, the report files; return the summary."""
    import torch

    check_openclip_train()
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    oc_config = cfg.out / "openclip" / "model_configs" / f"peer-{cfg.model}.json"
    oc_config.parent.mkdir(parents=True, exist_ok=True)
    oc_config.write_text(json.dumps(openclip_model_config(cfg.model), indent=2) + "\n")
    native_params, oc_params = count_parameters_both(cfg.model, oc_config)
    print(f"parameters: crossmodal {native_params:,}  OpenCLIP {oc_params:,}", flush=True)
    if native_params != oc_params:
        print("WARNING: parameter counts differ; the architectures are not equal", file=sys.stderr)
    plan = plan_data(cfg)
    skip = cfg.skip_steps if cfg.skip_steps is not None else min(10, cfg.steps // 5)
    rows = [TrainerRow("crossmodal", native_params), TrainerRow("OpenCLIP", oc_params)]
    sized_by = ""
    if cfg.budget == "steps":
        run_crossmodal(cfg, plan, rows[0], skip, cfg.steps, "crossmodal")
        run_openclip(cfg, plan, oc_config, rows[1], skip)
    else:
        run_openclip(cfg, plan, oc_config, rows[1], skip)
        if cfg.crossmodal_steps is None:
            rate = calibrate_crossmodal(cfg, plan, native_params)
            steps = steps_in_time(rows[1].loop_seconds, rate, cfg)
            sized_by = f"a {cfg.calibrate_steps}-step calibration at {rate:.1f} samples/s"
        else:
            steps = cfg.crossmodal_steps
            sized_by = f"--crossmodal-steps {steps}"
        print(f"crossmodal gets OpenCLIP's {rows[1].loop_seconds:.1f} s: {steps} steps", flush=True)
        run_crossmodal(cfg, plan, rows[0], skip, steps, "crossmodal")
    manifests = eval_manifests(cfg)
    for row in rows:
        evaluate(row, manifests, cfg.threads)
    summary = summarise(cfg, plan, rows, sized_by)
    summary["skip_steps"] = skip
    page = render_markdown(summary)
    (cfg.out / "peer.json").write_text(
        json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (cfg.out / "peer.md").write_text("# Trainer peer comparison\n\n" + page, encoding="utf-8")
    print(page)
    print(f"wrote {cfg.out / 'peer.json'} and {cfg.out / 'peer.md'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point; also the OpenCLIP wrapper when called with the worker marker."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_OPENCLIP_WORKER]:
        openclip_worker(argv[1:])
        return 0
    try:
        run_peer(parse_args(argv))
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
