"""The configs of Flux's separate parts, read from their tensor shapes: the autoencoder (BFL's `ae.safetensors`,
the ldm layout), CLIP-L (`text_model.*`) and T5 (`shared.weight`, `encoder.block.N.*`).

What shapes cannot tell is Flux's: the autoencoder's latent scale and shift (0.3611, 0.1159) and GroupNorm(32),
CLIP's 64-wide heads and quick-GELU (CLIP-L), T5 v1.1's gated GELU (when `wi_0` is there) and its 128-token
relative-attention distance. Every config comes with the tensor names it was read from, so a file that lacks
one gets a message naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import UserError

Shapes = Mapping[str, Sequence[int]]
FLUX_LATENT_SCALE, FLUX_LATENT_SHIFT = 0.3611, 0.1159
CLIP_HEAD_WIDTH = 64


def _count(shapes: Shapes, pattern: str) -> int:
    return len({m.group(1) for key in shapes if (m := re.match(pattern, key))})


def _shape(shapes: Shapes, key: str, what: str) -> Sequence[int]:
    if key not in shapes:
        raise UserError(f"{what} has no {key}: it is not that part, or the file is incomplete.")
    return shapes[key]


def ae_config(shapes: Shapes, prefix: str, what: str) -> dict[str, Any]:
    """An AutoencoderKL config for the autoencoder under `prefix` (ldm names: `encoder.down.0.block.0...`)."""
    levels = _count(shapes, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    if not levels:
        raise UserError(f"{what} has no autoencoder weights ({prefix}encoder.down.*): it is not Flux's ae.safetensors.")
    channels = [_shape(shapes, f"{prefix}encoder.down.{i}.block.0.conv1.weight", what)[0] for i in range(levels)]
    return dict(in_channels=_shape(shapes, f"{prefix}encoder.conv_in.weight", what)[1],
                out_channels=_shape(shapes, f"{prefix}decoder.conv_out.weight", what)[0],
                latent_channels=_shape(shapes, f"{prefix}encoder.conv_out.weight", what)[0] // 2,
                block_out_channels=channels, down_block_types=["DownEncoderBlock2D"] * levels,
                up_block_types=["UpDecoderBlock2D"] * levels,
                layers_per_block=_count(shapes, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."),
                norm_num_groups=32, scaling_factor=FLUX_LATENT_SCALE, shift_factor=FLUX_LATENT_SHIFT,
                use_quant_conv=f"{prefix}quant_conv.weight" in shapes,
                use_post_quant_conv=f"{prefix}post_quant_conv.weight" in shapes,
                mid_block_add_attention=f"{prefix}encoder.mid.attn_1.q.weight" in shapes, force_upcast=True)


def clip_config(shapes: Shapes, prefix: str, what: str) -> dict[str, Any]:
    """A CLIPTextConfig (as keyword arguments) for the CLIP-L under `prefix` (`text_model.*` below it)."""
    root = f"{prefix}text_model."
    vocab, width = _shape(shapes, f"{root}embeddings.token_embedding.weight", what)
    if width % CLIP_HEAD_WIDTH:
        raise UserError(f"{what} is {width} wide, which is not a whole number of CLIP's 64-wide heads.")
    return dict(vocab_size=vocab, hidden_size=width, num_attention_heads=width // CLIP_HEAD_WIDTH,
                intermediate_size=_shape(shapes, f"{root}encoder.layers.0.mlp.fc1.weight", what)[0],
                num_hidden_layers=_count(shapes, re.escape(root) + r"encoder\.layers\.(\d+)\."),
                max_position_embeddings=_shape(shapes, f"{root}embeddings.position_embedding.weight", what)[0],
                hidden_act="quick_gelu", projection_dim=width, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
                pad_token_id=vocab - 1)


def t5_config(shapes: Shapes, prefix: str, what: str) -> dict[str, Any]:
    """A T5Config (as keyword arguments) for the T5 encoder under `prefix` (`shared.weight`, `encoder.*`)."""
    block = f"{prefix}encoder.block.0.layer."
    vocab, width = _shape(shapes, f"{prefix}shared.weight", what)
    buckets, heads = _shape(shapes, f"{block}0.SelfAttention.relative_attention_bias.weight", what)
    gated = f"{block}1.DenseReluDense.wi_0.weight" in shapes
    feed_forward = _shape(shapes, f"{block}1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight", what)[0]
    return dict(vocab_size=vocab, d_model=width, num_heads=heads, relative_attention_num_buckets=buckets,
                d_kv=_shape(shapes, f"{block}0.SelfAttention.q.weight", what)[0] // heads, d_ff=feed_forward,
                num_layers=_count(shapes, re.escape(prefix) + r"encoder\.block\.(\d+)\."),
                feed_forward_proj="gated-gelu" if gated else "relu", relative_attention_max_distance=128,
                dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
