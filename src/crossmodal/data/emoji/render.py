"""Source images to dataset images: OpenMoji's black set, SVG rasterising, one RGB format.

Every image goes through :func:`~crossmodal.data.images.load_image`, so transparency lands on
:data:`~crossmodal.data.images.BACKGROUND` exactly as in training, evaluation and search.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from PIL import Image

from crossmodal.data.emoji.sources import RawImage, SourceLayoutError
from crossmodal.data.images import BACKGROUND, load_image
from crossmodal.errors import BackendUnavailableError

__all__ = ["outline_svg", "rasterise_svg", "render_image"]

_OUTLINE_LAYERS = frozenset({"line", "line-supplement"})  # OpenMoji layers of the black set
_COLOUR_LAYERS = frozenset({"color", "color-foreground", "hair", "skin", "skin-shadow"})


def outline_svg(svg: bytes) -> bytes:
    """OpenMoji's black-and-white drawing of a colour SVG: its line layers only.

    OpenMoji draws every emoji in layers (``color``, ``skin``, ``hair``, ``line``, ...); its
    black set is the ``line`` and ``line-supplement`` layers alone, which is what this keeps.

    Raises:
        SourceLayoutError: Not parseable SVG, or no ``line`` layer to keep.
    """
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as exc:
        raise SourceLayoutError(f"cannot parse an OpenMoji SVG: {exc}") from exc
    layers = [child for child in root if child.get("id") in _OUTLINE_LAYERS]
    if not any(child.get("id") == "line" for child in layers):
        raise SourceLayoutError("the OpenMoji SVG has no 'line' layer to draw in black")
    for child in list(root):
        if child.get("id") in _COLOUR_LAYERS:
            root.remove(child)
    return bytes(ET.tostring(root, encoding="utf-8"))


def rasterise_svg(svg: bytes, size: int) -> Image.Image:
    """Render an SVG to a ``size`` × ``size`` RGBA image with resvg (``resvg-py``).

    Raises:
        BackendUnavailableError: ``resvg-py`` is not installed.
        SourceLayoutError: resvg cannot render the SVG.
    """
    try:
        import resvg_py
    except ImportError as exc:
        raise BackendUnavailableError("OpenMoji rendering", "data", "resvg-py") from exc
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=svg.decode("utf-8"), width=size, height=size, skip_system_fonts=True
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceLayoutError(f"resvg cannot render an SVG: {exc}") from exc
    image = Image.open(io.BytesIO(bytes(png)))
    image.load()
    return image


def render_image(raw: RawImage, size: int, *, outline: bool = False) -> Image.Image:
    """One source image as a ``size`` × ``size`` RGB image on :data:`BACKGROUND`.

    SVGs are rasterised at ``size`` (their black set first if ``outline``); PNGs are decoded,
    composited, and resized with Lanczos when their side differs, centred if not square.

    Raises:
        SourceLayoutError: An SVG that cannot be parsed, outlined or rendered.
        ImageDecodeError: A PNG that cannot be decoded.
        BackendUnavailableError: An SVG and no ``resvg-py``.
    """
    if raw.format == "svg":
        svg = outline_svg(raw.data) if outline else raw.data
        image = load_image(rasterise_svg(svg, size))
    else:
        image = load_image(Image.open(io.BytesIO(raw.data)))
    if image.size == (size, size):
        return image
    scale = size / max(image.size)  # fit the long side, keep the aspect ratio
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(target, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas
