"""The bilingual emoji image-text dataset: Twemoji, Noto and OpenMoji images, CLDR captions.

:func:`build_emoji_dataset` fetches the source packages by name (npm, pip) into a cache, joins
every image to Emojibase's English and Chinese labels, and writes images, a manifest,
WebDataset shards, OpenCLIP CSVs, ready-to-use training and evaluation manifests, an
attribution file and statistics. ``crossmodal data emoji`` is its command line.

Modules: ``sources`` (fetching, caching, reading package archives), ``labels`` (Emojibase,
the join key, captions), ``render`` (SVG rasterising, one RGB format), ``writers`` (the
dataset's files, atomic publishing), ``tasks`` (the ``train.jsonl`` and ``eval/`` manifests)
and ``build`` (the pipeline and its config).
"""

from __future__ import annotations

from crossmodal.data.emoji.build import BuildResult, EmojiBuildConfig, build_emoji_dataset
from crossmodal.data.emoji.labels import (
    Concept,
    captions_en,
    captions_zh,
    generic_tags,
    join_labels,
    normalise_hexcode,
)
from crossmodal.data.emoji.sources import (
    SOURCE_PACKAGES,
    STYLES,
    SourceFetchError,
    SourceLayoutError,
    SourcePackage,
    StyleSpec,
    default_cache_dir,
    fetch_package,
)
from crossmodal.data.emoji.writers import DATASET_NAME, ManifestRow

__all__ = [
    "DATASET_NAME",
    "SOURCE_PACKAGES",
    "STYLES",
    "BuildResult",
    "Concept",
    "EmojiBuildConfig",
    "ManifestRow",
    "SourceFetchError",
    "SourceLayoutError",
    "SourcePackage",
    "StyleSpec",
    "build_emoji_dataset",
    "captions_en",
    "captions_zh",
    "default_cache_dir",
    "fetch_package",
    "generic_tags",
    "join_labels",
    "normalise_hexcode",
]
