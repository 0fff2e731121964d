"""Flux's text conditioning: T5's hidden states (the tokens the transformer attends to) and, for Flux.1,
CLIP-L's pooled output (its modulation input); Chroma has T5 only.

Captions are padded to `t5xxl_max_token_length` (kohya's default: 512, 256 for schnell). With
`apply_t5_attn_mask` the padding is masked in T5 and in the transformer's attention (kohya's option for
Flux); Chroma always masks, as its pipeline does: T5 sees the tokenizer's mask, the transformer attends to
the text up to and including the first padding token (diffusers' ChromaPipeline's mask, built the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import UserError
from ..families import Family
from ..families.interface import DitParts
from ..train.conditioning import tokenize


@dataclass(frozen=True)
class TextSettings:
    max_length: int  # T5 tokens per caption
    t5_mask: bool  # mask T5's padding (in T5 and in the transformer's attention)


def text_settings(family: Family, max_length: int | None, apply_t5_attn_mask: bool | None) -> TextSettings:
    """The settings for `family` from the config keys `t5xxl_max_token_length` and `apply_t5_attn_mask` (empty: the
    family's default)."""
    parts = family.parts
    if parts.masked_text and apply_t5_attn_mask is False:
        raise UserError(f"apply_t5_attn_mask: false does not work for {family.names.title}, which is trained and used "
                        "with T5's padding masked: leave apply_t5_attn_mask empty or set it to true.")
    mask = parts.masked_text if apply_t5_attn_mask is None else apply_t5_attn_mask
    return TextSettings(max_length or parts.t5_max_length, mask)


def t5_outputs(t5, tokenizer, captions: list[str], settings: TextSettings, device: torch.device
               ) -> dict[str, torch.Tensor]:
    """{"t5": (B, L, width) hidden states, "t5_mask": (B, L) 1 for tokens, 0 for padding}."""
    tokens = tokenizer(captions, padding="max_length", max_length=settings.max_length, truncation=True,
                       return_tensors="pt")
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = t5(ids, attention_mask=mask if settings.t5_mask else None).last_hidden_state
    return {"t5": hidden, "t5_mask": mask}


def clip_pooled(clip, tokenizer, captions: list[str], device: torch.device) -> torch.Tensor:
    """CLIP-L's pooled output (B, width), the transformer's `pooled_projections`."""
    return clip(tokenize([tokenizer], captions)[0].to(device)).pooler_output


def encode_captions(base, captions: list[str], settings: TextSettings, device: torch.device, pooled: bool
                    ) -> dict[str, torch.Tensor]:
    """The family's conditioning of `captions` (`Family.conditioning`): T5's outputs and, with `pooled`, CLIP-L's
    pooled output ("pooled")."""
    out = t5_outputs(base.t5, base.t5_tokenizer, captions, settings, device)
    if pooled:
        out["pooled"] = clip_pooled(base.clip, base.clip_tokenizer, captions, device)
    return out


def chroma_text_mask(t5_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Chroma's text mask, as ChromaPipeline builds it: the tokens up to and including the first padding token."""
    positions = torch.arange(t5_mask.shape[1], device=t5_mask.device)[None]
    return (positions <= t5_mask.sum(dim=1, keepdim=True)).to(dtype)


def attention_masks(parts: DitParts, settings: TextSettings, t5_mask: torch.Tensor, image_tokens: int,
                    dtype: torch.dtype) -> dict:
    """The transformer's keyword arguments that mask T5's padding ({} when nothing is masked)."""
    if not settings.t5_mask:
        return {}
    if parts.masked_text:
        image = torch.ones(t5_mask.shape[0], image_tokens, device=t5_mask.device, dtype=dtype)
        return {"attention_mask": torch.cat([chroma_text_mask(t5_mask, dtype), image], dim=1)}
    image = torch.ones(t5_mask.shape[0], image_tokens, device=t5_mask.device, dtype=torch.bool)
    keys = torch.cat([t5_mask.bool(), image], dim=1)[:, None, None, :]  # every query sees the unpadded keys
    return {"joint_attention_kwargs": {"attention_mask": keys}}
