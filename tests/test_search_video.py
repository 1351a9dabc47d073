"""Video frame sampling on small synthetic videos written with PyAV."""

from __future__ import annotations

import math
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from crossmodal.data.video import (
    Frame,
    VideoSampling,
    frame_at,
    sample_frames,
    video_duration,
)
from crossmodal.errors import BackendUnavailableError, ConfigError, ImageDecodeError

av = pytest.importorskip("av")
if "mpeg4" not in av.codecs_available:
    pytest.skip("PyAV's FFmpeg has no mpeg4 encoder", allow_module_level=True)

FPS = 10
SEGMENT = 15  # frames per colour: 1.5 s
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
SEGMENTS = ["red", "green", "blue"]  # 0-1.5 s, 1.5-3.0 s, 3.0-4.5 s


def write_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    gop: int = 12,
    rotation: int = 0,
) -> Path:
    """Encode RGB ``frames`` (H×W×3 uint8) with mpeg4 at :data:`FPS`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def three_colours(path: Path, gop: int = 12) -> Path:
    """64×48, 4.5 s: red, green, blue for 1.5 s each."""
    frames = [
        np.full((48, 64, 3), COLOURS[name], dtype=np.uint8)
        for name in SEGMENTS
        for _ in range(SEGMENT)
    ]
    return write_video(path, frames, gop=gop)


def colour_of(frame: Frame) -> str:
    """The name of the nearest test colour to the frame's mean pixel."""
    mean = np.asarray(frame.image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: float(np.abs(mean - COLOURS[name]).sum()))


def expected_colour(time: float) -> str:
    return SEGMENTS[min(int(round(time * FPS)) // SEGMENT, 2)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": three_colours(folder / "colours.mp4"),
        "every-frame-key": three_colours(folder / "allkey.mp4", gop=1),
        "sparse-keys": three_colours(folder / "sparse.mp4", gop=250),
        "ts": three_colours(folder / "colours.ts"),  # MPEG-TS: starts at 1.4 s, no index
    }


@pytest.mark.parametrize("kind", ["mp4", "every-frame-key", "sparse-keys", "ts"])
def test_fixed_rate_takes_one_frame_per_second_with_the_right_picture(
    videos: dict[str, Path], kind: str
) -> None:
    frames = list(sample_frames(videos[kind], VideoSampling(every=1.0)))
    assert [f.time for f in frames] == pytest.approx([0, 1, 2, 3, 4], abs=0.01)
    assert [colour_of(f) for f in frames] == ["red", "red", "green", "blue", "blue"]
    for frame in frames:
        assert frame.image.mode == "RGB" and frame.image.size == (64, 48)


@pytest.mark.parametrize("kind", ["mp4", "every-frame-key", "sparse-keys", "ts"])
def test_frame_at_seeks_to_the_frame_shown_at_a_time(videos: dict[str, Path], kind: str) -> None:
    for time in (0.0, 0.75, 1.45, 1.55, 2.95, 3.05, 4.4, 60.0):
        frame = frame_at(videos[kind], time)
        assert frame.time <= time + 1e-3 and frame.time > min(time, 4.4) - 0.1 - 1e-3
        assert colour_of(frame) == expected_colour(frame.time), (kind, time, frame.time)
    with pytest.raises(ImageDecodeError, match="file not found"):
        frame_at(videos[kind].with_name("missing.mp4"), 1.0)


def test_default_sampling_is_every_two_seconds(videos: dict[str, Path]) -> None:
    frames = list(sample_frames(videos["mp4"]))
    assert [f.time for f in frames] == pytest.approx([0, 2, 4], abs=0.01)


def test_every_inf_gives_only_the_first_frame(videos: dict[str, Path]) -> None:
    frames = list(sample_frames(videos["mp4"], VideoSampling(every=math.inf)))
    assert [f.time for f in frames] == [0.0]


def test_scene_mode_finds_the_cuts_and_nothing_else(videos: dict[str, Path]) -> None:
    frames = list(sample_frames(videos["mp4"], VideoSampling(scene=0.1, every=math.inf)))
    assert [f.time for f in frames] == pytest.approx([0, 1.5, 3.0], abs=0.11)
    assert [colour_of(f) for f in frames] == ["red", "green", "blue"]


def test_scene_mode_also_takes_a_frame_after_every_seconds_without_a_cut(
    videos: dict[str, Path],
) -> None:
    frames = list(sample_frames(videos["mp4"], VideoSampling(scene=0.1, every=1.0)))
    assert [f.time for f in frames] == pytest.approx([0, 1.0, 1.5, 2.5, 3.0, 4.0], abs=0.01)
    assert [colour_of(f) for f in frames] == [expected_colour(f.time) for f in frames]


def test_scene_mode_keeps_min_gap_between_frames(videos: dict[str, Path]) -> None:
    sampling = VideoSampling(scene=0.1, every=math.inf, min_gap=2.0)
    frames = list(sample_frames(videos["mp4"], sampling))
    # The cuts at 1.5 s and 3.0 s come too early; the first frames 2 s later still differ.
    assert [f.time for f in frames] == pytest.approx([0, 2.0, 4.0], abs=0.01)
    assert [colour_of(f) for f in frames] == ["red", "green", "blue"]


@pytest.mark.parametrize(
    ("sampling", "count"),
    [(VideoSampling(every=0.1, max_frames=7), 7), (VideoSampling(scene=0.1, max_frames=2), 2)],
)
def test_max_frames_is_respected(
    videos: dict[str, Path], sampling: VideoSampling, count: int
) -> None:
    assert len(list(sample_frames(videos["mp4"], sampling))) == count


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = COLOURS["red"]  # left half red, right half blue
    pixels[:, 32:] = COLOURS["blue"]
    path = write_video(tmp_path / "rotated.mp4", [pixels] * 5, rotation=90)
    image = next(sample_frames(path)).image
    if image.size == (64, 48):
        pytest.skip("this PyAV does not report the display rotation")
    # Turned 90° counter-clockwise: the left (red) half is now at the bottom.
    assert image.size == (48, 64)
    top, bottom = np.asarray(image)[:24].mean(axis=(0, 1)), np.asarray(image)[40:].mean((0, 1))
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]


