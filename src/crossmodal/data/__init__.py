"""Data sources, image decoding and transforms."""
