"""The strength grid on a Flux.1 / Chroma base: diffusers' FluxPipeline / ChromaPipeline on the loaded model, each
cell rendered after setting the adapted weights to base + the cell's weights x each LoRA's change.

The change of a kohya Flux module is computed from the file (alpha / rank x up @ down on the fused BFL module,
its rows split over diffusers' parts as `dit.flux_layout` stacks them; CLIP-L's `lora_te1_` modules as they
are), so any Flux LoRA the tools read renders, whatever its widths (diffusers' own kohya-Flux loader assumes
Flux's 3072). Dev gets the embedded guidance Flux samples with (3.5), Chroma true CFG with the negative prompt.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from ..adapters.targets import text_encoder_root
from ..core.errors import UserError
from ..core.grid_image import GridSpec
from ..dit.base import FluxBase, load_flux_base
from ..dit.flux_layout import bfl_modules, swap_halves
from ..dit.sampling import FLUX_DEV_GUIDANCE
from ..dit.source import FluxSource
from .lora_file import LoraFile

Changes = dict[nn.Parameter, torch.Tensor]


def lora_changes(lora: LoraFile, base: FluxBase) -> Changes:
    """Each weight the LoRA changes -> its change at strength 1."""
    transformer = base.transformer
    fused = {"lora_unet_" + module.bfl.replace(".", "_"): module
             for module in bfl_modules(transformer.config, chroma=base.family.parts.distilled_modulation)}
    clip = {f"lora_te1_{(text_encoder_root(base.clip) + path).replace('.', '_')}": layer
            for path, layer in base.clip.named_modules() if isinstance(layer, nn.Linear)} if base.clip else {}
    changes: Changes = {}
    for name, module in lora.modules.items():
        delta = module.delta()
        if name in clip:
            changes[clip[name].weight] = delta
            continue
        if name not in fused:
            raise UserError(f"{lora.path.name}: {name} is not a layer of {base.name}, so the grid cannot show it.")
        parts = [transformer.get_submodule(part) for part in fused[name].parts]
        if fused[name].kind == "swapped":
            delta = swap_halves(delta)
        for layer, rows in zip(parts, delta.split([part.out_features for part in parts], dim=0)):
            changes[layer.weight] = rows
    return changes


def _pipeline(base: FluxBase):
    import diffusers

    pipeline_class = getattr(diffusers, base.family.folder.pipeline)
    if base.family.parts.true_cfg:
        return pipeline_class(scheduler=base.sampling_scheduler(), vae=base.vae, text_encoder=base.t5,
                              tokenizer=base.t5_tokenizer, transformer=base.transformer)
    return pipeline_class(scheduler=base.sampling_scheduler(), vae=base.vae, text_encoder=base.clip,
                          tokenizer=base.clip_tokenizer, text_encoder_2=base.t5, tokenizer_2=base.t5_tokenizer,
                          transformer=base.transformer)


@torch.no_grad()
def flux_grid_images(spec: GridSpec, loras: list[LoraFile], source: FluxSource, device: str,
                     check_base) -> list[Image.Image]:
    """Every cell of the grid, in `spec.cells()` order; `check_base(arch, title, name)` refuses LoRAs of another
    family before anything renders."""
    base = load_flux_base(source)
    check_base(base.arch, base.family.names.title, base.name)
    changes = [lora_changes(lora, base) for lora in loras]
    originals = {weight: weight.detach().clone() for change in changes for weight in change}
    pipeline = _pipeline(base).to(device)
    options = ({"negative_prompt": spec.negative_prompt or None} if base.family.parts.true_cfg
               else {"guidance_scale": FLUX_DEV_GUIDANCE} if base.guidance else {})
    images = []
    for row, column in spec.cells():
        for weight, original in originals.items():
            weight.copy_(original)
        for change, factor in zip(changes, (row, column)):
            for weight, delta in change.items():
                weight.add_(factor * delta.to(weight.device, weight.dtype))
        generator = torch.Generator("cpu").manual_seed(spec.seed)
        images.append(pipeline(spec.prompt, width=spec.width, height=spec.height, num_inference_steps=spec.steps,
                               generator=generator, max_sequence_length=base.family.parts.t5_max_length,
                               **options).images[0])
    return images
