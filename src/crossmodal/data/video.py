"""Video frame sampling with PyAV, at a fixed rate or on scene changes.

:func:`sample_frames` turns one video file into :class:`Frame` s, each an upright RGB image
with its time in seconds from the start of the video, for the search indexer to embed as one
hit each. :class:`VideoSampling` says which frames to take:

* **fixed rate** (``scene=None``): the first frame at or after each multiple of ``every``
  seconds (0, ``every``, 2 × ``every``, ...). Where the file's index shows a keyframe between
  the decoder's position and the next target, the decoder seeks to it instead of decoding the
  frames in between: on a 60 s, 640×360 clip with 0.4 s keyframe spacing this is 3-9× faster
  for ``every`` of 1-10 s, and files with sparse keyframes are decoded straight through.
* **scene changes** (``scene`` set): every frame is decoded, and one is kept when it differs
  from the last kept frame by more than ``scene`` (mean absolute difference of 32×32 RGB
  thumbnails, in [0, 1]), or when ``every`` seconds have passed without a kept frame; no two
  kept frames are closer than ``min_gap`` seconds.

PyAV is optional: ``pip install 'crossmodal[video]'``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from crossmodal.data.images import check_regular_file
from crossmodal.errors import BackendUnavailableError, ConfigError, ImageDecodeError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

__all__ = ["Frame", "VideoSampling", "frame_at", "sample_frames", "video_duration"]

logger = logging.getLogger(__name__)

_THUMB_SIDE = 32  # side of the RGB thumbnail compared in scene mode, in pixels
_TOLERANCE = 1e-3  # seconds: a frame this close before a target time counts as on it
_ROTATIONS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}  # display rotation, counter-clockwise degrees → Pillow transpose (also counter-clockwise)


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video become search hits.

    Fixed-rate mode (``scene=None``) takes the first frame at or after each multiple of
    ``every``. Scene mode takes a frame whenever the picture has changed by more than
    ``scene`` since the last kept frame, and also once ``every`` seconds pass without one (pass
    ``every=math.inf`` for scene changes only), never within ``min_gap`` of the last kept
    frame. Both modes always take the first frame.
    """

    every: float = 2.0  # seconds between frames; scene mode: the longest gap without one
    scene: float | None = None  # scene-change threshold in (0, 1); None: fixed rate only
    min_gap: float = 0.5  # scene mode: the fewest seconds between two kept frames
    max_frames: int = 2000  # the most frames taken from one video

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            ConfigError: A field out of range, naming the field.
        """
        if not _is_number(self.every) or not self.every > 0:
            raise ConfigError(
                f"VideoSampling.every must be a positive number of seconds (math.inf: only the "
                f"first frame, or only scene changes in scene mode), got {self.every!r}"
            )
        if self.scene is not None and not (_is_number(self.scene) and 0 < self.scene < 1):
            raise ConfigError(
                "VideoSampling.scene must be None (fixed rate) or a threshold between 0 and 1 "
                f"(the mean absolute pixel difference, e.g. 0.1), got {self.scene!r}"
            )
        if not _is_number(self.min_gap) or not 0 <= self.min_gap < math.inf:
            raise ConfigError(
                f"VideoSampling.min_gap must be a finite number of seconds >= 0, "
                f"got {self.min_gap!r}"
            )
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int):
            raise ConfigError(f"VideoSampling.max_frames must be an int, got {self.max_frames!r}")
        if self.max_frames < 1:
            raise ConfigError(f"VideoSampling.max_frames must be at least 1, got {self.max_frames}")


@dataclass(frozen=True)
class Frame:
    """One sampled frame of a video."""

    time: float  # seconds from the start of the video (the frame's pts × time_base)
    image: Image.Image  # RGB, upright: the stream's display rotation is applied


def sample_frames(
    path: str | os.PathLike[str], sampling: VideoSampling | None = None
) -> Iterator[Frame]:
    """Decode ``path`` and yield the frames that ``sampling`` picks, in time order.

    The file is opened on the first ``next()`` and closed when the iterator is exhausted or
    closed, so every error below is raised while iterating. A file that breaks part-way
    yields the frames decoded before the damage, then raises.

    Args:
        path: A video file in any container and codec that PyAV's FFmpeg can decode.
        sampling: Which frames to take; ``None`` means ``VideoSampling()`` (one every 2 s).

    Yields:
        :class:`Frame` s with increasing ``time``; the first is the video's first frame
        (``time`` ≈ 0), and there are at most ``sampling.max_frames``.

    Raises:
        BackendUnavailableError: PyAV is not installed (``pip install 'crossmodal[video]'``).
        ImageDecodeError: The file is missing, unreadable, not a video, has no video stream,
            has no decodable frame, or fails to decode part-way; the message names the file.
    """
    sampling = VideoSampling() if sampling is None else sampling
    name = os.fspath(path)
    container, stream = _open_video(name)
    if sampling.scene is None:
        picked = _sample_fixed_rate(container, stream, sampling, name)
    else:
        picked = _sample_scenes(container, stream, sampling.scene, sampling, name)
    with container, closing(picked) as frames:
        kept = 0
        for frame in frames:
            kept += 1
            yield frame
        if kept == 0:
            raise ImageDecodeError(name, "video: no frame could be decoded")


def frame_at(path: str | os.PathLike[str], time: float) -> Frame:
    """The frame shown at ``time`` seconds (the last one starting at or before it).

    Seeks to the keyframe before ``time`` when the file has an index of keyframes, so a frame
    an hour into a film costs a seek and a few decoded frames, not an hour of decoding (a file
    without an index, such as MPEG-TS, is decoded from the start). Past the end, the last
    frame.

    Raises:
        BackendUnavailableError: PyAV is not installed.
        ImageDecodeError: As :func:`sample_frames`, for a file that cannot be read.
    """
    name = os.fspath(path)
    container, stream = _open_video(name)
    with container:
        if _keyframe_between(stream, 0.0, time):  # else (no index): decode from the start
            try:
                container.seek(_timestamp(stream, time), stream=stream, backward=True)
            except Exception as exc:
                logger.debug("%s: seek to %.3f s failed (%s); decoding on", name, time, exc)
        best: tuple[float, VideoFrame] | None = None
        with closing(_decode(container, stream, name)) as frames:
            for t, frame in frames:
                if best is not None and t > time + _TOLERANCE:
                    break
                best = (t, frame)
        if best is None:
            raise ImageDecodeError(name, "video: no frame could be decoded")
        return Frame(time=best[0], image=_to_image(best[1]))


def video_duration(path: str | os.PathLike[str]) -> float | None:
    """The length of the video stream of ``path`` in seconds, or ``None`` if not recorded.

    Raises:
        BackendUnavailableError: PyAV is not installed.
        ImageDecodeError: As :func:`sample_frames`, for a file that cannot be opened.
    """
    name = os.fspath(path)
    container, stream = _open_video(name)
    with container:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000  # AV_TIME_BASE: microseconds
    return None


def _sample_fixed_rate(
    container: InputContainer, stream: VideoStream, sampling: VideoSampling, name: str
) -> Generator[Frame, None, None]:
    """The first frame at or after each multiple of ``sampling.every``, seeking ahead."""
    every = sampling.every
    target = 0.0  # the time of the next frame to take, in seconds
    frames = _decode(container, stream, name)
    for kept in range(1, sampling.max_frames + 1):
        hit = next(((t, f) for t, f in frames if t >= target - _TOLERANCE), None)
        if hit is None:
            return
        time, frame = hit
        yield Frame(time=time, image=_to_image(frame))
        target = (math.floor((time + _TOLERANCE) / every) + 1) * every
        if kept == sampling.max_frames or math.isinf(target):
            return
        if _keyframe_between(stream, time, target):
            try:
                container.seek(_timestamp(stream, target), stream=stream, backward=True)
            except Exception as exc:  # keep decoding straight through; the frames are the same
                logger.debug("%s: seek to %.3f s failed (%s); decoding on", name, target, exc)
            else:
                frames.close()
                frames = _decode(container, stream, name, after=time)


def _sample_scenes(
    container: InputContainer,
    stream: VideoStream,
    threshold: float,
    sampling: VideoSampling,
    name: str,
) -> Generator[Frame, None, None]:
    """Frames that differ from the last kept one by more than ``threshold``, or come late."""
    last_time = 0.0
    last_thumb: npt.NDArray[np.uint8] | None = None
    kept = 0
    for time, frame in _decode(container, stream, name):
        gap = time - last_time
        thumb = None
        if last_thumb is not None:
            if gap < sampling.min_gap - _TOLERANCE:
                continue  # too close to the last kept frame: no thumbnail needed
            thumb = _thumbnail(frame)
            late = gap >= sampling.every - _TOLERANCE
            if not late and _difference(thumb, last_thumb) <= threshold:
                continue
        yield Frame(time=time, image=_to_image(frame))
        kept += 1
        if kept == sampling.max_frames:
            return
        last_time, last_thumb = time, _thumbnail(frame) if thumb is None else thumb


def _open_video(name: str) -> tuple[InputContainer, VideoStream]:
    """Open ``name`` with PyAV and pick its main video stream, with threaded decoding."""
    try:
        import av
    except ImportError:
        raise BackendUnavailableError("video frame sampling", "video", "av") from None
    check_regular_file(name)  # missing, directory, FIFO (FFmpeg would block on it), empty
    try:
        container = av.open(name, mode="r")
    except PermissionError:
        raise ImageDecodeError(name, "permission denied") from None
    except Exception as exc:  # InvalidDataError for text and corrupt files, ...
        raise ImageDecodeError(name, f"not a video that FFmpeg can read: {_describe(exc)}") from exc
    stream = container.streams.best("video")
    if not isinstance(stream, av.video.stream.VideoStream):
        kinds = sorted({s.type for s in container.streams})
        container.close()
        holds = f"only {' and '.join(kinds)}" if kinds else "no streams at all"
        raise ImageDecodeError(name, f"no video stream, {holds}")
    stream.thread_type = "AUTO"  # decode on several threads (frame and slice)
    return container, stream


def _decode(
    container: InputContainer, stream: VideoStream, name: str, after: float = 0.0
) -> Generator[tuple[float, VideoFrame], None, None]:
    """Decoded frames with their time in seconds; an FFmpeg failure names the file.

    ``after`` is the time already reached, for the error message after a seek.
    """
    start = stream.start_time or 0
    time_base = stream.time_base
    rate = float(stream.average_rate or 0)
    frames = container.decode(stream)
    time, count = after, 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # InvalidDataError and friends from a damaged stream
            raise ImageDecodeError(
                name, f"video decoding failed after {time:.2f} s: {_describe(exc)}"
            ) from exc
        if frame.pts is not None and time_base is not None:
            time = max(0.0, float((frame.pts - start) * time_base))
        elif rate > 0:
            time = count / rate  # no timestamps (a raw stream): count frames
        count += 1
        yield time, frame


def _keyframe_between(stream: VideoStream, now: float, target: float) -> bool:
    """Whether the file's index has a keyframe after ``now`` and at or before ``target``.

    Seeking to ``target`` then skips the frames up to that keyframe; without one (or without
    an index, as in MPEG-TS or older PyAV) it would only decode the same frames again.
    """
    entries = getattr(stream, "index_entries", None)
    if not entries:
        return False
    i = entries.search_timestamp(_timestamp(stream, target), backward=True)
    return bool(i >= 0 and entries[i].timestamp > _timestamp(stream, now))


def _timestamp(stream: VideoStream, seconds: float) -> int:
    """``seconds`` from the start in the stream's time base."""
    time_base = stream.time_base
    if time_base is None:
        return 0
    return (stream.start_time or 0) + int(seconds / time_base)


def _to_image(frame: VideoFrame) -> Image.Image:
    """An RGB Pillow image of ``frame``, rotated upright like a player shows it."""
    image = Image.fromarray(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360  # counter-clockwise degrees
    if rotation in _ROTATIONS:
        image = image.transpose(_ROTATIONS[rotation])
    return image


def _thumbnail(frame: VideoFrame) -> npt.NDArray[np.uint8]:
    """A ``32×32×3`` RGB thumbnail: RGB rather than grey, so that a cut between two shots of
    the same brightness still shows."""
    small = frame.reformat(
        width=_THUMB_SIDE, height=_THUMB_SIDE, format="rgb24", interpolation="AREA"
    )
    return np.asarray(small.to_ndarray(), dtype=np.uint8)


def _difference(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Mean absolute difference of two thumbnails, in [0, 1]."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) / 255.0


def _is_number(value: object) -> bool:
    """An int or float, not a bool, and not NaN."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _describe(exc: BaseException) -> str:
    """A one-line reason from a PyAV error, without the path that PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
