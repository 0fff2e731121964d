"""Samples during a Flux run, with diffusers' FluxPipeline / ChromaPipeline on the model being trained.

The prompts are encoded once, before T5 is freed (and CLIP-L: when CLIP-L is there at sampling time, loaded
again or training, its pooled output is encoded again for each sample). Flux.1-dev gets the embedded
guidance diffusers' pipeline defaults to (3.5), schnell none; a family that samples with true
classifier-free guidance (Chroma) uses `sample_guidance_scale` and the negative prompt. The pipeline is the
family's (`folder.pipeline`), the sampler Flux's (FlowMatchEulerDiscreteScheduler, shifted by image size
where the family's is). The autoencoder and CLIP-L, when the run released them, are read again for the
samples (the image loop's `encoders_loaded`).
"""

from __future__ import annotations

import diffusers
import torch
from PIL import Image

from ..train.sampling import SampleSettings, evaluating
from .base import FluxBase
from .text import TextSettings, chroma_text_mask, clip_pooled, encode_captions

FLUX_DEV_GUIDANCE = 3.5


class FluxSampler:
    """`generate_samples` for a Flux-family run (the image loop's `generate`)."""

    def __init__(self, base: FluxBase, settings: SampleSettings, text: TextSettings, device: torch.device):
        self.encoded: list[dict[str, torch.Tensor]] = []
        if not settings.steps:
            return
        with torch.no_grad():
            prompts = settings.prompts + ([settings.negative_prompt] if base.family.parts.true_cfg else [])
            self.encoded = [encode_captions(base, [prompt], text, device, base.clip is not None) for prompt in prompts]

    def __call__(self, base: FluxBase, settings: SampleSettings, device: torch.device, autocast
                 ) -> list[Image.Image]:
        with torch.no_grad(), evaluating([base.transformer, *base.text_encoders], base.vae, device):
            return [self._render(base, settings, i, device, autocast) for i in range(len(settings.prompts))]

    def _render(self, base: FluxBase, settings: SampleSettings, index: int, device: torch.device, autocast
                ) -> Image.Image:
        encoded, dtype = self.encoded[index], base.transformer.dtype
        generator = torch.Generator(device="cpu").manual_seed(settings.seed + index)
        common = dict(prompt_embeds=encoded["t5"].to(dtype), num_inference_steps=settings.steps,
                      height=settings.size, width=settings.size, generator=generator)
        pipeline_class = getattr(diffusers, base.family.folder.pipeline)
        with autocast:
            if base.family.parts.true_cfg:
                negative = self.encoded[-1]
                pipeline = pipeline_class(scheduler=base.sampling_scheduler(), vae=base.vae, text_encoder=None,
                                          tokenizer=None, transformer=base.transformer)
                return pipeline(**common, prompt_attention_mask=chroma_text_mask(encoded["t5_mask"], dtype),
                                negative_prompt_embeds=negative["t5"].to(dtype),
                                negative_prompt_attention_mask=chroma_text_mask(negative["t5_mask"], dtype),
                                guidance_scale=settings.guidance_scale).images[0]
            pooled = (clip_pooled(base.clip, base.clip_tokenizer, [settings.prompts[index]], device)
                      if base.clip is not None else encoded["pooled"])
            pipeline = pipeline_class(scheduler=base.sampling_scheduler(), vae=base.vae, text_encoder=None,
                                      tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                      transformer=base.transformer)
            return pipeline(**common, pooled_prompt_embeds=pooled.to(dtype),
                            guidance_scale=FLUX_DEV_GUIDANCE).images[0]
