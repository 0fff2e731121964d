"""Text conditioning for the UNet families: tokenize captions, run the text encoder(s), and what else the UNet
takes. Each family names its conditioning (`Family.conditioning`):

- `ONE_CLIP` (SD1 / SD2): the last hidden state, or the `clip_skip`-th last, then the final layer norm, as
  kohya and the WebUI do;
- `TWO_CLIPS` (SDXL): the penultimate hidden states of both encoders side by side, the second encoder's
  pooled, projected output, and the size / crop conditioning (`time_ids`) as added UNet inputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import torch

from ..families import family


@dataclass
class TextConditioning:
    hidden_states: torch.Tensor
    pooled: torch.Tensor | None = None  # SDXL's pooled, projected embedding


def tokenize(tokenizers: list, captions: list[str]) -> list[torch.Tensor]:
    """Token ids per tokenizer, padded/truncated to its 77-token window."""
    return [tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                return_tensors="pt").input_ids for tok in tokenizers]


class TokenCache:
    """Token ids per caption, tokenized once: captions come back every epoch, and a tokenizer call costs
    more than the text encoder's forward on a small model (0.7 of 2.6 ms a step, tiny SD1 on a CPU).
    Captions that change every time (shuffled tags, dropout) fill at most `size` entries, oldest out."""

    def __init__(self, tokenizers: list, size: int = 4096):
        self.ids_of = functools.lru_cache(maxsize=size)(lambda caption: tokenize(tokenizers, [caption]))

    def __call__(self, captions: list[str]) -> list[torch.Tensor]:
        """As `tokenize(tokenizers, captions)`."""
        return [torch.cat(rows) for rows in zip(*(self.ids_of(caption) for caption in captions))]


class Conditioning(Protocol):
    """What a family's text conditioning does."""

    def encode(self, text_encoders: list, input_ids: list[torch.Tensor], clip_skip: int = 1) -> TextConditioning:
        """Run the text encoder(s) on token ids already on their device."""

    def unet_inputs(self, text: TextConditioning, batch: dict, device: torch.device) -> dict:
        """The UNet's keyword inputs besides the hidden states, for a training batch."""


class OneClip:
    """SD1 / SD2: one CLIP text encoder."""

    def encode(self, text_encoders: list, input_ids: list[torch.Tensor], clip_skip: int = 1) -> TextConditioning:
        encoder = text_encoders[0]
        if clip_skip <= 1:
            return TextConditioning(encoder(input_ids[0])[0])
        output = encoder(input_ids[0], output_hidden_states=True)
        hidden = output.hidden_states[-clip_skip]
        model = getattr(encoder, "module", encoder)  # under DDP the model is wrapped
        model = getattr(model, "text_model", model)  # transformers < 5 nests the layers in .text_model
        return TextConditioning(model.final_layer_norm(hidden))

    def unet_inputs(self, text: TextConditioning, batch: dict, device: torch.device) -> dict:
        return {}


class TwoClips:
    """SDXL: CLIP-L and OpenCLIP-bigG side by side, with the pooled embedding and the size conditioning."""

    def encode(self, text_encoders: list, input_ids: list[torch.Tensor], clip_skip: int = 1) -> TextConditioning:
        first = text_encoders[0](input_ids[0], output_hidden_states=True)
        second = text_encoders[1](input_ids[1], output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return TextConditioning(hidden, second.text_embeds)

    def unet_inputs(self, text: TextConditioning, batch: dict, device: torch.device) -> dict:
        time_ids = sdxl_time_ids(batch["original_size"], batch["crop_top_left"], batch["target_size"])
        return {"added_cond_kwargs": {"text_embeds": text.pooled, "time_ids": time_ids.to(device)}}


ONE_CLIP, TWO_CLIPS = OneClip(), TwoClips()


def conditioning_of(arch: str) -> Conditioning:
    """The text conditioning family `arch` declares."""
    return family(arch).conditioning.load()


def encode_text(arch: str, text_encoders: list, input_ids: list[torch.Tensor], clip_skip: int = 1,
                ) -> TextConditioning:
    """Run family `arch`'s text encoder(s) on token ids already on their device."""
    return conditioning_of(arch).encode(text_encoders, input_ids, clip_skip)


def sdxl_time_ids(original_sizes: list, crop_top_lefts: list, target_sizes: list) -> torch.Tensor:
    """SDXL's micro-conditioning per sample: original (h, w), crop (top, left), target (h, w)."""
    rows = [list(o) + list(c) + list(t) for o, c, t in zip(original_sizes, crop_top_lefts, target_sizes)]
    return torch.tensor(rows, dtype=torch.float32)
