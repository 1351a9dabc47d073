"""Preparing data with a model: cleaning, zero-shot labeling, feature extraction.

Jobs over a :mod:`crossmodal.data` source that need an encoder: ``cleaning`` (corrupt files,
duplicates, bad captions), ``labeling`` and ``label_outputs`` (zero-shot auto-labels and their
review files), ``extract`` (features with progress and resume; on Ray:
:mod:`crossmodal.scale.extract`) and ``embedding_files`` (vectors written for other tools).
"""
