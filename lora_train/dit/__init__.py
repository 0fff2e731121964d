"""The DiT engine: diffusion transformers trained with rectified-flow matching, the Flux family first
(Flux.1-dev / Krea, Flux.1-schnell, Chroma).

`detect` tells the family from a file's tensor names and shapes (torch-free), `flux_layout` converts
between BFL's single-file layout and diffusers', `load` builds the parts, `trainer` runs the job on
the shared run kit (`train/`), and `lora_file` writes kohya's Flux LoRA format.
"""
