"""The shipped configs against real-size checkpoints, without allocating a byte of weights.

Real-size models are built from the shipped configs on the meta device, written out with the
original (ldm / sgm) names and shapes as real single-file checkpoints have them, and the whole
loader runs on that: detection, the choice of config, conversion and the strict key/shape check.
"""

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

from lora_train.models.ldm_yaml import unet_params
from lora_train.fixtures.real_size import real_size_checkpoint
from lora_train.models.shipped import shipped_config
from lora_train.models.single_file import load_checkpoint
from lora_train.models.weights import empty_model

# Parameter counts of the public models (UNet, VAE, text encoders).
PUBLIC_SIZES = {
    "sd1": (859_520_964, 83_653_863, [123_060_480]),
    "sd2": (865_910_724, 83_653_863, [340_387_840]),
    "sdxl": (2_567_463_684, 83_653_863, [123_060_480, 694_659_840]),
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, arch, v_prediction", [
    ("sd1", "sd1", False), ("sd2", "sd2", False), ("sd2-v", "sd2", True), ("sdxl", "sdxl", False)])
def test_loader_accepts_a_real_size_checkpoint_with_the_shipped_configs(name, arch, v_prediction):
    checkpoint = real_size_checkpoint(arch, v_prediction)
    assert checkpoint.meta["model.diffusion_model.input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    base = load_checkpoint(checkpoint, None, "v_prediction" if v_prediction else "epsilon", torch.float16)
    assert (base.arch, base.v_prediction) == (arch, v_prediction)
    assert base.unet.device.type == "meta"  # nothing was allocated
    unet_size, vae_size, encoder_sizes = PUBLIC_SIZES[arch]
    assert (count(base.unet), count(base.vae), [count(e) for e in base.text_encoders]) == \
        (unet_size, vae_size, encoder_sizes)
    assert base.unet.config.sample_size * 8 == {"sd1": 512, "sd2": 512, "sd2-v": 768, "sdxl": 1024}[name]


def test_sd2_checkpoints_hold_the_unused_last_openclip_block():
    tensors = real_size_checkpoint("sd2").meta
    blocks = {key.split(".")[4] for key in tensors if ".resblocks." in key}
    assert len(blocks) == 24  # OpenCLIP ViT-H's 24; diffusers keeps 23 (SD2 reads the penultimate layer)


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_yaml_written_from_shipped_configs_gives_them_back(arch):
    """The ldm yaml the fixtures write, read back by diffusers, is the shipped UNet config."""
    shipped = empty_model(lambda: UNet2DConditionModel.from_config(shipped_config(arch, False, "unet"))).config
    key = "network_config" if arch == "sdxl" else "unet_config"
    yaml_config = {"model": {"params": {key: {"params": unet_params(shipped)},
                                        "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    derived = create_unet_diffusers_config_from_ldm(yaml_config, {})
    for field in ("block_out_channels", "down_block_types", "up_block_types", "layers_per_block",
                  "cross_attention_dim", "attention_head_dim", "use_linear_projection", "addition_embed_type",
                  "projection_class_embeddings_input_dim", "transformer_layers_per_block"):
        assert _as_list(derived[field]) == _as_list(shipped[field]), field


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]
