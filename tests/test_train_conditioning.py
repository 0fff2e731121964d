"""Text conditioning equals what diffusers' own pipelines feed the UNet (SD1 with clip skip, SDXL)."""

import torch

from lora_train.fixtures.components import tiny_sd1, tiny_sdxl
from lora_train.models.base_model import BaseModel
from lora_train.models.pipeline import make_pipeline
from lora_train.train.conditioning import encode_text, sdxl_time_ids, tokenize

PROMPTS = ["a red circle, flat shapes", "lt_shapes"]


def as_base(tiny) -> BaseModel:
    return BaseModel(tiny.arch, tiny.v_prediction, tiny.unet, tiny.vae, tiny.text_encoders, tiny.tokenizers,
                     tiny.scheduler, "tiny", "tiny.safetensors")


@torch.no_grad()
def test_sd1_hidden_states_match_the_pipeline_with_and_without_clip_skip():
    base = as_base(tiny_sd1())
    pipeline = make_pipeline(base)
    ids = tokenize(base.tokenizers, PROMPTS)
    theirs, _ = pipeline.encode_prompt(PROMPTS, "cpu", 1, False)
    torch.testing.assert_close(encode_text("sd1", base.text_encoders, ids).hidden_states, theirs)
    # diffusers 0.42's own clip_skip path expects transformers 4's `.text_model`; its formula, restated:
    encoder = base.text_encoders[0]
    skipped = encoder.final_layer_norm(encoder(ids[0], output_hidden_states=True).hidden_states[-2])
    torch.testing.assert_close(encode_text("sd1", base.text_encoders, ids, clip_skip=2).hidden_states, skipped)
    assert not torch.allclose(skipped, theirs)


@torch.no_grad()
def test_sdxl_concatenates_both_encoders_and_pools_the_second():
    base = as_base(tiny_sdxl())
    ours = encode_text("sdxl", base.text_encoders, tokenize(base.tokenizers, PROMPTS))
    embeds, _, pooled, _ = make_pipeline(base).encode_prompt(PROMPTS, device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(ours.hidden_states, embeds)
    torch.testing.assert_close(ours.pooled, pooled)
    time_ids = sdxl_time_ids([(64, 96)], [(0, 16)], [(64, 64)])
    assert time_ids.tolist() == [[64.0, 96.0, 0.0, 16.0, 64.0, 64.0]]
