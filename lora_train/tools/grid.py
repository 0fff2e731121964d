"""`python -m lora_train grid`: the strength grid rendered with the engine's pipeline (the standalone UI's worker).

The base model is loaded once, each LoRA becomes a diffusers adapter, and every cell is rendered
with the same seed and `set_adapters` at that cell's weights, so the cells differ only by the
LoRA weights. A Flux.1 / Chroma base renders with its own pipeline (`grid_flux`). The grid image and its
parameters are saved with `grid_image.save_grid`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import UserError
from ..dit.source import flux_source
from ..models.load import load_base_model
from ..models.pipeline import make_pipeline
from ..core.grid_image import GridSpec, compose_grid, save_grid
from .lora_file import read_any_lora
from .merge import check_same_family


def render_grid(spec: GridSpec, lora_paths: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Render and save the grid; returns (image path, parameters path)."""
    loras = [read_any_lora(path) for path in lora_paths]
    check_same_family(loras)  # clear messages before the model loads

    def check_base(arch: str, title: str, name: str) -> None:
        for lora in loras:
            if lora.arch and lora.arch != arch:
                raise UserError(f"{lora.path.name} is a LoRA for {lora.label} but the base model {name} is "
                                f"{title}: choose LoRAs made for this model.")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = flux_source(spec.base_model)
    if source is not None:
        from .grid_flux import flux_grid_images

        images = flux_grid_images(spec, loras, source, device, check_base)
        return save_grid(out_dir, spec, compose_grid(spec, images))
    base = load_base_model(spec.base_model)
    check_base(base.arch, base.family.names.title, base.name)
    pipeline = make_pipeline(base, device=device)
    adapters = [f"lora{index}" for index in range(len(lora_paths))]
    for adapter, path in zip(adapters, lora_paths):
        pipeline.load_lora_weights(str(path), adapter_name=adapter)
    images = []
    for row, column in spec.cells():
        pipeline.set_adapters(adapters, adapter_weights=[row, column][:len(adapters)])
        generator = torch.Generator(device).manual_seed(spec.seed)
        images.append(pipeline(spec.prompt, negative_prompt=spec.negative_prompt or None, width=spec.width,
                               height=spec.height, num_inference_steps=spec.steps, generator=generator).images[0])
    return save_grid(out_dir, spec, compose_grid(spec, images))
