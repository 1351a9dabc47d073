"""Preparing data with a model: cleaning, zero-shot labeling, feature extraction.

Jobs over a :mod:`crossmodal.data` source that need an encoder: ``cleaning`` (corrupt files,
duplicates, bad captions), ``labeling`` and ``label_outputs`` (zero-shot auto-labels and their
review files), ``review_page`` and ``review`` (the review page's accept / correct, merged into a
corrected manifest), ``extract`` (features with progress and resume; on Ray:
:mod:`crossmodal.scale.extract`) and ``embedding_files`` (vectors written for other tools).
"""
