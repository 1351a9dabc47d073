"""Dataset sources: class folders, CSV / JSONL manifests, WebDataset shards, and bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal.data.images import load_image
from crossmodal.data.sources import (
    DataSource,
    FolderSource,
    ManifestSource,
    Sample,
    WebDatasetSource,
    expand_shards,
    open_dataset,
    open_source,
)
from crossmodal.errors import ConfigError, ImageDecodeError, InputError

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 210)}


def solid(rgb: tuple[int, int, int], seed: int = 0, size: int = 24) -> Image.Image:
    """A solid-colour image with a little noise, so that no two files are identical."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8, 9, (size, size, 3))
    pixels = np.clip(np.asarray(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_class_folders(root: Path, per_class: int = 6) -> dict[str, list[Path]]:
    """``root/<colour>/`` with ``per_class`` images each, one of them in a nested folder."""
    out: dict[str, list[Path]] = {}
    for c, (name, rgb) in enumerate(COLOURS.items()):
        folder = root / name
        (folder / "more").mkdir(parents=True)
        paths = []
        for i in range(per_class):
            path = folder / ("more" if i == 0 else "") / f"{name}{i}.png"
            solid(rgb, seed=10 * c + i).save(path)
            paths.append(path)
        out[name] = [*paths[1:], paths[0]]  # walk order: a folder's files, then sub-folders
    return out


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar written with ``tarfile``, members in the given order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def shard_members(prefix: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` keys of a jpg and a caption each, coloured in turn."""
    members = []
    for i in range(n):
        name, rgb = list(COLOURS.items())[i % 3]
        members.append((f"{prefix}{i:03d}.jpg", encoded(solid(rgb, seed=i), "JPEG")))
        members.append((f"{prefix}{i:03d}.txt", f"a {name} square".encode()))
    return members


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ folders


def test_folder_source_labels_sorted_recursive_hidden_skipped(tmp_path: Path) -> None:
    expected = make_class_folders(tmp_path / "data")
    (tmp_path / "data" / "red" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "data" / ".cache").mkdir()
    (tmp_path / "data" / "red" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "empty").mkdir()
    source = FolderSource(tmp_path / "data")
    samples = list(source)
    assert isinstance(source, DataSource)
    assert source.class_names == ("blue", "empty", "green", "red")
    assert len(source) == len(samples) == 18
    assert [s.label for s in samples] == ["blue"] * 6 + ["green"] * 6 + ["red"] * 6
    for name in COLOURS:
        assert [Path(str(s.image)) for s in samples if s.label == name] == expected[name]
    assert all(s.source == str(s.image) and s.captions == () for s in samples)
    assert source.skipped == [] and source.name == str(tmp_path / "data")


def test_folder_source_records_images_outside_class_folders(tmp_path: Path) -> None:
    make_class_folders(tmp_path, per_class=1)
    solid((0, 0, 0)).save(tmp_path / "stray.png")
    source = FolderSource(tmp_path)
    assert [(s.source, s.reason) for s in source.skipped] == [
        (str(tmp_path / "stray.png"), "not inside a class folder")
    ]


def test_folder_source_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        FolderSource(tmp_path / "nope")
    solid((0, 0, 0)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="no class sub-folders"):
        FolderSource(tmp_path)
    (tmp_path / "cats").mkdir()
    with pytest.raises(InputError, match="is empty"):
        FolderSource(tmp_path)


# ------------------------------------------------------------------------------ manifests


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    """One image per colour in ``tmp_path/img``."""
    (tmp_path / "img").mkdir()
    out = {}
    for name, rgb in COLOURS.items():
        out[name] = tmp_path / "img" / f"{name}.png"
        solid(rgb).save(out[name])
    return out


def test_csv_manifest_groups_captions_and_resolves_relative_paths(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    path = write_csv(
        tmp_path / "m.csv",
        "image,caption,label\n"
        "img/red.png,a red square,red\n"
        f'{images["blue"]},"blue, like the sky",blue\n'
        "img/red.png,something crimson,\n"
        "img/green.png,,green\n",
    )
    source = ManifestSource(path)
    samples = list(source)
    assert len(source) == 3
    assert [s.source for s in samples] == [
        str(tmp_path / "img/red.png"),
        str(images["blue"]),
        str(tmp_path / "img/green.png"),
    ]
    assert Path(str(samples[0].image)).resolve() == images["red"].resolve()
    assert samples[0].captions == ("a red square", "something crimson")
    assert samples[1].captions == ("blue, like the sky",)
    assert samples[2].captions == ()
    assert [s.label for s in samples] == ["red", "blue", "green"]
    assert source.class_names == ("blue", "green", "red")
    assert source.name == str(path)


def test_openclip_tab_separated_filepath_title_columns(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    # OpenCLIP's CsvDataset default: tab separator, columns "filepath" and "title".
    path = write_csv(
        tmp_path / "train.csv",
        "filepath\ttitle\nimg/red.png\ta red, red square\nimg/blue.png\ta blue one\n",
    )
    samples = list(open_source(path))
    assert [s.captions for s in samples] == [("a red, red square",), ("a blue one",)]
    assert [s.label for s in samples] == [None, None]
    tsv = write_csv(tmp_path / "single.tsv", "image\nimg/green.png\n")
    assert [s.source for s in ManifestSource(tsv)] == [str(tmp_path / "img/green.png")]


def test_explicit_columns_and_unknown_column_lists_those_present(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    path = write_csv(tmp_path / "m.csv", "file,desc,cls\nimg/red.png,red thing,r\n")
    sample = next(iter(ManifestSource(path, "file", "desc", "cls")))
    assert (sample.captions, sample.label) == (("red thing",), "r")
    with pytest.raises(InputError, match=r"no caption column 'title'.*file, desc, cls"):
        ManifestSource(path, image_column="file", caption_column="title")
    with pytest.raises(InputError, match=r"no image column .*columns present: file, desc, cls"):
        ManifestSource(path)


def test_missing_image_raises_naming_manifest_and_row(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    path = write_csv(
        tmp_path / "m.csv", "image,caption\nimg/red.png,red\nimg/gone.png,gone\nimg/blue.png,b\n"
    )
    with pytest.raises(InputError, match=r"m\.csv:row 3: image file not found: .*gone\.png"):
        ManifestSource(path)
    source = ManifestSource(path, on_missing="skip")
    assert len(source) == 2
    assert [s.source for s in source.skipped] == [f"{path}:row 3"]
    assert "gone.png" in source.skipped[0].reason
    with pytest.raises(ConfigError, match="on_missing"):
        ManifestSource(path, on_missing="ignore")  # type: ignore[arg-type]


def test_jsonl_caption_lists_labels_and_grouping(tmp_path: Path, images: dict[str, Path]) -> None:
    lines = [
        {"image": "img/red.png", "caption": ["a red square", "crimson"], "label": "red"},
        {"image": "img/blue.png", "text": "unused column", "caption": "blue", "label": 2},
        {"image": "img/red.png", "caption": "scarlet"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    samples = list(open_source(path))
    assert [s.captions for s in samples] == [("a red square", "crimson", "scarlet"), ("blue",)]
    assert [s.label for s in samples] == ["red", "2"]


def test_malformed_jsonl_names_the_line(tmp_path: Path, images: dict[str, Path]) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "img/red.png"}\n\n{"image": "img/blue.png",\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.jsonl:line 3: not valid JSON"):
        ManifestSource(path)
    path.write_text('{"image": "img/red.png"}\n["img/blue.png"]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: a JSON list, not an object"):
        ManifestSource(path)
    path.write_text('{"image": "img/red.png", "caption": 3}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 1: a caption must be a string"):
        ManifestSource(path)


def test_empty_manifests_say_so(tmp_path: Path, images: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="is empty"):
        ManifestSource(write_csv(tmp_path / "h.csv", "image,caption\n"))
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="is empty"):
        ManifestSource(tmp_path / "e.jsonl")
    gone = write_csv(tmp_path / "g.csv", "image\nimg/gone.png\n")
    with pytest.raises(InputError, match="is empty: all 1 rows were skipped"):
        ManifestSource(gone, on_missing="skip")
    with pytest.raises(InputError, match="no such manifest"):
        ManifestSource(tmp_path / "absent.csv")


def test_conflicting_labels_for_one_image(tmp_path: Path, images: dict[str, Path]) -> None:
    path = write_csv(tmp_path / "m.csv", "image,label\nimg/red.png,red\nimg/red.png,blue\n")
    with pytest.raises(InputError, match=r"row 3: label 'blue' conflicts with 'red'.*row 2"):
        ManifestSource(path)


# ------------------------------------------------------------------------------ WebDataset


def test_shard_members_grouped_by_key(tmp_path: Path) -> None:
    red, green, blue = (solid(rgb) for rgb in COLOURS.values())
    meta = {"label": "blue", "caption": ["a blue square", "azure"]}
    shard = write_shard(
        tmp_path / "s.tar",
        [
            ("a/0001.jpg", encoded(red, "JPEG")),
            ("a/0001.txt", b"a red square\n"),
            ("a/0002.png", encoded(green, "PNG")),
            ("a/0002.cls", b"green"),
            ("0003.webp", encoded(blue, "WEBP")),
            ("0003.json", json.dumps(meta).encode()),
            ("0004.txt", b"a caption without an image"),
            ("README", b"not a member of any key"),
        ],
    )
    source = WebDatasetSource(shard)
    samples = list(source)
    assert [s.source for s in samples] == [f"{shard}:a/0001", f"{shard}:a/0002", f"{shard}:0003"]
    assert [s.captions for s in samples] == [("a red square",), (), ("a blue square", "azure")]
    assert [s.label for s in samples] == [None, "green", "blue"]
    assert all(isinstance(s.image, Image.Image) for s in samples)
    assert np.asarray(load_image(samples[1].image)).tolist() == np.asarray(green).tolist()
    assert [s.source for s in source.skipped] == [f"{shard}:0004"]
    assert "no image member" in source.skipped[0].reason
    assert source.class_names is None


def test_corrupt_member_skipped_and_counted(tmp_path: Path) -> None:
    members = shard_members("k", 4)
    members[2] = ("k001.jpg", b"\x00garbage, not a JPEG")
    shard = write_shard(tmp_path / "s.tar", members)
    source = WebDatasetSource(shard)
    assert [s.source for s in source] == [f"{shard}:k000", f"{shard}:k002", f"{shard}:k003"]
    assert [s.source for s in source.skipped] == [f"{shard}:k001.jpg"]
    assert "not a readable image" in source.skipped[0].reason
    list(source)  # a second pass starts a fresh record
    assert len(source.skipped) == 1


def test_truncated_shard_keeps_what_came_before(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "s.tar", shard_members("k", 4))
    with tarfile.open(shard) as tar:
        cut_in = next(m for m in tar.getmembers() if m.name == "k002.jpg").offset_data + 20
    shard.write_bytes(shard.read_bytes()[:cut_in])
    good = write_shard(tmp_path / "t.tar", shard_members("m", 2))
    source = WebDatasetSource([shard, good])
    assert [s.source.rsplit(":", 1)[1] for s in source] == ["k000", "k001", "m000", "m001"]
    assert [s.source for s in source.skipped] == [str(shard)]
    assert "truncated or corrupt" in source.skipped[0].reason
    assert "'k002'" in source.skipped[0].reason


def test_shard_cut_at_a_header_or_not_a_tar_is_recorded(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "s.tar", shard_members("k", 3))
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        third = tar.getmembers()[4].offset  # header of k002.jpg
    shard.write_bytes(data[:third] + b"\xff" * 512 + data[third + 512 :])
    bad = tmp_path / "html.tar"
    bad.write_bytes(b"<html>404</html>")
    source = WebDatasetSource([shard, bad])
    assert [s.source for s in source] == [f"{shard}:k000"]
    reasons = {s.source: s.reason for s in source.skipped}
    # tarfile stops quietly at a bad header; the key being read then (k001) is dropped too.
    assert "unreadable header" in reasons[str(shard)] and "'k001'" in reasons[str(shard)]
    assert "not a readable tar file" in reasons[str(bad)]


def test_undecodable_pixels_fail_at_decode_naming_the_member(tmp_path: Path) -> None:
    jpeg = encoded(solid((1, 2, 3), size=256), "JPEG")
    shard = write_shard(tmp_path / "s.tar", [("k.jpg", jpeg[: len(jpeg) * 3 // 4])])
    (sample,) = list(WebDatasetSource(shard))
    with pytest.raises(ImageDecodeError, match=r"s\.tar:k"):
        load_image(sample.image)


def test_bad_metadata_skips_the_key_not_the_run(tmp_path: Path) -> None:
    png = encoded(solid((5, 5, 5)), "PNG")
    members = [("a.png", png), ("a.json", b'{"caption": 3}'), ("b.png", png), ("b.json", b"{")]
    members += [("c.png", png), ("c.txt", b"\xff\xfe not utf-8"), ("c.cls", b"grey")]
    shard = write_shard(tmp_path / "s.tar", members)
    source = WebDatasetSource(shard)
    samples = list(source)
    assert [(s.source, s.captions, s.label) for s in samples] == [
        (f"{shard}:b", (), None),
        (f"{shard}:c", (), "grey"),
    ]
    reasons = [(s.source, s.reason) for s in source.skipped]
    assert reasons[0][0] == f"{shard}:a" and "caption must be a string" in reasons[0][1]
    assert reasons[1][0] == f"{shard}:b.json" and "not valid JSON" in reasons[1][1]
    assert reasons[2][0] == f"{shard}:c.txt" and "not UTF-8" in reasons[2][1]


def test_all_corrupt_shards_raise_empty(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "s.tar", [("k.txt", b"caption only")])
    with pytest.raises(InputError, match=r"is empty.*1 entries skipped"):
        list(WebDatasetSource(shard))


def test_globs_and_brace_lists(tmp_path: Path) -> None:
    for i in range(3):
        write_shard(tmp_path / f"shard-{i:03d}.tar", shard_members(f"s{i}-", 1))
    braces = expand_shards(str(tmp_path / "shard-{000..002}.tar"))
    assert braces == [str(tmp_path / f"shard-{i:03d}.tar") for i in range(3)]
    assert expand_shards(str(tmp_path / "shard-*.tar")) == braces
    assert expand_shards(str(tmp_path / "shard-{002,000}.tar")) == [braces[2], braces[0]]
    assert len(list(open_source(str(tmp_path / "shard-{000..002}.tar")))) == 3
    with pytest.raises(InputError, match="no such shard"):
        expand_shards(str(tmp_path / "shard-{000..003}.tar"))
    with pytest.raises(InputError, match="matches no shard"):
        expand_shards(str(tmp_path / "other-*.tar"))


# ------------------------------------------------------------------------------ dispatch


def test_open_source_picks_the_source_from_the_path(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    make_class_folders(tmp_path / "folder", per_class=1)
    csv_path = write_csv(tmp_path / "m.csv", "image\nimg/red.png\n")
    shard = write_shard(tmp_path / "s.tar", shard_members("k", 1))
    assert isinstance(open_source(tmp_path / "folder"), FolderSource)
    assert isinstance(open_source(csv_path, on_missing="skip"), ManifestSource)
    assert isinstance(open_source(shard), WebDatasetSource)
    with pytest.raises(InputError, match=r"\.csv / \.tsv / \.jsonl manifest.*\.tar shards"):
        open_source(images["red"])
    with pytest.raises(ConfigError, match="on_missing"):
        open_source(tmp_path / "folder", on_missing="skip")


def test_open_dataset_skips_missing_rows_unless_strict_and_columns_need_a_manifest(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    make_class_folders(tmp_path / "folder", per_class=1)
    path = write_csv(tmp_path / "m.csv", "file,text\nimg/red.png,red\nimg/gone.png,gone\n")
    source = open_dataset(path, image_column="file", caption_column="text")
    assert [s.captions for s in source] == [("red",)]
    assert [s.source for s in source.skipped] == [f"{path}:row 3"]
    with pytest.raises(InputError, match=r"m\.csv:row 3: image file not found"):
        open_dataset(path, strict=True, image_column="file", caption_column="text")
    assert isinstance(open_dataset(tmp_path / "folder"), FolderSource)
    with pytest.raises(ConfigError, match=r"folder: label_column only apply to a \.csv"):
        open_dataset(tmp_path / "folder", label_column="kind")


def test_sample_is_a_frozen_record() -> None:
    sample = Sample(image="x.png", source="x.png")
    assert (sample.captions, sample.label) == ((), None)
    with pytest.raises(AttributeError):
        sample.label = "y"  # type: ignore[misc]


def test_shards_by_url_stream_like_local_ones(tmp_path: Path) -> None:
    """URL shards (through fsspec; ``file://`` here, ``s3://`` and the like elsewhere)."""
    pytest.importorskip("fsspec", reason="pip install 'crossmodal[scale]'")
    for k in range(3):
        write_shard(tmp_path / f"part-{k}.tar", shard_members(f"s{k}-", 4))
    local = list(open_source(str(tmp_path / "part-{0..2}.tar")))
    for url in (f"file://{tmp_path}/part-{{0..2}}.tar", f"file://{tmp_path}/part-*.tar"):
        source = open_source(url)
        assert source.shards[0].startswith("file://")
        remote = list(source)
        assert [(s.source.split("/")[-1], s.captions) for s in remote] == [
            (s.source.split("/")[-1], s.captions) for s in local
        ]
        assert [s.image.tobytes() for s in remote] == [s.image.tobytes() for s in local]  # type: ignore[union-attr]
    cut = (tmp_path / "part-1.tar").read_bytes()
    (tmp_path / "part-1.tar").write_bytes(cut[:2000])  # truncated in its second key
    source = open_source(f"file://{tmp_path}/part-{{0..3}}.tar")  # part-3 does not exist
    samples = list(source)
    assert 8 <= len(samples) < 10  # shards 0 and 2 whole, at most the first key of 1
    reasons = " ".join(f"{s.source} {s.reason}" for s in source.skipped)
    assert "part-3.tar" in reasons and "part-1.tar" in reasons
    with pytest.raises(InputError, match="manifests are read from local files"):
        open_source("s3://bucket/train.jsonl")
    with pytest.raises(InputError, match="matches no shard"):
        open_source(f"file://{tmp_path}/none-*.tar")
