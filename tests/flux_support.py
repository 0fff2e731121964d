"""Shared pieces of the Flux tests: a tiny transformer with a random LoRA and its weights merged by the LoRA layers
themselves, a LoRA file merged independently (on BFL's weights, as Forge and ComfyUI apply it) and the
flow-matching loss of a model on a set of images at fixed noise and sigmas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from lora_train.adapters.inject import inject_lora
from lora_train.adapters.layers import ADAPTER, lora_layers
from lora_train.adapters.spec import LoraSpec
from lora_train.adapters.targets import TargetSet
from lora_train.dit.flux_layout import bfl_modules, from_bfl, to_bfl
from lora_train.dit.packing import image_ids, pack, text_ids, unpack
from lora_train.dit.text import TextSettings, attention_masks, clip_pooled, t5_outputs
from lora_train.train.latents import encode_latents

SIGMAS = (0.2, 0.4, 0.6, 0.8)
ALL_KINDS = ("attention", "mlp", "modulation")


def with_lora(transformer, names, rank=4, alpha=3.0, seed=1):
    """`transformer` with a LoRA of `rank` and `alpha` on `names`, both matrices random."""
    spec = LoraSpec.from_settings(network_type="lora", lora_rank=rank, lora_alpha=alpha, conv_dim=1, conv_alpha=1,
                                  use_dora=False)
    inject_lora(transformer, [], TargetSet(tuple(names), ()), spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(transformer):
            for weight in (layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight):
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.05)
    return transformer


def merged_by_peft(transformer) -> dict[str, torch.Tensor]:
    """The transformer's diffusers weights with each LoRA layer's update added, as the layers compute it."""
    state = {key.replace(".base_layer.", "."): value for key, value in transformer.state_dict().items()
             if ".lora_" not in key}
    for path, layer in lora_layers(transformer):
        delta = layer.lora_B[ADAPTER].weight @ layer.lora_A[ADAPTER].weight * layer.scaling[ADAPTER]
        state[f"{path}.weight"] = state[f"{path}.weight"] + delta
    return state


def merged_from_file(bfl: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], modules) -> dict[str, torch.Tensor]:
    """W + alpha / rank * up @ down for every `lora_unet_` module of the file, on BFL's weights (rank: down's rows)."""
    names = {"lora_unet_" + module.bfl.replace(".", "_"): module.bfl for module in modules}
    merged = dict(bfl)
    for key in lora:
        if key.startswith("lora_unet_") and key.endswith(".lora_down.weight"):
            name = key.removesuffix(".lora_down.weight")
            down, up, alpha = lora[key].float(), lora[f"{name}.lora_up.weight"].float(), lora[f"{name}.alpha"].item()
            merged[f"{names[name]}.weight"] = merged[f"{names[name]}.weight"] + alpha / down.shape[0] * up @ down
    return merged


def apply_lora_file(transformer: torch.nn.Module, path: Path, chroma: bool) -> None:
    """Put the file's LoRA into `transformer`'s weights, merged on the BFL layout and converted back."""
    modules = bfl_modules(transformer.config, chroma=chroma)
    state = transformer.state_dict()
    merged = merged_from_file(to_bfl(state, modules), load_file(path), modules)
    transformer.load_state_dict(dict(from_bfl(merged.__getitem__, modules, {k: v.shape for k, v in state.items()})))


def images(paths: list[Path]) -> torch.Tensor:
    arrays = [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1 for path in paths]
    return torch.tensor(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def flow_loss(base, image_paths: list[Path], captions: list[str], guidance: float = 1.0, max_length: int = 16) -> float:
    """Mean velocity error of `base` on the images at fixed noise and sigmas (the same draw every call)."""
    latents = encode_latents(base.vae, images(image_paths), torch.device("cpu"))
    batch, _, height, width = latents.shape
    settings = TextSettings(max_length, base.family.parts.masked_text)
    text = t5_outputs(base.t5, base.t5_tokenizer, captions, settings, torch.device("cpu"))
    kwargs = dict(encoder_hidden_states=text["t5"], img_ids=image_ids(height, width, latents.device, latents.dtype),
                  txt_ids=text_ids(max_length, latents.device, latents.dtype), return_dict=False,
                  **attention_masks(base.family.parts, settings, text["t5_mask"], height * width // 4, latents.dtype))
    if base.clip is not None:
        kwargs["pooled_projections"] = clip_pooled(base.clip, base.clip_tokenizer, captions, latents.device)
    if base.guidance:
        kwargs["guidance"] = torch.full((batch,), guidance)
    generator, total = torch.Generator().manual_seed(0), 0.0
    for sigma in SIGMAS:
        noise = torch.randn(latents.shape, generator=generator)
        noisy = (1 - sigma) * latents + sigma * noise
        prediction = base.transformer(hidden_states=pack(noisy), timestep=torch.full((batch,), sigma), **kwargs)[0]
        total += torch.nn.functional.mse_loss(unpack(prediction, height, width), noise - latents).item()
    return total / len(SIGMAS)


def deep_flux_dev(files, folder: Path, doubles: int = 4, singles: int = 6) -> Path:
    """A tiny Flux.1-dev transformer with more blocks (block swap keeps 2 of each kind on the device), as a BFL
    file with `files`' autoencoder, CLIP-L, T5 and its tokenizer beside it."""
    import dataclasses
    import shutil

    from safetensors.torch import save_file

    from lora_train.fixtures.flux_files import transformer_bfl
    from lora_train.fixtures.tiny_flux import tiny_flux

    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_flux("flux-dev")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        deeper = type(model.transformer).from_config({**model.transformer.config, "num_layers": doubles,
                                                      "num_single_layers": singles})
    for part in (files.ae, files.clip_l, files.t5xxl):
        shutil.copy(part, folder / part.name)
    shutil.copytree(files.t5_tokenizer, folder / files.t5_tokenizer.name, dirs_exist_ok=True)
    path = folder / "deep-flux-dev.safetensors"
    save_file(transformer_bfl(dataclasses.replace(model, transformer=deeper)), str(path))
    return path
