"""Where each diffusers UNet module lives in the original (ldm / sgm) UNet, and back.

The original UNet numbers its blocks `input_blocks.N`, `middle_block.N`, `output_blocks.N`;
diffusers names them `down_blocks.i.resnets.j`, `mid_block.attentions.0`, ... The mapping
depends only on the number of levels, `layers_per_block`, and which levels have attention.
It serves the single-file loader (checkpoint keys) and the SDXL LoRA key names, which use the
original block names (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`).
"""

from __future__ import annotations

from typing import Any, Mapping

# Inside a ResNet block the two layouts name the layers differently; everything inside a
# transformer block has the same names in both.
RESNET_RENAMES = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
}
TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}


def block_prefixes(config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers block prefix -> original block prefix, for a UNet2DConditionModel config."""
    per_level = config["layers_per_block"]
    down_types, up_types = config["down_block_types"], config["up_block_types"]
    levels = len(down_types)
    mapping: dict[str, str] = {}
    for i, kind in enumerate(down_types):
        for j in range(per_level):
            index = 1 + i * (per_level + 1) + j
            mapping[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{index}.0"
            if "CrossAttn" in kind:
                mapping[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{index}.1"
        if i < levels - 1:
            mapping[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (per_level + 1)}.0.op"
    mapping["mid_block.resnets.0"] = "middle_block.0"
    mapping["mid_block.attentions.0"] = "middle_block.1"
    mapping["mid_block.resnets.1"] = "middle_block.2"
    for i, kind in enumerate(up_types):
        has_attention = "CrossAttn" in kind
        for j in range(per_level + 1):
            index = i * (per_level + 1) + j
            mapping[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{index}.0"
            if has_attention:
                mapping[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{index}.1"
        if i < levels - 1:
            last = i * (per_level + 1) + per_level
            mapping[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{last}.{2 if has_attention else 1}.conv"
    mapping.update(TOP_LEVEL)
    return mapping


def to_original(path: str, prefixes: Mapping[str, str]) -> str:
    """A diffusers module or parameter path -> the original path (`down_blocks.1.resnets.0.conv1`
    -> `input_blocks.4.0.in_layers.2`). Raises KeyError for a path outside the mapping."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if path == prefix or path.startswith(prefix + "."):
            rest = path[len(prefix):].lstrip(".")
            if ".resnets." in prefix + "." or prefix.startswith("mid_block.resnets"):
                head, _, tail = rest.partition(".")
                rest = RESNET_RENAMES.get(head, head) + ("." + tail if tail else "")
            return prefixes[prefix] + ("." + rest if rest else "")
    raise KeyError(path)


def to_diffusers(path: str, prefixes: Mapping[str, str]) -> str:
    """The inverse of `to_original`."""
    inverse = {v: k for k, v in prefixes.items()}
    resnet_inverse = {v: k for k, v in RESNET_RENAMES.items()}
    for prefix in sorted(inverse, key=len, reverse=True):
        if path == prefix or path.startswith(prefix + "."):
            target = inverse[prefix]
            rest = path[len(prefix):].lstrip(".")
            if ".resnets." in target:
                for original, diffusers_name in sorted(resnet_inverse.items(), key=lambda kv: -len(kv[0])):
                    if rest == original or rest.startswith(original + "."):
                        rest = diffusers_name + rest[len(original):]
                        break
            return target + ("." + rest if rest else "")
    raise KeyError(path)
