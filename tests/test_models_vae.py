"""A separate VAE replaces the checkpoint's own, in every layout VAE files come in."""

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from lora_train.core.errors import UserError
from lora_train.fixtures.checkpoints import tiny_model
from lora_train.models.load import load_base_model
from lora_train.models.to_ldm import vae_to_ldm


@pytest.fixture(scope="module")
def other_vae():
    return tiny_model("sd1", seed=5).vae


@pytest.fixture(scope="module")
def own_decoded():
    return decoded(tiny_model("sd1").vae)


@torch.no_grad()
def decoded(vae):
    return vae.decode(torch.linspace(-1, 1, 4 * 8 * 8).reshape(1, 4, 8, 8)).sample


def write_vae(vae, folder, layout):
    if layout == "diffusers-folder":
        vae.save_pretrained(folder / "vae")
        return folder / "vae"
    if layout == "diffusers-file":
        path = folder / "vae.safetensors"
        save_file(vae.state_dict(), str(path))
    elif layout == "ldm-file":  # as vae-ft-mse-840000-ema-pruned.safetensors: bare ldm names
        path = folder / "vae.safetensors"
        save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), vae.config, "").items()}, str(path))
    else:  # a pickle with the names a full checkpoint gives them
        path = folder / "vae.pt"
        torch.save({"state_dict": vae_to_ldm(vae.state_dict(), vae.config, "first_stage_model.")}, path)
    return path


@pytest.mark.parametrize("layout", ["ldm-file", "ldm-prefixed-pickle", "diffusers-file", "diffusers-folder"])
def test_separate_vae_replaces_the_checkpoints_own(tmp_path, tiny_sd1_file, other_vae, own_decoded, layout):
    base = load_base_model(tiny_sd1_file, vae_path=write_vae(other_vae, tmp_path, layout))
    torch.testing.assert_close(decoded(base.vae), decoded(other_vae), rtol=0, atol=1e-6)
    assert not torch.allclose(decoded(base.vae), own_decoded)


def test_separate_vae_with_a_diffusers_folder(tmp_path, tiny_sd1_diffusers, other_vae):
    base = load_base_model(tiny_sd1_diffusers, vae_path=write_vae(other_vae, tmp_path, "ldm-file"))
    torch.testing.assert_close(decoded(base.vae), decoded(other_vae), rtol=0, atol=1e-6)


def test_vae_of_another_shape_is_refused(tmp_path, tiny_sd1_file):
    wider = AutoencoderKL(block_out_channels=(64, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                          up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=32)
    with pytest.raises(UserError, match=r"VAE file .*vae.safetensors does not match .* Use a VAE made for"):
        load_base_model(tiny_sd1_file, vae_path=write_vae(wider, tmp_path, "ldm-file"))


def test_files_that_are_not_vaes_are_refused(tmp_path, tiny_sd1_file):
    with pytest.raises(UserError, match="is a full checkpoint, not a VAE"):
        load_base_model(tiny_sd1_file, vae_path=tiny_sd1_file)
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(UserError, match="lora.safetensors is not a VAE"):
        load_base_model(tiny_sd1_file, vae_path=lora)
