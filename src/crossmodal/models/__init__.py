"""Native models: the CLIP dual encoder, its typed config, the registry, weights on disk."""
