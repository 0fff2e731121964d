"""kohya names of the full real-size SD 1.5 and SDXL base module sets (models built on the meta device).

The expected lists are written out from the block structure of the original models, the way
kohya's sd-scripts names them, independently of the code under test.
"""

from __future__ import annotations

import pytest
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from lora_train.adapters.targets import UNET_KINDS, select_targets
from lora_train.families import family
from lora_train.kohya.names import KohyaNaming, component_of
from lora_train.models.shipped import shipped_config

TRANSFORMER_LAYERS = [f"attn{i}_{name}" for i in (1, 2) for name in ("to_q", "to_k", "to_v", "to_out_0")] + [
    "ff_net_0_proj", "ff_net_2"]
TE_LAYERS = ["self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj", "mlp_fc1", "mlp_fc2"]


def _meta_model(arch: str):
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(shipped_config(arch, False, "unet"))
        encoders = [CLIPTextModel(CLIPTextConfig(**shipped_config(arch, False, "text_encoder")))]
        if arch == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**shipped_config(arch, False,
                                                                                        "text_encoder_2"))))
    return unet, encoders


@pytest.fixture(scope="module")
def sd15():
    return _meta_model("sd1")


@pytest.fixture(scope="module")
def sdxl():
    return _meta_model("sdxl")


def kohya_names(arch, unet, encoders, network_type="lora"):
    targets = select_targets(unet, encoders, family(arch).targets, train_unet=True, train_text_encoder=True,
                             unet_targets=UNET_KINDS, text_encoder_targets=["attention", "mlp"],
                             network_type=network_type)
    naming = KohyaNaming.for_model(arch, unet, encoders)
    unet_names = [naming.unet_name(path) for path in targets.unet]
    te_names = [naming.text_encoder_name(i, path) for i, names in enumerate(targets.text_encoders) for path in names]
    return unet_names, te_names


def transformer_names(blocks: dict[str, int]) -> set[str]:
    """kohya names of every Linear / Conv2d in the given Transformer2D blocks (block -> depth)."""
    return {f"lora_unet_{block}_{layer}" for block, depth in blocks.items()
            for layer in ["proj_in", "proj_out"] + [f"transformer_blocks_{j}_{name}" for j in range(depth)
                                                    for name in TRANSFORMER_LAYERS]}


def te_names(prefix: str, layers: int) -> set[str]:
    return {f"{prefix}_text_model_encoder_layers_{i}_{name}" for i in range(layers) for name in TE_LAYERS}


def test_sd15_names_are_kohyas(sd15):
    unet_names, text_names = kohya_names("sd1", *sd15)
    blocks = {f"down_blocks_{i}_attentions_{j}": 1 for i in range(3) for j in range(2)}
    blocks.update({f"up_blocks_{i}_attentions_{j}": 1 for i in (1, 2, 3) for j in range(3)})
    blocks["mid_block_attentions_0"] = 1
    assert len(unet_names) == len(set(unet_names)) == 192 and set(unet_names) == transformer_names(blocks)
    assert len(text_names) == 72 and set(text_names) == te_names("lora_te", 12)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in unet_names
    assert "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2" in unet_names
    assert "lora_te_text_model_encoder_layers_11_self_attn_out_proj" in text_names


def test_sdxl_names_use_the_original_blocks(sdxl):
    unet_names, text_names = kohya_names("sdxl", *sdxl)
    blocks = {"input_blocks_4_1": 2, "input_blocks_5_1": 2, "input_blocks_7_1": 10, "input_blocks_8_1": 10,
              "middle_block_1": 10, "output_blocks_0_1": 10, "output_blocks_1_1": 10, "output_blocks_2_1": 10,
              "output_blocks_3_1": 2, "output_blocks_4_1": 2, "output_blocks_5_1": 2}
    assert len(unet_names) == len(set(unet_names)) == 722 and set(unet_names) == transformer_names(blocks)
    assert len(text_names) == 264
    assert set(text_names) == te_names("lora_te1", 12) | te_names("lora_te2", 32)
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in unet_names
    assert "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_k" in unet_names
    assert "lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_0_proj" in unet_names
    assert "lora_te2_text_model_encoder_layers_31_mlp_fc2" in text_names
    assert {component_of(name) for name in unet_names + text_names} == {"unet", "te1", "te2"}


def test_locon_adds_kohyas_resnet_and_resampler_layers(sd15, sdxl):
    sd15_unet, _ = kohya_names("sd1", *sd15, network_type="locon")
    # 22 ResNet blocks x (conv1, conv2, time_emb_proj) + 14 shortcuts + 3 downsamplers + 3 upsamplers
    assert len(sd15_unet) == 192 + 86
    assert {"lora_unet_down_blocks_0_resnets_0_conv1", "lora_unet_down_blocks_1_resnets_0_conv_shortcut",
            "lora_unet_mid_block_resnets_1_time_emb_proj", "lora_unet_down_blocks_2_downsamplers_0_conv",
            "lora_unet_up_blocks_0_upsamplers_0_conv"} <= set(sd15_unet)
    sdxl_unet, _ = kohya_names("sdxl", *sdxl, network_type="locon")
    # 17 ResNet blocks x 3 + 11 shortcuts + 2 downsamplers + 2 upsamplers
    assert len(sdxl_unet) == 722 + 66
    assert {"lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_input_blocks_1_0_emb_layers_1",
            "lora_unet_input_blocks_1_0_out_layers_3", "lora_unet_input_blocks_4_0_skip_connection",
            "lora_unet_input_blocks_3_0_op", "lora_unet_middle_block_2_in_layers_2",
            "lora_unet_output_blocks_2_2_conv", "lora_unet_output_blocks_5_2_conv"} <= set(sdxl_unet)
