"""Loading base models (single-file checkpoints in the ldm layout, diffusers folders, tokenizers)
and a LoRA file to continue training from (`pretrained_lora.py`).

Imports nothing, so light modules (unet_layout, arch names) stay cheap to import. The entry points:

    from lora_train.models.load import load_base_model      # -> BaseModel (base_model.py)
    from lora_train.models.pipeline import make_pipeline    # sampling pipeline over its parts
    base = load_base_model("models/Stable-diffusion/model.safetensors")
    base.arch, base.v_prediction, base.base_model_version   # "sdxl", False, "sdxl_base_v1-0"
"""
