"""The kohya LoRA file format that every SD loader reads (A1111, Forge, ComfyUI, diffusers).

- `names`: module paths -> `lora_unet_*` / `lora_te*_*` names; key suffixes.
- `state`: injected components <-> kohya state dict (export and import).
- `metadata`, `hashes`: the `ss_*` / `modelspec.*` header and kohya's `sshs_*` hashes.
- `read`, `write`: a LoRA file's tensors and header, read safely and written atomically.

Generic parts live elsewhere: file names, atomic writes, the WebUI card and the architecture
names in `lora_train.core`; continuing training from a file in `models/pretrained_lora.py`.
"""
