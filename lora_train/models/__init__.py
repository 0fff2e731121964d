"""Loading base models: single-file checkpoints (ldm layout), diffusers folders, tokenizers.

    from lora_train.models import load_base_model, make_pipeline
    base = load_base_model("models/Stable-diffusion/model.safetensors")
    base.arch, base.v_prediction, base.base_model_version   # "sdxl", False, "sdxl_base_v1-0"
"""

from .base_model import BaseModel
from .load import load_base_model
from .pipeline import make_pipeline

__all__ = ["BaseModel", "load_base_model", "make_pipeline"]
