"""File discovery for search (crossmodal.data.walk) and load_image on bad files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal.data.images import load_image
from crossmodal.data.walk import (
    FoundFile,
    WalkConfig,
    WalkProblem,
    classify,
    content_hash,
    walk,
)
from crossmodal.errors import ConfigError, ImageDecodeError, InputError
from tests.badfiles import EXPECTED_PIXELS, NOT_REGULAR_FILES, make_bad_folder, restore_permissions

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their mode
needs_permissions = pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)


def _split(items: Iterator[FoundFile | WalkProblem]) -> tuple[list[FoundFile], list[WalkProblem]]:
    found, problems = [], []
    for item in items:
        (found if isinstance(item, FoundFile) else problems).append(item)
    return found, problems


def _relative(found: list[FoundFile], root: Path) -> list[str]:
    return [f.path.relative_to(root).as_posix() for f in found]


# --- walking a tree ----------------------------------------------------------------------


def test_walk_finds_media_in_sorted_order_skipping_hidden_and_excluded(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "a.jpg",
        "B.PNG",
        "clip.mp4",
        "notes.txt",
        "noext",
        ".hidden.jpg",
        ".cache/x.jpg",
        "node_modules/pkg/y.jpg",
        "sub/@eaDir/thumb.jpg",
        "sub/z.gif",
        "sub/movie.MOV",
        "sub/deep/c.webp",
        "sub/$RECYCLE.BIN/old.jpg",
        "sub/.Trash-1000/gone.png",
    )
    found, problems = _split(walk([tmp_path]))
    assert problems == []
    assert _relative(found, tmp_path) == [
        "B.PNG",
        "a.jpg",
        "clip.mp4",
        "sub/movie.MOV",
        "sub/z.gif",
        "sub/deep/c.webp",
    ]
    assert [f.kind for f in found] == ["image", "image", "video", "video", "image", "image"]
    first = found[0]
    assert first.root == tmp_path and first.path.is_absolute()
    assert first.size == 10
    assert first.mtime_ns == (tmp_path / "B.PNG").stat().st_mtime_ns

    everything = WalkConfig(skip_hidden=False, exclude=())
    assert len(_split(walk([tmp_path], everything))[0]) == 12


def test_single_file_roots_relative_roots_and_unknown_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path, "dir/one.jpg", "two.mkv", "readme.md", ".hidden.png")
    monkeypatch.chdir(tmp_path)
    items = list(walk(["two.mkv", "dir", "readme.md", ".hidden.png"]))
    assert items[0] == FoundFile(
        tmp_path / "two.mkv", tmp_path / "two.mkv", "video", 10, os.stat("two.mkv").st_mtime_ns
    )
    assert isinstance(items[1], FoundFile) and items[1].root == tmp_path / "dir"
    assert isinstance(items[2], WalkProblem) and "unknown suffix" in items[2].reason
    assert isinstance(items[3], FoundFile)  # a root named directly is never skipped as hidden


def test_missing_root_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope"):
        walk([tmp_path, tmp_path / "nope"])  # raised before anything is iterated
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(InputError, match="broken symlink"):
        walk([tmp_path / "dangling"])
    with pytest.raises(InputError, match="list of roots"):
        walk(str(tmp_path))


def test_overlapping_roots_walk_each_directory_once(tmp_path: Path) -> None:
    _touch(tmp_path, "a.jpg", "sub/b.jpg")
    found, _ = _split(walk([tmp_path / "sub", tmp_path, tmp_path]))
    assert _relative(found, tmp_path) == ["sub/b.jpg", "a.jpg"]
    assert found[0].root == tmp_path / "sub"


def test_max_file_bytes_reports_large_files(tmp_path: Path) -> None:
    _touch(tmp_path, "small.jpg")
    (tmp_path / "big.jpg").write_bytes(b"x" * 100)
    found, problems = _split(walk([tmp_path], WalkConfig(max_file_bytes=50)))
    assert _relative(found, tmp_path) == ["small.jpg"]
    assert [p.path.name for p in problems] == ["big.jpg"]
    assert "100 bytes" in problems[0].reason


# --- symlinks ----------------------------------------------------------------------------


def test_symlink_loops_end_and_are_reported(tmp_path: Path) -> None:
    _touch(tmp_path, "photos/a.jpg", "photos/inner/b.jpg")
    (tmp_path / "photos/inner/up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "photos/self").symlink_to(tmp_path / "photos", target_is_directory=True)
    (tmp_path / "photos/knot.jpg").symlink_to(tmp_path / "photos/knot.jpg")  # ELOOP
    found, problems = _split(walk([tmp_path]))
    assert _relative(found, tmp_path) == ["photos/a.jpg", "photos/inner/b.jpg"]
    reasons = {p.path.relative_to(tmp_path).as_posix(): p.reason for p in problems}
    assert set(reasons) == {"photos/inner/up", "photos/self", "photos/knot.jpg"}
    assert all(reason.startswith("symlink loop") for reason in reasons.values())
    assert f"points back to {tmp_path}" in reasons["photos/inner/up"]


def test_symlinked_directories_and_files(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _touch(root, "real/a.jpg")
    _touch(outside, "b.jpg", "c.png")
    (root / "0first").symlink_to(root / "real", target_is_directory=True)  # sorts before real
    (root / "ext").symlink_to(outside, target_is_directory=True)
    (root / "pic.jpg").symlink_to(outside / "c.png")
    (root / "text.txt").symlink_to(outside / "c.png")  # a link's own suffix decides
    found, problems = _split(walk([root]))
    assert problems == []
    # The real directory is walked first, so a.jpg keeps its real path and comes once; links
    # keep their own paths (not resolved).
    assert _relative(found, root) == ["pic.jpg", "real/a.jpg", "ext/b.jpg", "ext/c.png"]
    assert found[0].size == (outside / "c.png").stat().st_size

    no_links = _split(walk([root], WalkConfig(follow_symlinks=False)))[0]
    assert _relative(no_links, root) == ["real/a.jpg"]


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    _touch(tmp_path, "ok.jpg")
    (tmp_path / "dead.jpg").symlink_to(tmp_path / "missing.jpg")
    found, problems = _split(walk([tmp_path]))
    assert _relative(found, tmp_path) == ["ok.jpg"]
    assert [p.path for p in problems] == [tmp_path / "dead.jpg"]
    assert problems[0].reason.startswith("broken symlink") and "missing.jpg" in problems[0].reason


# --- permissions -------------------------------------------------------------------------


@needs_permissions
def test_unreadable_directory_and_file_are_problems(tmp_path: Path) -> None:
    _touch(tmp_path, "a.jpg", "locked/b.jpg", "z.png")
    (tmp_path / "a.jpg").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        found, problems = _split(walk([tmp_path]))
    finally:
        (tmp_path / "locked").chmod(0o755)
        (tmp_path / "a.jpg").chmod(0o644)
    assert _relative(found, tmp_path) == ["z.png"]
    assert [(p.path.name, p.reason) for p in problems] == [
        ("a.jpg", "permission denied: cannot read file"),
        ("locked", "permission denied: cannot list directory"),
    ]


# --- classify, config, content_hash ------------------------------------------------------


def test_classify_by_suffix() -> None:
    assert classify("x/photo.JPG") == "image"
    assert classify(Path("a.tar.webp")) == "image"
    assert classify("film.m4v") == "video"
    assert classify("notes.txt") is None
    assert classify(".jpg") is None  # a hidden file named ".jpg" has no suffix
    heic = classify("phone.heic")
    assert heic is None or ".heic" in Image.registered_extensions()
    config = WalkConfig(image_extensions=frozenset({"RAW", ".Dng"}))
    assert config.image_extensions == {".raw", ".dng"}
    assert classify("a.dng", config) == "image" and classify("a.jpg", config) is None


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="both"):
        WalkConfig(image_extensions=frozenset({".mp4"}))
    with pytest.raises(ConfigError, match="string"):
        WalkConfig(exclude="node_modules")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_file_bytes"):
        WalkConfig(max_file_bytes=-1)


def test_content_hash(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (3 << 20) + 5, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)  # several 1 MiB chunks and a tail
    digest = content_hash(path)
    assert digest == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert len(digest) == 32 and content_hash(str(path)) == digest
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert content_hash(path) != digest
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert content_hash(empty) == hashlib.blake2b(b"", digest_size=16).hexdigest()
    for bad in (tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(InputError, match=bad.name):
            content_hash(bad)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(InputError, match="not a regular file"):
            content_hash(tmp_path / "pipe")  # refused, not waited on


# --- the bad folder ----------------------------------------------------------------------


@pytest.fixture
def bad_folder(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str | None]]]:
    root = tmp_path / "bad"
    expected = make_bad_folder(root)
    yield root, expected
    restore_permissions(root)


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_load_image_on_every_bad_file(bad_folder: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = bad_folder
    failures = []
    for name, reason in sorted(expected.items()):
        try:
            image = load_image(root / name)
        except ImageDecodeError as exc:
            message = str(exc)
            if reason is None or name not in message or reason not in exc.reason + message:
                failures.append(f"{name}: expected {reason!r}, got ImageDecodeError {message!r}")
            continue
        except Exception as exc:  # anything else is a bug
            failures.append(f"{name}: expected {reason!r}, got {type(exc).__name__}: {exc}")
            continue
        if reason is not None:
            failures.append(f"{name}: expected {reason!r}, but it decoded")
        elif image.mode != "RGB":
            failures.append(f"{name}: decoded to mode {image.mode}, not RGB")
        elif name in EXPECTED_PIXELS:
            got = np.asarray(image)[1, 1].astype(int)
            if np.abs(got - EXPECTED_PIXELS[name]).max() > 2:
                failures.append(f"{name}: pixel {tuple(got)}, expected {EXPECTED_PIXELS[name]}")
    assert failures == []


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_named_and_configurable(
    bad_folder: tuple[Path, dict[str, str | None]],
) -> None:
    root, _ = bad_folder
    with pytest.raises(ImageDecodeError) as info:
        load_image(root / "bomb.png")
    assert "900000000 pixels" in info.value.reason and "limit" in info.value.reason
    with pytest.raises(ImageDecodeError) as info:
        load_image(root / "bomb_warning_zone.png")
    assert "100000000 pixels" in info.value.reason and "89478485" in info.value.reason
    with pytest.raises(ImageDecodeError, match="1200 pixels exceeds the limit of 1000"):
        load_image(root / "good.png", max_pixels=1000)  # 40x30
    assert load_image(root / "good.png", max_pixels=1200).size == (40, 30)
    with pytest.raises(InputError, match="max_pixels"):
        load_image(root / "good.png", max_pixels=0)


def test_walk_over_the_bad_folder(bad_folder: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = bad_folder
    found, problems = _split(walk([root]))
    names = {f.path.name for f in found}
    assert not names & NOT_REGULAR_FILES
    reasons = {p.path.name: p.reason for p in problems}
    assert reasons["loop"].startswith("symlink loop")
    assert reasons["broken_link.jpg"].startswith("broken symlink")
    if "fifo.jpg" in expected:
        assert reasons["fifo.jpg"].startswith("not a regular file")
    if expected["unreadable.jpg"] is None:
        assert "unreadable.jpg" in names
    else:
        assert reasons["unreadable.jpg"].startswith("permission denied")
    regular = {name for name in expected if name not in NOT_REGULAR_FILES}
    assert names == regular - set(reasons)  # every regular file is found or reported
