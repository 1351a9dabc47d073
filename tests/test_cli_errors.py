"""Bad invocations get one line and exit 1 (our check) or 2 (argparse), never a traceback,
and leave nothing behind (issue 25.2, 25.4, 25.5). In-process, on a real small index."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.errors import ConfigError
from crossmodal.heads.classify import MultimodalClassifier
from crossmodal.heads.task import save_classifier
from crossmodal.search.index import Index
from crossmodal.search.query import parse_query
from crossmodal.search.searcher import Searcher

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    shutil.copytree(EXAMPLES, root / "gallery")
    with Index.open(root / "db") as index:
        index.add([root / "gallery"])
    (root / "a_file").write_text("not an index")
    # classifier heads, untrained: for the embedded model, for a 32-d encoder, and one whose
    # description (hidden 256) does not fit its weights (hidden 16)
    for name, dim, encoder, hidden in (
        ("head", 256, "native:emoji-mini", 16),
        ("tiny", 32, "native:test-tiny", 16),
        ("bad", 256, "native:emoji-mini", 256),
    ):
        model = MultimodalClassifier("gated", dim, 2, hidden=16)
        save_classifier(
            model, root / f"{name}.safetensors", encoder=encoder, classes=["a", "b"], hidden=hidden
        )
    row = json.dumps({"image": f"gallery/{_first_image()}"})
    (root / "m.jsonl").write_text(row + "\n", encoding="utf-8")
    # a labels file of `data label` and review decisions for an item it does not hold
    label_row = {"image": "x.png", "source": "x.png", "label": "a", "needs_review": True}
    (root / "labels.jsonl").write_text(json.dumps(label_row) + "\n", encoding="utf-8")
    stray = {"item": "zebra.png", "action": "accept", "label": "a"}
    decisions = {"format": "crossmodal.label-decisions", "version": 1, "decisions": [stray]}
    (root / "decisions.json").write_text(json.dumps(decisions), encoding="utf-8")
    return root / "db"


def _first_image() -> str:
    return sorted(p.name for p in EXAMPLES.iterdir())[0]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


# (argv with {db} / {root}, exit code, words the one error line must hold)
CASES = [
    (["search", "red", "--db", "{db}", "--top", "0"], 2, "--top: expected 1 to"),
    (["search", "red", "--db", "{db}", "--top", "-1"], 2, "not -1"),
    (["search", "red", "--db", "{db}", "--top", "99999999999999999999"], 2, "--top"),
    (["search", "red", "--db", "{db}", "--top", "ten"], 2, "a whole number, not 'ten'"),
    (["search", "red", "--db", "{db}", "--rerank", "-5"], 2, "--rerank: expected 1 to"),
    (["search", "red", "--db", "{db}", "--html", "{root}"], 1, "a folder; name the page"),
    (["index", "{root}/gallery", "--db", "{root}/a_file"], 1, "a file, not an index folder"),
    (["index", "{root}/missing", "--db", "{root}/new_db"], 1, "missing: no such file"),
    (["search", "red", "--db", "{root}/no_db"], 1, "no crossmodal index here"),
    (["serve", "--db", "{db}", "--port", "70000"], 2, "a port is 0 to 65535"),
    (["serve", "--db", "{db}", "--port", "http"], 2, "a port number, not 'http'"),
    (["classify", "{root}/no_head", "{root}/gallery", "-o", "{root}/p.jsonl"], 1, "no such head"),
    (["classify", "{root}/a_file", "{root}/gallery", "-o", "{root}/p.jsonl"], 1, "not a crossm"),
    (["classify", "{root}/bad.safetensors", "{root}", "-o", "{root}/p.csv"], 1, "does not rebuild"),
    (["classify", "{root}/head.safetensors", "{root}/gallery", "-o", "{root}/p.txt"], 1, ".csv"),
    (["classify", "{root}/head.safetensors", "{root}", "-o", "{root}/gallery"], 1, "a folder"),
    (["classify", "{root}/head.safetensors", "{root}/missing", "-o", "{root}/p.csv"], 1, "no such"),
    (
        [
            "classify",
            "{root}/tiny.safetensors",
            "{root}/gallery",
            "-m",
            "emoji-mini",
            "-o",
            "{root}/p.csv",
        ],
        1,
        "trained on 32-d features of 'native:test-tiny'",
    ),
    (
        [
            "classify",
            "{root}/head.safetensors",
            "{root}/m.jsonl",
            "--label-column",
            "y",
            "-o",
            "{root}/p.csv",
        ],
        1,
        "no label column 'y'",
    ),
    (
        [
            "data",
            "apply-review",
            "{root}/labels.jsonl",
            "{root}/decisions.json",
            "-o",
            "{root}/p.j",
        ],
        1,
        "item 'zebra.png', which the labels file does not hold",
    ),
    (
        ["data", "apply-review", "{root}/labels.jsonl", "{root}/none.json", "-o", "{root}/p.j"],
        1,
        "no such decisions file",
    ),
    (
        ["data", "apply-review", "{root}/gallery", "{root}/decisions.json", "-o", "{root}/p.j"],
        1,
        "no such labels file",
    ),
    (
        [
            "data",
            "apply-review",
            "{root}/labels.jsonl",
            "{root}/decisions.json",
            "-o",
            "{root}/labels.jsonl",
        ],
        1,
        "is the labels file itself",
    ),
    (
        [
            "classify",
            "{root}/head.safetensors",
            "{root}/gallery",
            "--top-k",
            "0",
            "-o",
            "{root}/p.csv",
        ],
        2,
        "--top-k: expected 1 to",
    ),
]


@pytest.mark.parametrize(("argv", "code", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_bad_invocation_says_what_is_wrong_in_one_line(
    db: Path, argv: list[str], code: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = db.parent
    args = [a.format(db=db, root=root) for a in argv]
    got, err = _run(args, capsys)
    lines = [line for line in err.splitlines() if line.startswith("crossmodal")]
    assert got == code, err
    assert "Traceback" not in err and len(lines) == 1 and words in lines[0], err
    assert not (root / "new_db").exists()  # a typo leaves no empty index behind
    assert not list(root.glob("p.*"))  # nor a predictions file


def test_k_is_clamped_to_what_the_index_holds(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A billion hits asked of a 4-picture index: four hits, in megabytes, not gigabytes."""
    with Index.open(db) as index:
        index.search(text="red circle", k=1)  # the model and the query bank, loaded once
        searcher = Searcher(index)
        query = searcher.parsed(parse_query(["red", "circle"]))
        tracemalloc.start()
        hits = index.search(text="red circle", k=1_000_000_000)
        found = searcher.search(query, k=10**12)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(hits) == len(index) == len(found.hits) == 4
        assert peak < 64 * 2**20, peak
        with pytest.raises(ConfigError, match="rerank at least 0"):
            searcher.search(query, rerank=-5)
    assert main(["search", "red", "--db", str(db), "--top", "1000000000", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
