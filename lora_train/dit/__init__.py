"""The DiT engine: diffusion transformers trained with rectified-flow matching, the Flux family first
(Flux.1-dev / Krea, Flux.1-schnell, Chroma: `families/flux.py`, whose `DitParts` this engine reads).

`detect` reads a file's transformer config from its tensor names and shapes (torch-free; the family is
`families.recognise.checkpoint_family`'s), `flux_layout` converts between BFL's single-file layout and
diffusers', `base` loads the parts, `trainer` runs the job on the shared run kit (`train/`), and
`lora_file` writes kohya's Flux LoRA format.
"""
