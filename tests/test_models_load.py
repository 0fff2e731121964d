"""load_base_model on the tiny fixture files: every form (single file + yaml, .ckpt, diffusers folder)
loads through the real loader and computes what the in-memory model it was written from computes."""

import functools
import shutil

import pytest
import torch

from lora_train.fixtures.checkpoints import tiny_model
from lora_train.models.load import load_base_model
from lora_train.models.pipeline import make_pipeline


@functools.cache
def reference(arch: str):
    return tiny_model(arch, seed=0)


@torch.no_grad()
def outputs(model) -> dict[str, torch.Tensor]:
    """UNet, VAE and every text-encoder layer on fixed inputs (works on a BaseModel and a TinyModel)."""
    generator = torch.Generator().manual_seed(0)
    config = model.unet.config
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, config.cross_attention_dim, generator=generator)
    extra = {}
    if config.addition_embed_type == "text_time":
        pooled = torch.randn(1, model.text_encoders[-1].config.projection_dim, generator=generator)
        extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    result = {"unet": model.unet(latents, torch.tensor([500]), context, **extra).sample}
    image = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    result["vae"] = model.vae.decode(model.vae.encode(image).latent_dist.mean).sample
    for index, (encoder, tokenizer) in enumerate(zip(model.text_encoders, model.tokenizers)):
        ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        result[f"text_encoder_{index}"] = torch.stack(encoder(ids, output_hidden_states=True).hidden_states)
    return result


def assert_same_outputs(base, arch: str) -> None:
    expected = outputs(reference(arch))
    for name, value in outputs(base).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-5, msg=f"{name} differs")


NAMES = {  # arch -> (arch, v_prediction, base_model_version, modelspec architecture, sd version)
    "sd1": ("sd1", False, "sd_v1", "stable-diffusion-v1/lora", "SD1"),
    "sd2": ("sd2", False, "sd_v2", "stable-diffusion-v2-512/lora", "SD2"),
    "sd2-v": ("sd2", True, "sd_v2_v", "stable-diffusion-v2-768-v/lora", "SD2"),
    "sdxl": ("sdxl", False, "sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", "SDXL"),
}


@pytest.mark.parametrize("arch", list(NAMES))
def test_single_file_loads_as_the_model_it_was_written_from(tiny_checkpoints, arch):
    files = tiny_checkpoints(arch)
    base = load_base_model(files.single_file)
    assert (base.arch, base.v_prediction, base.base_model_version, base.modelspec_architecture,
            base.sd_version) == NAMES[arch]
    assert base.name == f"tiny-{arch}" and base.path == files.single_file
    assert base.noise_scheduler.config.prediction_type == ("v_prediction" if base.v_prediction else "epsilon")
    assert not any(p.requires_grad for p in base.unet.parameters())
    assert_same_outputs(base, arch)


def test_ckpt_loads_like_the_safetensors(tiny_sd1_ckpt):
    base = load_base_model(tiny_sd1_ckpt)
    assert base.arch == "sd1" and base.name == "tiny-sd1"
    assert_same_outputs(base, "sd1")


@pytest.mark.parametrize("arch", ["sd1", "sd2-v", "sdxl"])
def test_diffusers_folder_loads_as_the_model_it_was_written_from(tiny_checkpoints, arch):
    base = load_base_model(tiny_checkpoints(arch).diffusers)
    assert (base.arch, base.v_prediction, base.base_model_version) == NAMES[arch][:3]
    assert_same_outputs(base, arch)


def test_diffusers_folder_with_only_fp16_variant_weights(tiny_checkpoints, tmp_path):
    """What `from_pretrained(..., variant="fp16")` downloads: `<weights>.fp16.safetensors` only."""
    folder = tmp_path / "variant"
    shutil.copytree(tiny_checkpoints("sd1").diffusers, folder)
    for weights in folder.glob("*/*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    assert_same_outputs(load_base_model(folder), "sd1")


def test_dtype_and_prediction_type_override(tiny_sd1_file):
    base = load_base_model(tiny_sd1_file, prediction_type="v_prediction", dtype=torch.bfloat16)
    assert base.v_prediction and base.base_model_version == "sd_v1"
    assert base.noise_scheduler.config.prediction_type == "v_prediction"
    for module in (base.unet, base.vae, *base.text_encoders):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_pipeline_shares_the_loaded_parts_and_samples(tiny_checkpoints, arch):
    base = load_base_model(tiny_checkpoints(arch).single_file)
    pipeline = make_pipeline(base)
    assert pipeline.unet is base.unet and pipeline.vae is base.vae and pipeline.text_encoder is base.text_encoders[0]
    image = pipeline("a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3)
