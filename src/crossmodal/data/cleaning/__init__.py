"""Data cleaning: image and caption checks, duplicates, image-text agreement, and the report.

    from crossmodal.data.cleaning import CleanConfig, clean, write_clean_outputs
    result = clean(open_source("photos.jsonl"), CleanConfig(min_similarity=0.2), encoder)
    write_clean_outputs(result, "clean/", source_name="photos.jsonl")

``crossmodal data clean SRC --out DIR`` is the command line for it.
"""

from crossmodal.data.cleaning.captions import CaptionRules, detect_language, repair_text
from crossmodal.data.cleaning.images import ImageRules
from crossmodal.data.cleaning.outputs import CleanOutputs, build_report, write_clean_outputs
from crossmodal.data.cleaning.pipeline import RULES, CleanConfig, CleanItem, CleanResult, clean

__all__ = [
    "RULES",
    "CaptionRules",
    "CleanConfig",
    "CleanItem",
    "CleanOutputs",
    "CleanResult",
    "ImageRules",
    "build_report",
    "clean",
    "detect_language",
    "repair_text",
    "write_clean_outputs",
]
