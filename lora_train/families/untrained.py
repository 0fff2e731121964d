"""Model families lora_train recognises in a single-file checkpoint only to refuse them by name, each by
tensor names only its files have (the markers diffusers' single-file loader uses, under every prefix it
knows). Checked before the trained families: Playground v2.5 has SDXL's text encoders, FLUX.2 Flux.1's block
names."""

from __future__ import annotations

from .interface import KeySignature, NotTrained


def _row(id: str, title: str, *names: str) -> NotTrained:
    return NotTrained(id, title, KeySignature(names=names))


FAMILIES = (
    _row("sd3", "Stable Diffusion 3 / 3.5", "joint_blocks.0.context_block.adaLN_modulation.1.bias",
         "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
         "joint_blocks.37.x_block.mlp.fc1.weight", "model.diffusion_model.joint_blocks.37.x_block.mlp.fc1.weight"),
    _row("flux2", "FLUX.2", "model.diffusion_model.single_stream_modulation.lin.weight",
         "single_stream_modulation.lin.weight"),
    _row("stable-cascade", "Stable Cascade", "down_blocks.1.0.channelwise.0.weight", "clip_txt_mapper.weight"),
    _row("auraflow", "AuraFlow", "double_layers.0.attn.w2q.weight"),
    _row("hunyuan-video", "HunyuanVideo", "txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias"),
    _row("ltx-video", "LTX-Video", "model.diffusion_model.patchify_proj.weight",
         "model.diffusion_model.transformer_blocks.27.scale_shift_table", "patchify_proj.weight",
         "transformer_blocks.27.scale_shift_table"),
    _row("mochi", "Mochi", "model.diffusion_model.blocks.0.attn.qkv_x.weight", "blocks.0.attn.qkv_x.weight"),
    _row("lumina2", "Lumina 2", "model.diffusion_model.cap_embedder.0.weight", "cap_embedder.0.weight"),
    _row("sana", "PixArt / Sana", "blocks.0.cross_attn.q_linear.weight"),
    _row("wan", "Wan", "model.diffusion_model.head.modulation", "head.modulation"),
    _row("hidream", "HiDream", "double_stream_blocks.0.block.adaLN_modulation.1.bias"),
    _row("z-image", "Z-Image", "model.diffusion_model.layers.0.adaLN_modulation.0.weight",
         "layers.0.adaLN_modulation.0.weight"),
    _row("qwen-image", "Qwen-Image", "transformer_blocks.0.img_mod.1.weight",
         "model.diffusion_model.transformer_blocks.0.img_mod.1.weight"),
    _row("playground-v2.5", "Playground v2.5", "edm_mean"),
    _row("hunyuan-dit", "Hunyuan-DiT", "mlp_t5.0.weight", "model.mlp_t5.0.weight"),
)
