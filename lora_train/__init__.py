"""lora_train: LoRA training for Stable Diffusion checkpoints, as a WebUI extension and a CLI."""

__version__ = "0.1.0"
