"""A manifest's columns on `train`: --image-column, --text-column, --label-column."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["open_with_columns"]


def open_with_columns(path: str, args: argparse.Namespace, *, label: bool = True) -> Any:
    """The dataset at ``path`` (a manifest's missing images skipped) with the columns the
    command line names; ``label=False`` leaves the label column out (an evaluation set
    needs only pictures and captions)."""
    from crossmodal.data.sources import open_dataset

    columns = {
        "image_column": args.image_column,
        "caption_column": args.text_column,
        "label_column": args.label_column if label else None,
    }
    return open_dataset(path, **{k: v for k, v in columns.items() if v})
