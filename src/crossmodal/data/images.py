"""Image decoding and CLIP preprocessing with numpy and Pillow only.

:func:`load_image` is the one way every part of crossmodal (training, evaluation, search)
turns a file, a Pillow image or an array into an RGB image: JPEG draft decoding, EXIF
orientation, and transparency composited onto :data:`BACKGROUND`.
:class:`ImagePreprocess` then makes the model input, matching OpenCLIP's validation transform
(resize the shortest side, center crop, scale to [0, 1], normalise) value for value.
"""

from __future__ import annotations

import base64
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from crossmodal.errors import ConfigError, CrossmodalError, ImageDecodeError, InputError

__all__ = [
    "BACKGROUND",
    "ImageInput",
    "ImagePreprocess",
    "PreprocessConfig",
    "check_regular_file",
    "jpeg_bytes",
    "jpeg_data_uri",
    "load_image",
    "to_rgb",
]

ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | npt.NDArray[Any]
"""What :func:`load_image` accepts: a path, a Pillow image, or an HWC / HW array."""

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""The one colour every transparent image is composited onto, everywhere."""

_ORIENTATION_TAG = 0x0112  # EXIF tag id of Orientation
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})  # modes with an alpha band
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # read as 0..65535
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}  # PreprocessConfig.interpolation → Pillow filter


def load_image(
    source: ImageInput, *, draft_size: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode ``source`` into an RGB image, upright and with no transparency.

    A file is decoded by its content, whatever its suffix (a PNG named ``.jpg`` is fine).
    Truncated files are refused, not padded: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set.
    Anything that is not a regular file (a directory, a FIFO, a device) is refused before it is
    opened, so a path can never block the caller.

    Args:
        source: A file path, a Pillow image, or a numpy array (``H×W×3`` / ``H×W×4`` RGB(A)
            or ``H×W`` grey; ``uint8``, or floating point in ``[0, 1]``).
        draft_size: For JPEG files, let the decoder downscale by a power of two (1/2, 1/4,
            1/8) as long as both sides stay at least this many pixels. Pass the model's
            input side (:attr:`ImagePreprocess.draft_size`); ``None`` decodes at full size.
        max_pixels: Refuse a file whose header declares more than this many pixels (width ×
            height), before decoding it. ``None`` uses Pillow's process-wide
            ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 unless changed), read at each call.
            Whatever this says, ``Image.open`` itself refuses more than twice
            ``PIL.Image.MAX_IMAGE_PIXELS`` (and warns above it): to accept larger images,
            raise that module constant.

    Returns:
        A fully loaded ``RGB`` image. EXIF orientation is applied; alpha and palette
        transparency are composited onto :data:`BACKGROUND`; 16-bit grey is scaled to 8 bits.

    Raises:
        ImageDecodeError: The file is missing (or a broken symlink), empty, unreadable, a
            directory or other non-regular file, truncated, corrupt, not an image, or has more
            pixels than the limit (see ``max_pixels``). The message names the file.
        InputError: An array of unsupported shape, dtype or range, another type, or a
            non-positive ``draft_size`` / ``max_pixels``.
    """
    if isinstance(source, Image.Image):
        return _from_pillow(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, str | os.PathLike):
        return _from_path(os.fspath(source), draft_size, max_pixels)
    raise InputError(
        f"cannot load an image from a {type(source).__name__}; "
        "pass a path, a PIL.Image.Image or a numpy array"
    )


