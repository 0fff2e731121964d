"""Tools that work on saved LoRA files (inspect; merge, resize, stack and extract as they come)."""
