"""General icon sets as captioned training images (``crossmodal data icons``).

:func:`build_icon_dataset` reads the permissively licensed, non-emoji sets of npm
``@iconify/json`` as a stream, turns icon names into captions, keeps the captions several
sets agree on, renders the icons and writes a manifest for ``crossmodal train``.
"""

from crossmodal.data.icons.build import IconBuildConfig, IconBuildResult, build_icon_dataset
from crossmodal.data.icons.collection import (
    EXCLUDED_CATEGORIES,
    HELD_OUT_PREFIXES,
    PERMISSIVE_LICENCES,
    choose_sets,
)
from crossmodal.data.icons.names import caption_of

__all__ = [
    "EXCLUDED_CATEGORIES",
    "HELD_OUT_PREFIXES",
    "PERMISSIVE_LICENCES",
    "IconBuildConfig",
    "IconBuildResult",
    "build_icon_dataset",
    "caption_of",
    "choose_sets",
]
