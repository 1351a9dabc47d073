"""Emoji styles from Iconify icon sets (npm ``@iconify-json/*``), joined to Emojibase by name.

An Iconify package holds one JSON of SVG bodies keyed by icon name (``icons.json``), the set's
licence (``info.json``) and, for some sets, a map from code points to names (``chars.json``).
Its icons are named, not numbered, so each name is joined to an Emojibase hexcode, in order
of trust:

1. the set's own ``chars.json`` (``1f600`` → ``grinning-face``), where it ships one;
2. the slug of the English CLDR label (``grinning face`` → ``grinning-face``; ``flag: Chad``
   also as ``flag-for-chad`` and ``flag-for-flag-chad``, older sets' naming);
3. the slug of a shortcode of any Emojibase preset (``thumbsup``, ``+1`` is never used: a name
   of digits alone is ambiguous), or of the Unicode character name (``black-diamond-suit``);
4. any of those with the hyphens dropped, for sets that run words together
   (``admissiontickets``), only where that squashed name points at one emoji.

A name with a skin-tone suffix (``-light``, ``-medium-dark-skin-tone``) whose stem is a name
of the set is a skin-tone variant and is left out; numbered variants (``baby-2``) join by
their stem, the lowest number winning. Aliases are resolved to their parent with its
flips and rotation applied (fluent-emoji's ``pointing-right`` is a flipped
``pointing-left``). What does not join is counted by reason in the build report.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodal.data.emoji.labels import normalise_hexcode
from crossmodal.data.emoji.sources import (
    RawImage,
    SourceImages,
    SourceLayoutError,
    read_tar_files,
)

__all__ = [
    "EmojiNames",
    "IconSet",
    "icon_set_from_json",
    "icon_svg",
    "join_icon_names",
    "read_emoji_names",
    "read_icon_set",
    "read_iconify_emoji",
    "slug",
]

# Join priorities: lower wins when two names point at one emoji.
_BY_CHARS, _BY_LABEL, _BY_ALIAS_NAME, _BY_SQUASHED = 0, 1, 2, 3
_SHORTCODE_PRESETS = ("cldr", "emojibase", "github", "iamcal", "joypixels")
_SKIN_SUFFIX = re.compile(
    r"-(?:(?:medium-)?(?:light|dark)|medium)(?:-skin-tone)?$|-(?:default|tone\d)$"
)
_NUMBERED = re.compile(r"^(.+)-(\d)$")


def slug(text: str) -> str:
    """``text`` as an Iconify-style name: ASCII, lower case, words joined by ``-``.

    ``"woman’s hat"`` → ``"womans-hat"``, ``"piñata"`` → ``"pinata"``, ``"A & B"`` →
    ``"a-and-b"``.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = ascii_text.lower().replace("&", " and ").replace("'", "")
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text))


@dataclass(frozen=True)
class EmojiNames:
    """Names of Emojibase's emoji, to join named icons by.

    ``exact`` maps a slug to the normalised hexcodes it names, with the name's priority;
    ``squashed`` the same slugs without hyphens.
    """

    exact: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict)
    squashed: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, labels: Iterable[tuple[str, str]], aliases: Iterable[tuple[str, str]]
    ) -> EmojiNames:
        """From ``(hexcode, English label)`` pairs and ``(hexcode, other name)`` pairs."""
        exact: dict[str, tuple[int, set[str]]] = {}

        def add(name: str, key: str, priority: int) -> None:
            name = slug(name)
            if not key or not name or name.isdigit():
                return
            known = exact.get(name)
            if known is None or priority < known[0]:
                exact[name] = (priority, {key})
            elif priority == known[0]:
                known[1].add(key)

        for hexcode, label in labels:
            key = normalise_hexcode(hexcode)
            add(label, key, _BY_LABEL)
            if label.lower().startswith("flag: "):  # older sets: flag-for-[flag-]<country>
                add("flag for " + label[len("flag: ") :], key, _BY_LABEL)
                add("flag for flag " + label[len("flag: ") :], key, _BY_LABEL)
        for hexcode, name in aliases:
            add(name, normalise_hexcode(hexcode), _BY_ALIAS_NAME)
        squashed: dict[str, set[str]] = {}
        for name, (_, keys) in exact.items():
            squashed.setdefault(name.replace("-", ""), set()).update(keys)
        return cls(
            {n: (p, frozenset(k)) for n, (p, k) in exact.items()},
            {n: frozenset(k) for n, k in squashed.items()},
        )

    def lookup(self, name: str) -> tuple[int, str] | None:
        """``(priority, hexcode key)`` that ``name`` names unambiguously, else None."""
        if name.isdigit():
            return None
        found = self.exact.get(name)
        if found is not None and len(found[1]) == 1:
            return found[0], next(iter(found[1]))
        if found is None:
            keys = self.squashed.get(name.replace("-", ""), frozenset())
            if len(keys) == 1:
                return _BY_SQUASHED, next(iter(keys))
        return None


