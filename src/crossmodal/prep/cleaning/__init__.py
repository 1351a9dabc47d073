"""Data cleaning: image and caption checks, duplicates, image-text agreement, and the report.

    from crossmodal.prep.cleaning import CleanConfig, clean, write_clean_outputs
    result = clean(open_source("photos.jsonl"), CleanConfig(min_similarity=0.2), encoder)
    write_clean_outputs(result, "clean/", source_name="photos.jsonl")

``crossmodal data clean SRC --out DIR`` is the command line for it.
"""

from crossmodal.prep.cleaning.captions import CaptionRules, detect_language, repair_text
from crossmodal.prep.cleaning.images import ImageRules
from crossmodal.prep.cleaning.outputs import CleanOutputs, build_report, write_clean_outputs
from crossmodal.prep.cleaning.pipeline import RULES, CleanConfig, CleanItem, CleanResult, clean

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
