"""A language prior for the text tower: what a sentence-embedding teacher knows about words,
distilled into the bilingual tower against a locked image tower.

A contrastive run teaches the text tower the captions it saw. A query in other words
("a puppy", "庆祝") lands wherever its subwords happen to fall. The prior stage fixes that
without touching the image tower (so every index built with the model stays valid):

1. **Concepts**: each concept of a captioned image manifest (the label column: an emoji's
   hexcode) gets a prototype, the mean of its images' unit vectors from the locked image
   tower, and an English label the teacher reads.
2. **Vocabulary**: texts the tower should understand, each with the English text a teacher
   reads for it: the concepts' captions (English and Chinese), the captions of other
   manifests (an icon vocabulary: every caption of a row is taught by its first English one)
   and a bilingual glossary (CC-CEDICT: the Chinese word and its English sense both taught by
   the English).
3. **Targets**: the teacher (all-MiniLM-L6-v2 through sentence-transformers) spreads each
   text over the concepts, softmax of its cosine to their labels at a temperature, over its
   top k; texts the teacher finds near no concept are dropped. A concept's own caption keeps
   most of its mass on its concept.
4. **Training**: the text tower learns to give the same distribution against the prototypes
   (cross-entropy with soft targets, :func:`train_text_prior`), in the common loop
   (checkpoints, resume, curves).
"""

from crossmodal.train.prior.concepts import Concepts, concept_prototypes, read_concepts
from crossmodal.train.prior.targets import TargetConfig, soft_targets
from crossmodal.train.prior.teacher import DEFAULT_TEACHER, SentenceTeacher
from crossmodal.train.prior.train import PriorConfig, PriorResult, train_text_prior
from crossmodal.train.prior.vocabulary import glossary_pairs, read_vocabulary

__all__ = [
    "DEFAULT_TEACHER",
    "Concepts",
    "PriorConfig",
    "PriorResult",
    "SentenceTeacher",
    "TargetConfig",
    "concept_prototypes",
    "glossary_pairs",
    "read_concepts",
    "read_vocabulary",
    "soft_targets",
    "train_text_prior",
]