def read_emoji_names(path: Path, labels: Iterable[tuple[str, str]]) -> EmojiNames:
    """:class:`EmojiNames` from English labels and the English shortcodes of an Emojibase tarball.

    ``labels`` are ``(hexcode, English label)`` pairs (the entries already read); the
    shortcodes come from ``package/en/shortcodes/*.json`` in ``path``; Unicode character
    names are added for single code points.

    Raises:
        SourceLayoutError: A shortcode file is not JSON.
    """
    labels = list(labels)
    wanted = {f"package/en/shortcodes/{p}.json" for p in _SHORTCODE_PRESETS}
    aliases: list[tuple[str, str]] = []
    for name, data in read_tar_files(path, wanted.__contains__, {}):
        try:
            table = json.loads(data)
        except ValueError as exc:
            raise SourceLayoutError(f"{path}: {name} is not JSON ({exc})") from exc
        for hexcode, codes in table.items() if isinstance(table, dict) else ():
            for code in [codes] if isinstance(codes, str) else codes or ():
                aliases.append((str(hexcode), str(code)))
    for hexcode, _ in labels:
        points = [p for p in normalise_hexcode(hexcode).split("-") if p]
        if len(points) == 1:
            unicode_name = unicodedata.name(chr(int(points[0], 16)), "")
            if unicode_name:
                aliases.append((hexcode, unicode_name))
    return EmojiNames.build(labels, aliases)


@dataclass(frozen=True)
class IconSet:
    """One Iconify icon set, as its ``icons.json`` holds it."""

    prefix: str  # the set's name, e.g. "fxemoji"
    version: str  # the npm package version
    license: str  # SPDX id from info.json ("" when the package does not say)
    icons: dict[str, dict[str, Any]]  # name -> {"body", optional width/height/left/top/flips}
    aliases: dict[str, dict[str, Any]]  # name -> {"parent", optional flips, rotate, box}
    chars: dict[str, str]  # code points ("1f600") -> icon name; {} when not shipped
    width: float  # default box width of the set's icons
    height: float  # default box height


def read_icon_set(path: Path) -> IconSet:
    """The icon set of an ``@iconify-json/<prefix>`` npm tarball.

    Raises:
        SourceLayoutError: No readable ``package/icons.json`` with an ``icons`` object.
    """
    wanted = {f"package/{n}.json" for n in ("icons", "info", "chars", "package")}
    files = dict(read_tar_files(path, wanted.__contains__, {}))
    try:
        data = json.loads(files["package/icons.json"])
        info = json.loads(files.get("package/info.json", b"{}"))
        chars = json.loads(files.get("package/chars.json", b"{}"))
        version = str(json.loads(files.get("package/package.json", b"{}")).get("version", ""))
        return icon_set_from_json(data, version, info, chars)
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceLayoutError(
            f"{path}: not an Iconify JSON package ({exc!r}); pin the major version in "
            "SOURCE_PACKAGES"
        ) from exc


def icon_set_from_json(
    data: Any, version: str = "", info: Any = None, chars: Any = None
) -> IconSet:
    """An :class:`IconSet` from an Iconify JSON object (``info`` defaults to its own).

    Raises:
        TypeError: ``data`` has no ``icons`` object.
    """
    icons = data.get("icons") if isinstance(data, dict) else None
    if not isinstance(icons, dict):
        raise TypeError("no 'icons' object")
    info = data.get("info", {}) if info is None else info
    licence = info.get("license", {}) if isinstance(info, dict) else {}
    return IconSet(
        prefix=str(data.get("prefix", "")),
        version=version or "unknown",
        license=str(licence.get("spdx", "")) if isinstance(licence, dict) else "",
        icons=icons,
        aliases=data.get("aliases") or {},
        chars=chars if isinstance(chars, dict) else {},
        width=float(data.get("width", 16)),
        height=float(data.get("height", 16)),
    )


