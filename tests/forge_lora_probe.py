"""Run by tests/test_flux_hosts.py in a subprocess (no tests here): Forge's own LoRA loading on a tiny Flux built in
Forge's class, from the checkout named on the command line.

    python forge_lora_probe.py FORGE_DIR MODEL_ARGS_JSON BASE LORA OUT

It builds `backend.nn.flux.IntegratedFluxTransformer2DModel(**MODEL_ARGS)`, loads BASE (BFL layout) into it
strictly, wraps it as Forge's loader does (`UnetPatcher.from_model`, with a config naming FLUX.1-dev), then does what `extensions-builtin/sd_forge_lora/networks.py: load_lora_for_models` does (that file
imports the WebUI's `modules`, so its four lines are repeated here): `model_lora_keys_unet`, `load_lora`,
`add_patches`, and Forge's `refresh_loras` patches the weights. It writes the patched weights to OUT and prints
one JSON line: the LoRA's keys Forge left unmatched and the number of weights it patched. Two stand-ins: the
config object (Forge's comes from huggingface_guess; only `huggingface_repo` is read) and an empty sampling
predictor (Forge's `PredictionFlux` needs the diffusers Forge pins, and LoRA loading never reads it). `--always-cpu` is
passed to Forge's argument parser so that its memory manager does not look for CUDA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace


def main(forge: str, model_args: str, base: str, lora: str, out: str) -> None:
    sys.path[:0] = [forge, str(Path(forge) / "packages_3rdparty")]
    sys.argv = [sys.argv[0], "--always-cpu"]
    import torch
    from safetensors.torch import load_file, save_file

    from backend.nn.flux import IntegratedFluxTransformer2DModel
    from backend.patcher.lora import load_lora, model_lora_keys_unet
    from backend.patcher.unet import UnetPatcher

    model = IntegratedFluxTransformer2DModel(**json.loads(model_args))
    model.load_state_dict(load_file(base), strict=True)
    model.config = {"depth": len(model.double_blocks), "depth_single_blocks": len(model.single_blocks),
                    "hidden_size": model.hidden_size}
    cpu = torch.device("cpu")
    model.storage_dtype = model.computation_dtype = torch.float32
    model.load_device = model.offload_device = model.initial_device = cpu
    config = SimpleNamespace(huggingface_repo="black-forest-labs/FLUX.1-dev")
    unet = UnetPatcher.from_model(model, diffusers_scheduler=None, config=config, k_predictor=SimpleNamespace())
    tensors = load_file(lora)
    unet_keys = model_lora_keys_unet(unet.model)
    patches, unmatched = load_lora(tensors, unet_keys)
    loaded = unet.add_patches(filename=lora, patches=patches, strength_patch=1.0)
    unet.refresh_loras()
    state = {key: value.detach().contiguous() for key, value in unet.model.diffusion_model.state_dict().items()}
    save_file(state, out)
    print(json.dumps({"unmatched": sorted(unmatched), "patched": len(loaded), "patches": len(patches)}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
