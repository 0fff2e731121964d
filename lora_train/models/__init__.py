"""Loading base models: single-file checkpoints (ldm layout), diffusers folders, tokenizers."""
