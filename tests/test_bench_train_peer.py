"""benchmarks/train_peer.py: architecture parity, the data plan and the log parser (no training)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_peer.py"


@pytest.fixture(scope="module")
def peer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_peer", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_peer"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_openclip_config_has_the_same_parameters(peer: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    config = tmp_path / "peer-test-tiny.json"
    config.write_text(json.dumps(peer.openclip_model_config("test-tiny")))
    native, openclip = peer.count_parameters_both("test-tiny", config)
    assert native == openclip


def test_plan_data_runs_exactly_the_steps(peer: ModuleType, tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("filepath\ttitle\n" + "".join(f"/img/{i}.png\tcap {i}\n" for i in range(50)))
    cfg = peer.PeerConfig(
        train_csv=csv, evals=(), model="test-tiny", out=tmp_path / "out", batch_size=4, steps=30
    )
    plan = peer.plan_data(cfg)
    # 12 batches fit in one pass; the smallest divisor of 30 with 30/E <= 12 is E = 3
    assert (plan.epochs, plan.rows, plan.source_rows) == (3, 40, 50)
    lines = plan.csv.read_text().splitlines()
    assert lines[0] == "filepath\ttitle" and len(lines) == 41 and len(set(lines)) == 41


def test_plan_data_refuses_a_csv_without_the_columns(peer: ModuleType, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("image,caption\na.png,x\n")
    cfg = peer.PeerConfig(train_csv=csv, evals=(), model="test-tiny", out=tmp_path, steps=1)
    with pytest.raises(peer.PeerError, match="filepath"):
        peer.plan_data(cfg)


def test_openclip_log_line_parses(peer: ModuleType) -> None:
    line = (
        "2026-11-29,06:52:05 | INFO | Train Epoch: 0 [32/32 (100%)] Data (t): 0.015 "
        "Batch (t): 0.133, 60.2468/s, 60.2468/s/gpu LR: 0.000125 Logit Scale: 14.267 "
        "Contrastive_loss: 2.3671 (2.6157) Loss: 2.3671 (2.6157)"
    )
    m = peer._OC_LINE.search(line)
    assert m is not None and float(m["sps"]) == 60.2468 and float(m["loss"]) == 2.3671


def test_eval_limit_keeps_relative_images_readable(peer: ModuleType, tmp_path: Path) -> None:
    """The cut copy lives in the run folder: images relative to the manifest still resolve."""
    from PIL import Image

    from crossmodal.data.sources import open_source

    (tmp_path / "images").mkdir()
    rows = []
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "images" / f"{i}.png")
        rows.append({"image": f"../images/{i}.png", "caption": [f"picture {i}"]})
    (tmp_path / "eval").mkdir()
    manifest = tmp_path / "eval" / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = tmp_path / "eval" / "test.csv"  # OpenCLIP's convention, tab-separated
    table.write_text(
        "filepath\ttitle\n" + "".join(f"../images/{i}.png\tpicture {i}\n" for i in range(4))
    )
    cfg = peer.PeerConfig(
        train_csv=tmp_path / "x.csv",
        evals=(manifest, table),
        model="test-tiny",
        out=tmp_path / "run",
        eval_limit=3,
    )
    cut, cut_table = peer.eval_manifests(cfg)
    assert cut.parent == tmp_path / "run" / "data"
    samples = list(open_source(str(cut)))
    assert [s.captions for s in samples] == [("picture 0",), ("picture 1",), ("picture 2",)]
    assert [s.captions for s in open_source(str(cut_table))] == [s.captions for s in samples]


def test_time_budget_sizes_crossmodal_to_openclips_loop_time(peer: ModuleType) -> None:
    cfg = peer.PeerConfig(
        train_csv=Path("x.csv"), evals=(), model="test-tiny", out=Path("."), batch_size=128
    )
    # 1,800 s of OpenCLIP loop at 200 samples/s: 2,812.5 steps, 2% held back -> 2,756
    assert peer.steps_in_time(1800.0, 200.0, cfg) == 2756
    assert peer.steps_in_time(0.01, 1.0, cfg) == 1  # never zero steps


def _row(peer: ModuleType, name: str, steps: int, loop: float, r10: float) -> Any:
    row = peer.TrainerRow(name, 10, steps=steps, loop_seconds=loop)
    row.samples_per_s = row.steady_samples_per_s = steps * 128 / loop
    row.recall = {"test.jsonl": {"t2i_R@10": r10, "i2t_R@10": r10}}
    return row


@pytest.mark.parametrize(
    ("cm_loop", "cm_r10", "within", "beats"),
    [(990.0, 11.0, True, True), (1010.0, 11.0, False, True), (990.0, 9.0, True, False)],
)
def test_summary_verdicts_under_a_time_budget(
    peer: ModuleType, cm_loop: float, cm_r10: float, within: bool, beats: bool
) -> None:
    cfg = peer.PeerConfig(
        train_csv=Path("x.csv"), evals=(), model="test-tiny", out=Path("."), budget="time"
    )
    plan = peer.DataPlan(csv=Path("s.csv"), rows=256, source_rows=300, epochs=1)
    rows = [
        _row(peer, "crossmodal", 1500, cm_loop, cm_r10),
        _row(peer, "OpenCLIP", 1000, 1000.0, 10.0),
    ]
    summary = peer.summarise(cfg, plan, rows)
    assert summary["issue4"]["within_time_budget"] is within
    assert summary["issue4"]["recall10_match_or_beat"] is beats
    assert summary["issue4"]["faster_1.2x"] is (1500 / cm_loop >= 1.2)
    assert summary["budget"]["crossmodal_steps"] == 1500
    summary["budget"]["sized_by"] = "a 30-step calibration at 190.0 samples/s"
    assert "crossmodal 1500 steps" in peer.render_markdown(summary)


def test_reuse_openclip_recognises_a_moved_run_folder(peer: ModuleType, tmp_path: Path) -> None:
    """A finished OpenCLIP run copied to another --out is reused; other settings are refused."""
    line = (
        "Train Epoch: 0 [128/128 (100%)] Data (t): 0.01 Batch (t): 0.9, 140.0/s, 140.0/s/gpu "
        "LR: 0.001 Logit Scale: 14.2 Contrastive_loss: 2.5 (2.5) Loss: 2.5 (2.5)\n"
    )

    def setup(out: Path, **changes: Any) -> tuple[Any, Any, Any]:
        cfg = peer.PeerConfig(
            train_csv=Path("x.csv"), evals=(), model="test-tiny", out=out, **changes
        )
        plan = peer.DataPlan(csv=out / "data" / "train.csv", rows=128, source_rows=128, epochs=1)
        return cfg, plan, peer.TrainerRow("OpenCLIP", 10)

    first = tmp_path / "first"
    cfg, plan, row = setup(first, reuse_openclip=True)
    oc_config = first / "openclip" / "model_configs" / "peer-test-tiny.json"
    with pytest.raises(peer.PeerError, match="reuse-openclip"):  # nothing recorded yet
        peer.run_openclip(cfg, plan, oc_config, row, 0)  # (the row gets its command first)
    (first / "openclip" / "logs" / "peer").mkdir(parents=True)
    (first / "openclip" / "logs" / "peer" / "out.log").write_text(line)
    record = {"command": row.command, "out": str(first), "seconds": 12.5}
    (first / "openclip" / "process_seconds.json").write_text(json.dumps(record))
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    cfg, plan, row = setup(moved, reuse_openclip=True)
    peer.run_openclip(cfg, plan, moved / "openclip" / "model_configs" / oc_config.name, row, 0)
    assert (row.process_seconds, row.steps, row.final_loss) == (12.5, 1, 2.5)
    cfg, plan, row = setup(moved, reuse_openclip=True, lr=0.1)
    with pytest.raises(peer.PeerError, match="reuse-openclip"):
        peer.run_openclip(cfg, plan, moved / "openclip" / "model_configs" / oc_config.name, row, 0)