def jpeg_bytes(image: Image.Image, size: int | None = None, quality: int = 85) -> bytes:
    """``image`` as JPEG bytes, shrunk to ``size`` on its long side (thumbnails)."""
    image = to_rgb(image)
    if size is not None:
        image = image.copy()
        image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_data_uri(image: Image.Image, size: int | None = None, quality: int = 85) -> str:
    """``image`` as a ``data:image/jpeg;base64,...`` URI (see :func:`jpeg_bytes`).

    The pages crossmodal writes embed their thumbnails this way, so each is one file.
    """
    data = jpeg_bytes(image, size, quality)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in mode ``RGB``; transparency is composited onto :data:`BACKGROUND`.

    Handles alpha modes (RGBA, LA, PA, ...), palette or grey images with a transparent
    colour, 16-bit grey (``I;16``, ``I``: scaled from 0..65535 to 0..255), CMYK, ``L`` and
    ``1``. An image that is already plain RGB is returned as it is, not copied.

    Raises:
        InputError: The mode has no conversion to RGB.
    """
    has_alpha = image.mode in _ALPHA_MODES or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 → L conversion clips at 255 rather than scaling.
        grey = np.asarray(image).astype(np.int64)
        grey8 = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey8).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise InputError(f"cannot convert an image of mode {image.mode!r} to RGB: {exc}") from exc


def _from_path(path: str, draft_size: int | None, max_pixels: int | None) -> Image.Image:
    """Check, open, draft, fully decode, orient and convert one file."""
    if draft_size is not None and draft_size <= 0:
        raise InputError(f"draft_size must be a positive number of pixels, got {draft_size}")
    if max_pixels is not None and max_pixels <= 0:
        raise InputError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
    check_regular_file(path)
    image = _open(path)
    try:
        # Image.open only warns between MAX_IMAGE_PIXELS and twice that. Warning filters are
        # process-global and not thread-safe, so decoders on worker threads check here.
        limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        if limit is not None and image.width * image.height > limit:
            raise ImageDecodeError(
                path,
                f"too large, possible decompression bomb: {image.width}x{image.height} = "
                f"{image.width * image.height} pixels exceeds the limit of {limit} pixels "
                "(max_pixels, by default PIL.Image.MAX_IMAGE_PIXELS)",
            )
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = to_rgb(image)
        if rgb is image and getattr(image, "fp", None) is not None:
            rgb = image.copy()  # a multi-frame file stays open after load(); detach frame 0
    except ImageDecodeError:
        image.close()
        raise
    except CrossmodalError as exc:  # e.g. a mode with no RGB conversion: name the file
        image.close()
        raise ImageDecodeError(path, str(exc)) from exc
    except Exception as exc:  # truncated data, corrupt streams, bad EXIF, GIF frame bombs, ...
        image.close()
        raise ImageDecodeError(path, _describe(exc)) from exc
    if rgb is not image:
        image.close()  # releases the source pixels and any open file
    return rgb


def check_regular_file(path: str) -> None:
    """Refuse, with a clear reason, what a decoder would misreport or block on (a FIFO).

    Raises:
        ImageDecodeError: ``path`` is missing (or a broken symlink), unreadable, a directory,
            not a regular file, or empty; the message names it.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        reason = "file not found (broken symlink)" if os.path.islink(path) else "file not found"
        raise ImageDecodeError(path, reason) from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as exc:  # a symlink loop, a name too long, a file used as a directory
        raise ImageDecodeError(path, exc.strerror or type(exc).__name__) from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(path, "not a regular file (a FIFO, socket or device)")
    if info.st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")


def _open(path: str) -> Image.Image:
    """``Image.open``, its many failure types turned into :class:`ImageDecodeError`."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not a file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # Pillow plugins raise many types on bad headers
        raise ImageDecodeError(path, _describe(exc, context="bad header")) from exc


def _from_pillow(image: Image.Image) -> Image.Image:
    """An in-memory image: decode if lazy, orient by its EXIF tag, convert to RGB."""
    try:
        image.load()
        if image.getexif().get(_ORIENTATION_TAG, 1) != 1:
            image = ImageOps.exif_transpose(image) or image  # not in place: a new image
    except Exception as exc:
        name = getattr(image, "filename", "") or "<PIL.Image>"
        raise ImageDecodeError(str(name), _describe(exc)) from exc
    return to_rgb(image)


def _from_array(array: npt.NDArray[Any]) -> Image.Image:
    """An ``H×W`` grey or ``H×W×{1,3,4}`` RGB(A) array, ``uint8`` or float in [0, 1]."""
    what = f"image array of shape {array.shape} and dtype {array.dtype}"
    shape_ok = (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))) and (
        array.shape[0] > 0 and array.shape[1] > 0
    )
    if not shape_ok:
        raise InputError(f"unsupported {what}: expected H×W grey or H×W×3 / H×W×4 RGB(A)")
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InputError(f"unsupported {what}: pixels must be finite (found NaN or inf)")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"unsupported {what}: floating-point pixels must be in [0, 1] "
                f"(got min {low:g}, max {high:g}); pass uint8 for 0..255 data"
            )
        pixels = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InputError(f"unsupported {what}: expected uint8, or floating point in [0, 1]")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[pixels.ndim if pixels.ndim == 2 else pixels.shape[2]]
    return to_rgb(Image.fromarray(np.ascontiguousarray(pixels), mode=mode))


def _describe(exc: BaseException, context: str = "") -> str:
    """A one-line reason for a decode failure, ``context`` first unless it is a known kind."""
    text = str(exc).strip()
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # "Image size (N pixels) exceeds limit of M pixels, could be decompression bomb DOS
        # attack.": M is twice MAX_IMAGE_PIXELS for the error, MAX_IMAGE_PIXELS for the warning.
        detail = text.split(", could be")[0]
        return (
            f"too large, possible decompression bomb: {detail}; "
            "raise PIL.Image.MAX_IMAGE_PIXELS to accept it"
        )
    if isinstance(exc, OSError) and "truncated" in text.lower():
        return f"truncated file: {text}"
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"{context}: {described}" if context else described


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the model's ``(3, S, S)`` input."""

    image_size: int = 224  # side S of the square model input, in pixels
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # per-channel mean
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)  # per-channel std
    resize_mode: Literal["shortest", "squash"] = "shortest"  # shortest side + crop, or stretch
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"  # Pillow resampling filter


