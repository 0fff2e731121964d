"""Text conditioning for SD1 / SD2 / SDXL: tokenize captions, run the text encoder(s).

SD1/SD2 use the last hidden state (or the `clip_skip`-th last, then the final layer norm,
as kohya and the WebUI do). SDXL concatenates the penultimate hidden states of both
encoders and adds the second encoder's pooled, projected output plus the size/crop
conditioning (`time_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextConditioning:
    hidden_states: torch.Tensor
    pooled: torch.Tensor | None = None  # SDXL only


def tokenize(tokenizers: list, captions: list[str]) -> list[torch.Tensor]:
    """Token ids per tokenizer, padded/truncated to its 77-token window."""
    return [tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                return_tensors="pt").input_ids for tok in tokenizers]


def encode_text(arch: str, text_encoders: list, input_ids: list[torch.Tensor], clip_skip: int = 1,
                ) -> TextConditioning:
    """Run the text encoder(s) on token ids already on their device."""
    if arch == "sdxl":
        first = text_encoders[0](input_ids[0], output_hidden_states=True)
        second = text_encoders[1](input_ids[1], output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return TextConditioning(hidden, second.text_embeds)
    encoder = text_encoders[0]
    if clip_skip <= 1:
        return TextConditioning(encoder(input_ids[0])[0])
    output = encoder(input_ids[0], output_hidden_states=True)
    hidden = output.hidden_states[-clip_skip]
    model = getattr(encoder, "module", encoder)  # under DDP the model is wrapped
    model = getattr(model, "text_model", model)  # transformers < 5 nests the layers in .text_model
    return TextConditioning(model.final_layer_norm(hidden))


def sdxl_time_ids(original_sizes: list, crop_top_lefts: list, target_sizes: list) -> torch.Tensor:
    """SDXL's micro-conditioning per sample: original (h, w), crop (top, left), target (h, w)."""
    rows = [list(o) + list(c) + list(t) for o, c, t in zip(original_sizes, crop_top_lefts, target_sizes)]
    return torch.tensor(rows, dtype=torch.float32)
