"""`bake`: LoRAs at weights added into a base checkpoint, saved as a new single-file checkpoint.

The change of each layer is what A1111's built-in Lora extension computes (`network.py`,
`finalize_updown`): dW = alpha / rank * up @ down, reshaped to the layer (1x1 convs, 3x3 LoCon
convs); for DoRA, dW = (W + dW) * dora_scale / ||W + dW|| - W with the norm per input channel;
then times the weight. The LoRAs' changes are each computed from the original weights and summed,
as when they are stacked in a prompt. Arithmetic is in fp32, the result is stored in the base's
dtype. A single-file base keeps its exact key layout (every other tensor copied unchanged, the
`.yaml` beside it copied beside the new file; without one, a UNet that is not of the standard shape is
refused, as its layers could not be placed); a diffusers folder is written in the original (ldm / sgm)
single-file layout the WebUI loads, with what a model of another shape needs beside it (`bake_config`). Fused q/k/v (OpenCLIP's `in_proj_weight`) get each
projection in its rows; an inpainting UNet's 9-channel input conv gets a 4-channel LoRA's change
on its latent channels. A Flux.1 / Chroma base is BFL's single file, written back in its own layout and dtypes
(`bake_flux`). The base is never written to, and the output never overwrites a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..adapters.dora import along_axis, input_norm
from ..core.atomic import write_new_file
from ..core.errors import UserError
from ..families import family, titles
from ..families.interface import UnetParts
from ..families.recognise import checkpoint_family
from ..families.stable_diffusion import UNET_PREFIX
from ..models.checkpoint_file import open_checkpoint
from ..models.ldm_config import find_ldm_config
from ..models.single_file import check_unet_config, part_configs
from .bake_config import ModelShape, beside_files, check_free, remove, write_beside
from .bake_flux import flux_base
from .checkpoint_targets import Target, checkpoint_targets
from .lora_file import LoraFile, LoraModule, read_any_lora
from .merge import check_same_family


@dataclass
class BakeResult:
    path: Path
    layout: str
    dtype: str
    changed: int = 0  # checkpoint tensors changed
    modules: int = 0  # LoRA modules applied
    notes: list[str] = field(default_factory=list)


@dataclass
class BaseWeights:
    """The base checkpoint as original-layout tensors, with what is needed to place LoRA modules."""

    state: dict[str, torch.Tensor]
    metadata: dict[str, str]
    arch: str
    unet_config: dict
    layout: str
    yaml: Path | None = None  # the single-file base's config, copied beside the output
    shape: ModelShape | None = None  # a diffusers base's configs, for the files its output needs beside it
    targets: dict[str, Target] | None = None  # where each LoRA module goes, when not found by `checkpoint_targets`

    def module_targets(self) -> dict[str, Target]:
        """kohya module name -> the weight (and rows) it changes."""
        if self.targets is not None:
            return self.targets
        return checkpoint_targets({key: value.shape for key, value in self.state.items()}, self.arch, self.unet_config)


def dora_change(delta: torch.Tensor, weight: torch.Tensor, dora_scale: torch.Tensor, name: str) -> torch.Tensor:
    """A1111's `apply_weight_decompose`: (W + dW) * dora_scale / ||W + dW|| - W, norm per input channel."""
    if dora_scale.numel() != weight.shape[1]:
        raise UserError(f"{name}.dora_scale has shape {tuple(dora_scale.shape)}; the WebUI reads DoRA scales per input "
                        f"channel ({weight.shape[1]} values), so this file cannot be baked as the WebUI applies it.")
    merged = weight + delta
    return merged * along_axis(dora_scale.float().flatten() / input_norm(merged), merged.ndim, 1) - weight


def module_change(name: str, module: LoraModule, weight: torch.Tensor) -> torch.Tensor:
    """The change of one layer (fp32, shaped like `weight`) at strength 1."""
    delta = module.delta()
    if delta.shape != weight.shape:
        if delta.numel() == weight.numel():  # Linear <-> 1x1 conv
            delta = delta.reshape(weight.shape)
        elif (delta.ndim == weight.ndim == 4 and delta.shape[0] == weight.shape[0]
              and delta.shape[2:] == weight.shape[2:] and delta.shape[1] < weight.shape[1]):
            # inpainting: the latent channels come first, then the mask and the masked image
            delta = torch.cat([delta, delta.new_zeros(weight.shape[0], weight.shape[1] - delta.shape[1],
                                                      *weight.shape[2:])], dim=1)
        else:
            raise UserError(f"{name}: the LoRA changes a layer of shape {tuple(delta.shape)} but the base model's is "
                            f"{tuple(weight.shape)}: the LoRA was made for a different model.")
    if module.dora_scale is not None:
        delta = dora_change(delta, weight, module.dora_scale, name)
    return delta


def _single_file_base(path: Path) -> BaseWeights:
    checkpoint = open_checkpoint(path)
    found = checkpoint_family(checkpoint.meta)
    if found is None:
        raise UserError(f"{path} is not a checkpoint of {titles('or', UnetParts)} (no text encoder found), so LoRAs "
                        "cannot be baked into it.")
    if not (found.trained and isinstance(found.parts, UnetParts)):
        title = found.names.title if found.trained else found.title
        raise UserError(f"{path} looks like a {title} model; LoRAs are baked into {titles('or', UnetParts)} "
                        "checkpoints only.")
    arch = found.id
    ldm = find_ldm_config(path)
    configs = part_configs(arch, False, path, ldm, checkpoint.meta)
    conv_in = checkpoint.meta.get(f"{UNET_PREFIX}input_blocks.0.0.weight")
    if conv_in is not None:  # an inpainting UNet takes 9 channels; its LoRAs change the first 4
        configs = replace(configs, unet={**configs.unet, "in_channels": conv_in.shape[1]})
    check_unet_config(checkpoint, configs)  # the LoRA modules are placed by this config's block layout
    return BaseWeights(checkpoint.read(""), dict(checkpoint.metadata), arch, configs.unet, "single-file",
                       ldm.path if ldm else None)


