"""Saved LoRAs in the kohya format every SD loader reads (A1111, Forge, ComfyUI, diffusers).

- `kohya_names`: module paths -> `lora_unet_*` / `lora_te*_*` names; key suffixes.
- `kohya_state`: injected components <-> kohya state dict (export and import).
- `file_arch`: which model family a LoRA file is for.
- `read`, `pretrained`: read a LoRA file; continue training from one (`pretrained_lora`).
- `metadata`, `hashes`: the `ss_*` / `modelspec.*` header and kohya's `sshs_*` hashes.
- `naming`, `atomic`, `save`: free file names, atomic never-overwriting writes, the LoRA,
  its card `.json` and `.preview.png`.
"""
