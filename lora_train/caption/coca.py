"""CoCa captions: greedy decoding with an open_clip CoCa model's text decoder.

open_clip's own `CoCa.generate` imports generation classes that transformers 5 removed, so it
refuses to run; the loop here is the plain greedy version of it: the image is encoded once, then
the start token and the tokens chosen so far go through the decoder (`output_labels=False`, as
open_clip's generate calls it) and the most likely next token is appended until the end token.
"""

from __future__ import annotations


def greedy_tokens(model, pixels, start: int, end: int, steps: int) -> list[list[int]]:
    """Each image's chosen token ids (without the start token, up to and without the end token)."""
    import torch

    with torch.inference_mode():
        latent, embs = model._encode_image(pixels)
        tokens = torch.full((pixels.shape[0], 1), start, dtype=torch.long, device=pixels.device)
        finished = torch.zeros(pixels.shape[0], dtype=torch.bool, device=pixels.device)
        for _ in range(steps):
            logits = model(pixels, tokens, image_latent=latent, image_embs=embs, output_labels=False)["logits"]
            chosen = logits[:, -1].argmax(-1).masked_fill(finished, end)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
            finished |= chosen == end
            if finished.all():
                break
    rows = tokens[:, 1:].tolist()
    return [row[: row.index(end)] if end in row else row for row in rows]


def greedy_captions(model, pixels, tokenizer, max_tokens: int, context_length: int) -> list[str]:
    """One caption per image of `pixels` (a preprocessed batch)."""
    rows = greedy_tokens(model, pixels, tokenizer.bos_token_id, tokenizer.eos_token_id,
                         min(max_tokens, context_length - 1))
    return [" ".join(tokenizer.decode(row, skip_special_tokens=True).split()) for row in rows]