def icon_svg(icons: IconSet, name: str) -> bytes:
    """The standalone SVG of icon ``name`` (an alias resolved, its flips and rotation applied).

    Raises:
        SourceLayoutError: An unknown name or an alias loop.
    """
    chain: list[dict[str, Any]] = []
    current = name
    while current in icons.aliases:
        if len(chain) > 8:
            raise SourceLayoutError(f"{icons.prefix}: alias loop at {name!r}")
        chain.append(icons.aliases[current])
        current = str(icons.aliases[current].get("parent", ""))
    if current not in icons.icons:
        raise SourceLayoutError(f"{icons.prefix}: {name!r} names no icon")
    props: dict[str, Any] = dict(icons.icons[current])
    h_flip, v_flip = bool(props.get("hFlip")), bool(props.get("vFlip"))
    rotate = int(props.get("rotate", 0))
    for alias in reversed(chain):  # the nearest alias is applied last
        props.update({k: alias[k] for k in ("width", "height", "left", "top") if k in alias})
        h_flip ^= bool(alias.get("hFlip"))
        v_flip ^= bool(alias.get("vFlip"))
        rotate += int(alias.get("rotate", 0))
    left, top = float(props.get("left", 0)), float(props.get("top", 0))
    width = float(props.get("width", icons.width))
    height = float(props.get("height", icons.height))
    body = str(props.get("body", ""))
    transforms = []
    if h_flip:
        transforms.append(f"translate({2 * left + width:g} 0) scale(-1 1)")
    if v_flip:
        transforms.append(f"translate(0 {2 * top + height:g}) scale(1 -1)")
    if rotate % 4:
        cx, cy = left + width / 2, top + height / 2
        transforms.append(f"rotate({90 * (rotate % 4)} {cx:g} {cy:g})")
    if transforms:
        body = f'<g transform="{" ".join(reversed(transforms))}">{body}</g>'
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left:g} {top:g} {width:g} {height:g}" width="{width:g}" height="{height:g}">'
        f"{body}</svg>"
    )
    return svg.encode("utf-8")


def join_icon_names(icons: IconSet, names: EmojiNames) -> tuple[dict[str, str], Counter[str]]:
    """Each joined emoji's icon name, by normalised hexcode, and what was left out by reason."""
    every = {**dict.fromkeys(icons.aliases, True), **dict.fromkeys(icons.icons, False)}
    best: dict[str, tuple[tuple[int, int, bool], str]] = {}
    skipped: Counter[str] = Counter()

    def offer(key: str, rank: tuple[int, int, bool], name: str) -> None:
        if key not in best or rank < best[key][0]:
            best[key] = (rank, name)

    by_chars = {v: normalise_hexcode(k) for k, v in icons.chars.items()}
    for name, is_alias in every.items():
        if name in by_chars and by_chars[name]:
            offer(by_chars[name], (_BY_CHARS, 0, is_alias), name)
            continue
        stem = _SKIN_SUFFIX.sub("", name)
        if stem != name and (stem in every or names.lookup(stem) is not None):
            skipped["skin-tone variant"] += 1
            continue
        found, number = names.lookup(name), 0
        numbered = _NUMBERED.match(name)
        if found is None and numbered is not None:
            found, number = names.lookup(numbered.group(1)), int(numbered.group(2))
        if found is None:
            reason = "name of digits only" if name.isdigit() else "no Emojibase name matches"
            skipped[reason] += 1
            continue
        offer(found[1], (found[0], number, is_alias), name)
    joined = {key: name for key, (_, name) in best.items()}
    skipped["another name of an emoji already joined"] += (
        sum(1 for _ in every) - len(joined) - sum(skipped.values())
    )
    return joined, skipped


def read_iconify_emoji(path: Path, names: EmojiNames, expected_license: str) -> SourceImages:
    """The emoji of an Iconify package as SVG images, named by Emojibase hexcode.

    Raises:
        SourceLayoutError: Not an Iconify package; its licence is not ``expected_license``
            (a changed licence must be reviewed before its images are used).
    """
    icons = read_icon_set(path)
    if icons.license != expected_license:
        raise SourceLayoutError(
            f"{path}: the set's licence is {icons.license or 'not stated'}, not "
            f"{expected_license}; review it before use, then update SOURCE_PACKAGES"
        )
    joined, skipped = join_icon_names(icons, names)
    images = list(_svg_images(icons, joined))
    if not images:
        raise SourceLayoutError(f"{path}: no icon joined an Emojibase name")
    return SourceImages(icons.version, images, dict(skipped))


def _svg_images(icons: IconSet, joined: dict[str, str]) -> Iterator[RawImage]:
    for key, name in joined.items():
        yield RawImage(key, icon_svg(icons, name), "svg")
