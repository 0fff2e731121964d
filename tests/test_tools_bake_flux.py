"""`bake` into a Flux.1 / Chroma checkpoint: BFL's single file in (bare, under model.diffusion_model., all in one,
fp8), the same layout and dtypes out, each weight the base + weight x the LoRA's change as the LoRA layers
compute it (independent of the file's fused form), CLIP-L's LoRA into an all-in-one file, the base unchanged."""

from __future__ import annotations

import hashlib

import pytest
import torch
from flux_tools_support import expected_bfl, save_flux_lora
from safetensors.torch import load_file, save_file

from lora_train.core.errors import UserError
from lora_train.kohya.write import save_lora
from lora_train.tools.bake import bake_loras
from lora_train.tools.bake_flux import BFL_LAYOUT

CLIP_MODULE = "lora_te1_text_model_encoder_layers_1_self_attn_q_proj"
CLIP_KEY = "text_encoders.clip_l.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_clip_module(path, out, rank=2):
    """The LoRA file with a random CLIP-L module added (CLIP-L is 128 wide)."""
    tensors = load_file(path)
    generator = torch.Generator().manual_seed(5)
    tensors |= {f"{CLIP_MODULE}.lora_down.weight": torch.randn(rank, 128, generator=generator) * 0.1,
                f"{CLIP_MODULE}.lora_up.weight": torch.randn(128, rank, generator=generator) * 0.1,
                f"{CLIP_MODULE}.alpha": torch.tensor(1.0)}
    return save_lora(out, tensors, {"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-dev/lora"})


@pytest.mark.parametrize("form, prefix", [("transformer", ""), ("prefixed", "model.diffusion_model."),
                                          ("all_in_one", "model.diffusion_model.")])
def test_baked_flux_file_is_the_base_plus_the_loras_in_the_same_layout(tiny_flux_files, tmp_path, form, prefix):
    base = getattr(tiny_flux_files("flux-dev"), form)
    before = _digest(base)
    first, first_model = save_flux_lora(tmp_path, "a", "flux-dev", 4, 2.0, seed=1)
    second, second_model = save_flux_lora(tmp_path, "b", "flux-dev", 2, 3.0, seed=2, kinds=("mlp",))
    if form == "all_in_one":
        first = _with_clip_module(first, tmp_path / "a-clip.safetensors")
    result = bake_loras(base, [first, second], [0.8, -0.5], tmp_path / "baked.safetensors")
    assert result.layout == BFL_LAYOUT and result.dtype == "float32"
    original, baked = load_file(base), load_file(result.path)
    assert baked.keys() == original.keys() and _digest(base) == before
    a, b = expected_bfl("flux-dev", first_model, 0.8), expected_bfl("flux-dev", second_model, -0.5)
    for key, value in a.items():
        expected = a[key] + b[key] - original[prefix + key]
        torch.testing.assert_close(baked[prefix + key], expected.detach(), rtol=0, atol=2e-6, msg=key)
    changed = {key for key in original if not torch.equal(original[key], baked[key])}
    assert {key.removeprefix(prefix) for key in changed if key.startswith(prefix)} <= a.keys()
    if form == "all_in_one":
        lora = load_file(first)
        down, up = lora[f"{CLIP_MODULE}.lora_down.weight"], lora[f"{CLIP_MODULE}.lora_up.weight"]
        torch.testing.assert_close(baked[CLIP_KEY], original[CLIP_KEY] + 0.8 * 0.5 * up @ down, rtol=0, atol=1e-6)
        assert changed - {CLIP_KEY} == {key for key in changed if key.startswith(prefix)}  # AE and T5 untouched
    with pytest.raises(UserError, match="already exists and is never overwritten"):
        bake_loras(base, [first], [1.0], result.path)


def test_an_fp8_base_stays_fp8(tiny_flux_files, tmp_path):
    base = tmp_path / "flux1-dev-fp8.safetensors"
    original = {key: value.to(torch.float8_e4m3fn) if value.ndim == 2 else value.to(torch.bfloat16)
                for key, value in load_file(tiny_flux_files("chroma").transformer).items()}
    save_file(original, str(base))
    lora, model = save_flux_lora(tmp_path, "a", "chroma", 3, 3.0)
    result = bake_loras(base, [lora], [1.0], tmp_path / "baked.safetensors")
    baked = load_file(result.path)
    assert result.dtype == "bfloat16/float8_e4m3fn"
    assert {key: value.dtype for key, value in baked.items()} == {key: value.dtype for key, value in original.items()}
    full = expected_bfl("chroma", model)
    fp32_base = load_file(tiny_flux_files("chroma").transformer)
    for key in ("double_blocks.0.img_attn.qkv.weight", "single_blocks.2.linear1.weight"):
        change = full[key].detach() - fp32_base[key]
        assert torch.equal(baked[key], (original[key].float() + change).to(torch.float8_e4m3fn)), key


def test_bake_refuses_a_flux_folder_a_scaled_fp8_file_and_another_family(tiny_flux_files, tmp_path):
    lora, _ = save_flux_lora(tmp_path, "a", "chroma", 2, 2.0)
    with pytest.raises(UserError, match="diffusers folder: bake writes Flux LoRAs into BFL's single file"):
        bake_loras(tiny_flux_files("chroma").diffusers, [lora], [1.0], tmp_path / "out.safetensors")
    with pytest.raises(UserError, match="a.safetensors is a LoRA for Chroma but the base tiny-flux-dev.safetensors "
                                        "is Flux.1-dev"):
        bake_loras(tiny_flux_files("flux-dev").transformer, [lora], [1.0], tmp_path / "out.safetensors")
    scaled = tmp_path / "scaled.safetensors"
    save_file({**load_file(tiny_flux_files("chroma").transformer), "scaled_fp8": torch.zeros(1)}, str(scaled))
    with pytest.raises(UserError, match="'scaled' fp8 Chroma file"):
        bake_loras(scaled, [lora], [1.0], tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