class ImagePreprocess:
    """Callable CLIP image transform, equal to OpenCLIP's validation transform.

    ``shortest`` mode is torchvision's ``Resize(S)`` (shortest side to ``S``, long side
    ``int(S * long / short)``), then ``CenterCrop(S)`` (offsets ``int(round((h - S) / 2))``),
    then ``ToTensor`` and ``Normalize``; ``squash`` resizes straight to ``S × S``. Resizing
    uses Pillow, as torchvision does for Pillow input, so the pixels are the same.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        """Check ``config`` and precompute the normalisation constants.

        Raises:
            ConfigError: A non-positive size or std, wrong-length mean/std, or unknown mode.
        """
        if config.image_size <= 0:
            raise ConfigError(f"image_size must be a positive integer, got {config.image_size}")
        if len(config.mean) != 3 or len(config.std) != 3:
            raise ConfigError(f"mean and std need 3 values, got {config.mean} and {config.std}")
        if any(s <= 0 for s in config.std):
            raise ConfigError(f"std values must be positive, got {config.std}")
        if config.resize_mode not in ("shortest", "squash"):
            raise ConfigError(
                f"resize_mode must be 'shortest' or 'squash', got {config.resize_mode!r}"
            )
        if config.interpolation not in _RESAMPLE:
            raise ConfigError(
                f"interpolation must be 'bicubic' or 'bilinear', got {config.interpolation!r}"
            )
        self.config = config
        self.image_size: int = config.image_size  # side of the square output
        self._resample = _RESAMPLE[config.interpolation]
        self._mean = np.asarray(config.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(config.std, dtype=np.float32).reshape(3, 1, 1)

    @property
    def draft_size(self) -> int:
        """The ``draft_size`` to pass to :func:`load_image` for this transform."""
        return self.image_size

    def __repr__(self) -> str:
        """Show the config."""
        return f"{type(self).__name__}({self.config!r})"

    def __call__(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """One image → normalised float32 array of shape ``(3, S, S)``.

        A non-RGB image is first converted with :func:`to_rgb` (alpha onto
        :data:`BACKGROUND`).
        """
        pixels = self.square(image).astype(np.float32)
        pixels /= np.float32(255.0)
        pixels -= self._mean
        pixels /= self._std
        return pixels

    def square(self, image: Image.Image) -> npt.NDArray[np.uint8]:
        """Resize and centre-crop to the model's square: ``(3, S, S)`` uint8, not normalised."""
        size = self.image_size
        image = to_rgb(image)
        width, height = image.size
        if self.config.resize_mode == "squash":
            target = (size, size)
        elif width <= height:
            target = (size, int(size * height / width))
        else:
            target = (int(size * width / height), size)
        if target != (width, height):
            image = image.resize(target, resample=self._resample)
        if target != (size, size):
            top = int(round((target[1] - size) / 2.0))
            left = int(round((target[0] - size) / 2.0))
            image = image.crop((left, top, left + size, top + size))
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))

    def batch(self, images: Sequence[Image.Image]) -> npt.NDArray[np.float32]:
        """Several images → float32 array of shape ``(B, 3, S, S)``."""
        size = self.image_size
        out = np.empty((len(images), 3, size, size), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = self(image)
        return out