def test_video_duration(videos: dict[str, Path]) -> None:
    assert video_duration(videos["mp4"]) == pytest.approx(4.5, abs=0.15)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("random.mp4", np.random.default_rng(0).bytes(4096), "not a video"),
        ("notes.mp4", b"just some text, not a video\n" * 20, "not a video"),
        ("empty.mp4", b"", "empty file"),
    ],
)
def test_unreadable_files_raise_naming_the_file(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for call in (lambda: list(sample_frames(path)), lambda: video_duration(path)):
        with pytest.raises(ImageDecodeError, match=reason) as info:
            call()
        assert info.value.path == str(path) and str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found"):
        list(sample_frames(tmp_path / "missing.mp4"))
    with pytest.raises(ImageDecodeError, match="directory"):
        list(sample_frames(tmp_path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)  # FFmpeg would block opening it, waiting for a writer
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        list(sample_frames(fifo))


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 800)
    with pytest.raises(ImageDecodeError, match="no video stream, only audio"):
        list(sample_frames(path))


def test_damaged_file_yields_the_frames_before_the_damage_then_raises(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (45, 48, 64, 3), dtype=np.uint8)
    path = write_video(tmp_path / "damaged.mp4", list(noise))  # mpeg4 data first, index last
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)  # zero the middle of the encoded frames
    path.write_bytes(bytes(data))
    frames = sample_frames(path, VideoSampling(every=0.5))
    times = []
    with pytest.raises(ImageDecodeError, match="video decoding failed after") as info:
        for frame in frames:
            times.append(frame.time)
    assert times and times[0] == 0.0
    assert str(path) in str(info.value)


def test_missing_pyav_names_the_extra(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'crossmodal\[video\]'"):
        list(sample_frames(videos["mp4"]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("every", 0.0),
        ("every", -1.0),
        ("every", math.nan),
        ("scene", 0.0),
        ("scene", 1.0),
        ("scene", math.nan),
        ("min_gap", -0.1),
        ("min_gap", math.inf),
        ("max_frames", 0),
        ("max_frames", 2.5),
        ("max_frames", True),
    ],
)
def test_bad_sampling_raises_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"VideoSampling.{field} "):
        VideoSampling(**{field: value})  # type: ignore[arg-type]