def _folder_dtype(folder: Path) -> torch.dtype:
    for weights in sorted((folder / "unet").glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            return handle.get_tensor(next(iter(handle.keys()))).dtype
    return torch.float32


def _diffusers_base(folder: Path) -> BaseWeights:
    from ..models.load import load_base_model
    from ..models.to_ldm import model_to_ldm

    dtype = _folder_dtype(folder)
    model = load_base_model(folder, dtype=torch.float32)
    whole = model_to_ldm(model.arch, model.unet, model.vae, model.text_encoders, model.noise_scheduler)
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in whole.items()}
    return BaseWeights(state, {}, model.arch, dict(model.unet.config), "diffusers folder -> single-file",
                       shape=ModelShape.of(model))


def load_base_weights(path: Path) -> BaseWeights:
    """A single-file checkpoint or a diffusers folder as original-layout tensors (a Flux file as BFL's)."""
    return flux_base(path) or (_diffusers_base(path) if path.is_dir() else _single_file_base(path))


def check_base_family(base: BaseWeights, loras: list[LoraFile], base_path: Path) -> None:
    """UserError when a LoRA was made for another model family than the base."""
    for lora in loras:
        if lora.arch and lora.arch != base.arch:
            raise UserError(f"{lora.path.name} is a LoRA for {lora.label} but the base {base_path.name} is "
                            f"{family(base.arch).names.title}: bake LoRAs into a checkpoint of the family they were "
                            "trained on.")


def _changes(base: BaseWeights, loras: list[LoraFile], weights: list[float], result: BakeResult
             ) -> dict[str, torch.Tensor]:
    targets = base.module_targets()
    changes: dict[str, torch.Tensor] = {}
    for lora, weight in zip(loras, weights):
        missing = [name for name in lora.modules if name not in targets]
        if len(missing) == len(lora.modules):
            raise UserError(f"None of the {len(missing)} modules of {lora.path.name} is a layer of the base model "
                            f"(e.g. {missing[0]}): it was made for a different model.")
        if missing:
            result.notes.append(f"{lora.path.name}: {len(missing)} modules are not layers of this base and were "
                                f"skipped (e.g. {', '.join(missing[:3])}).")
        for name, module in lora.modules.items():
            target: Target | None = targets.get(name)
            if target is None or weight == 0:
                continue
            original = base.state[target.key].float()
            rows = target.rows or slice(None)
            change = changes.setdefault(target.key, torch.zeros_like(original))
            change[rows] += weight * module_change(name, module, original[rows])
            result.modules += 1
    return changes


def bake_loras(base_path: str | Path, files: list[str | Path], weights: list[float], out: str | Path) -> BakeResult:
    """Bake the LoRAs at their weights into the base and save `out`; see the module docstring."""
    base_path, out = Path(base_path), Path(out)
    if len(weights) != len(files):
        raise UserError(f"Give one weight per LoRA: {len(files)} files but {len(weights)} weights.")
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: the baked checkpoint is saved as .safetensors; give a name ending in it.")
    if out.exists():
        raise UserError(f"{out} already exists and is never overwritten (the base model least of all): choose a new "
                        "name.")
    loras = [read_any_lora(file) for file in files]
    check_same_family(loras)
    base = load_base_weights(base_path)
    check_base_family(base, loras, base_path)
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in base.state.values() if v.is_floating_point()})
    result = BakeResult(out, base.layout, "/".join(dtypes))
    for key, change in _changes(base, loras, weights, result).items():
        base.state[key] = (base.state[key].float() + change).to(base.state[key].dtype)
        result.changed += 1
    baked = [{"file": lora.path.name, "weight": weight, "sshs_model_hash": lora.metadata.get("sshs_model_hash")}
             for lora, weight in zip(loras, weights)]
    metadata = {**base.metadata, "lora_train_baked": json.dumps({"base": base_path.name, "loras": baked})}
    state = {key: value.contiguous() for key, value in base.state.items()}
    written = _write_beside(base, out, result)
    try:
        write_new_file(out, lambda temporary: save_file(state, str(temporary), metadata))
    except BaseException:
        remove(written)
        raise
    return result


def _write_beside(base: BaseWeights, out: Path, result: BakeResult) -> list[Path]:
    """The model config (and text-encoder folders) the output needs beside it, written before it."""
    if base.yaml is not None:
        text = base.yaml.read_text(encoding="utf-8")
        path = write_new_file(out.with_suffix(".yaml"), lambda temporary: temporary.write_text(text, encoding="utf-8"))
        result.notes.append(f"Copied the model config {base.yaml.name} beside it as {path.name}.")
        return [path]
    if base.shape is None:
        return []
    files = beside_files(base.shape, out)
    check_free(files)
    written = write_beside(files, base.shape)
    if written:
        result.notes.append(f"Wrote {', '.join(path.name for path in written)} beside it ({', '.join(files.reasons)}): "
                            "the WebUI and train read the model's shape from them; keep them with it.")
    return written
