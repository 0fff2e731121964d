"""Helpers for the adapter / export tests (no tests here): tiny models carrying a LoRA that looks
trained (lora_B is zero after injection, so every LoRA weight is randomised), fixed probe inputs,
and diffusers pipelines built from a fresh copy of the same base."""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from lora_train.adapters.inject import inject_lora
from lora_train.adapters.layers import ADAPTER, lora_layers
from lora_train.adapters.spec import LoraSpec
from lora_train.adapters.targets import TEXT_ENCODER_KINDS, UNET_KINDS, select_targets
from lora_train.families import family
from lora_train.fixtures.components import TINY_BUILDERS, TinyModel

TOKEN_IDS = torch.tensor([[49406, 320, 1929, 539, 550, 49407]])


@functools.lru_cache(maxsize=None)
def _pristine(arch: str) -> TinyModel:
    return TINY_BUILDERS[arch]()


def fresh(arch: str) -> TinyModel:
    """A new copy of the tiny base model (built once per architecture; tokenizers shared)."""
    model = _pristine(arch)
    return dataclasses.replace(model, unet=copy.deepcopy(model.unet), vae=copy.deepcopy(model.vae),
                               text_encoders=[copy.deepcopy(te) for te in model.text_encoders])


def inject(model: TinyModel, spec: LoraSpec, *, train_text_encoder: bool = True) -> TinyModel:
    targets = select_targets(model.unet, model.text_encoders, family(model.arch).targets, train_unet=True,
                             train_text_encoder=train_text_encoder, unet_targets=UNET_KINDS,
                             text_encoder_targets=TEXT_ENCODER_KINDS, network_type=spec.network_type)
    inject_lora(model.unet, model.text_encoders, targets, spec)
    return model


def randomize(model: TinyModel, seed: int = 0) -> None:
    """Give every LoRA layer random weights (and DoRA magnitudes a random +-20%)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for component in [model.unet, *model.text_encoders]:
            for _, layer in lora_layers(component):
                for module in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.1)
                if ADAPTER in layer.lora_magnitude_vector:
                    magnitude = layer.lora_magnitude_vector[ADAPTER].weight
                    magnitude.mul_(1 + 0.2 * torch.randn(magnitude.shape, generator=generator))


def trained(arch: str, spec: LoraSpec, *, seed: int = 0, train_text_encoder: bool = True) -> TinyModel:
    """A tiny model of the architecture with a randomised LoRA of this spec."""
    model = inject(fresh(arch), spec, train_text_encoder=train_text_encoder)
    randomize(model, seed)
    return model


def unet_inputs(model: TinyModel, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    config = model.unet.config
    inputs = {"sample": torch.randn(2, 4, 8, 8, generator=generator), "timestep": torch.tensor([10, 500]),
              "encoder_hidden_states": torch.randn(2, 6, config.cross_attention_dim, generator=generator)}
    if model.arch == "sdxl":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {"text_embeds": torch.randn(2, pooled, generator=generator),
                                       "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    return inputs


@torch.no_grad()
def unet_output(unet, inputs: dict) -> torch.Tensor:
    return unet(**inputs).sample.float()


@torch.no_grad()
def text_outputs(text_encoders) -> list[torch.Tensor]:
    return [encoder(TOKEN_IDS).last_hidden_state.float() for encoder in text_encoders]


def pipeline(base: TinyModel):
    """A diffusers pipeline around a tiny model's components."""
    if base.arch == "sdxl":
        return StableDiffusionXLPipeline(vae=base.vae, text_encoder=base.text_encoders[0],
                                         text_encoder_2=base.text_encoders[1], tokenizer=base.tokenizers[0],
                                         tokenizer_2=base.tokenizers[1], unet=base.unet, scheduler=base.scheduler)
    return StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoders[0], tokenizer=base.tokenizers[0],
                                   unet=base.unet, scheduler=base.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
