"""A Flux-family LoRA run, on the shared run kit: the session, data, schedule, optimizer, resume state, the
image loop and the writer are the UNet engine's (`train/image_trainer.py`); what differs is here.

config checks -> data -> the Flux model (`load_flux_base`) -> sample prompts encoded -> latents and T5 /
CLIP-L outputs cached, T5 freed -> LoRA on the transformer (and CLIP-L) -> the autoencoder and CLIP-L
released where the caches hold all the steps need (`release_unused_encoders`) -> resume (the run record,
loss history) -> flow-matching steps (`step.py`) -> kohya's Flux file (`lora_file.py`). `build_flux_loop`
is the Flux families' `engine` (families/flux.py).
"""

from __future__ import annotations

import gc

import torch

from ..config import TrainConfig
from ..core.errors import UserError
from ..families import Family
from ..train.image_data import ImageData, build_image_data, cache_folders, fill_latent_cache, model_identity
from ..train.image_loop import ImageLoop
from ..train.image_trainer import (LoopParts, Session, add_lora, make_schedule, prepare_trained,
                                   release_unused_encoders, resumed_progress, sample_settings, start_loop,
                                   training_state)
from ..train.lora_writer import lora_writer
from ..train.stop import StopRequest
from .base import FluxBase, PartPaths, load_flux_base
from .block_swap import BlockSwap, swap_counts
from .flow import FlowSettings
from .lora_file import FluxLoraWriter
from .offload_checkpoints import OffloadedCheckpoints
from .pretrained import load_flux_state_dict
from .sampling import FluxSampler
from .source import FluxSource, block_counts, flux_source
from .step import FlowStepRunner
from .targets import select_flux_targets
from .text import TextSettings, encode_captions, text_settings

_SD_ONLY = {  # key -> (is it set?, what to do instead)
    "network_type": (lambda c: c.network_type != "lora", "Flux's transformer has no convolutions: use lora"),
    "use_dora": (lambda c: c.use_dora, "DoRA cannot be fused into BFL's qkv layers exactly yet: turn it off"),
    "prediction_type": (lambda c: c.prediction_type != "auto", "Flux learns the flow velocity: leave it at auto"),
    "min_snr_gamma": (lambda c: c.min_snr_gamma is not None, "use weighting_scheme for Flux"),
    "zero_terminal_snr": (lambda c: c.zero_terminal_snr, "Flux's flow schedule has no terminal SNR: turn it off"),
    "clip_skip": (lambda c: c.clip_skip != 1, "Flux uses CLIP-L's pooled output: leave it at 1"),
    "vae": (lambda c: bool(c.vae), "name Flux's autoencoder with ae"),
}


def check_flux_config(config: TrainConfig, family: Family) -> None:
    """A UserError for settings that do not apply to Flux (each with what to do instead)."""
    for key, (is_set, advice) in _SD_ONLY.items():
        if is_set(config):
            raise UserError(f"{key} is a Stable Diffusion setting and cannot be used with {family.names.title}: "
                            f"{advice}.")
    if config.cpu_offload_checkpointing and not config.gradient_checkpointing:
        raise UserError("cpu_offload_checkpointing keeps gradient checkpointing's activations in CPU memory: it needs "
                        "gradient_checkpointing: true.")
    if config.cpu_offload_checkpointing and config.blocks_to_swap:
        raise UserError("cpu_offload_checkpointing cannot be used with blocks_to_swap (as in kohya's "
                        "flux_train_network.py): choose one; blocks_to_swap saves more VRAM.")
    for key in ("resolution", "bucket_reso_steps"):
        if getattr(config, key) % 16:
            raise UserError(f"{key} is {getattr(config, key)}: Flux packs 2x2 patches of 8x smaller latents, so it "
                            "must be a multiple of 16 (e.g. 512, 768, 1024; bucket_reso_steps 64).")


def load_model(config: TrainConfig, source: FluxSource, session: Session) -> FluxBase:
    """The Flux model, frozen on the device in the training precision (the autoencoder in fp32)."""
    say, precision, device = session.report.say, session.precision, session.device
    say(f"Loading base model {source.path} ({source.family.names.title})")
    paths = PartPaths(config.ae, config.clip_l, config.t5xxl, config.t5xxl_tokenizer, config.fp8_base)
    # with block swap the transformer is read into CPU memory, and `BlockSwap` puts all but the swapped weights
    # on the device
    base = load_flux_base(source, paths, precision.weight_dtype, torch.device("cpu") if config.blocks_to_swap
                          else device)
    for module in (base.t5, *base.text_encoders):
        module.to(device)
    base.vae.to(device, torch.float32)
    parts = ", ".join(f"{part} from {where}" for part, where in base.sources.items() if where)
    say(f"Base model: {base.family.names.title}, training in {precision.name if precision.name != 'no' else 'fp32'} on "
        f"{device}{' (the transformer in fp8)' if config.fp8_base else ''}; {parts}")
    return base


def fill_text_cache(config: TrainConfig, data: ImageData, base: FluxBase, text: TextSettings, session: Session
                    ) -> None:
    """T5's outputs (and CLIP-L's pooled output, unless CLIP-L trains) encoded once, then T5 freed (CLIP-L goes
    with the run kit's `release_unused_encoders`, which can load it again for samples); T5 stays when captions
    change every step (shuffle_caption, caption_dropout_rate) or caching is off."""
    say = session.report.say
    if not (config.cache_text_encoder_outputs or config.cache_text_encoder_outputs_to_disk):
        return
    if config.shuffle_caption or config.caption_dropout_rate:
        say("T5 stays loaded and encodes every step: shuffle_caption / caption_dropout_rate change the captions, so "
            "their outputs cannot be cached.", "warning")
        return
    pooled = base.clip is not None and not config.train_text_encoder

    @torch.no_grad()
    def encode(captions: list[str]) -> dict[str, torch.Tensor]:
        out = encode_captions(base, captions, text, session.device, pooled)
        return {key: value.cpu() for key, value in out.items()}

    folder = cache_folders(config, session.output_dir, say).open("text", config.cache_text_encoder_outputs_to_disk)
    identity = model_identity(base, "flux-text", base.sources.get("t5xxl"), base.sources.get("clip_l"), pooled,
                              text.max_length, text.t5_mask, base.t5.dtype)
    data.cache_text(encode, identity, folder)
    base.t5 = None
    _release_memory(session.device)
    say(f"Text-encoder outputs: {folder.stats.hits} from the cache, {folder.stats.misses} encoded; T5 freed")


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _flow_metadata(config: TrainConfig, text: TextSettings) -> dict[str, str]:
    """What kohya records of the flow settings (`ss_*`)."""
    keys = ("timestep_sampling", "sigmoid_scale", "discrete_flow_shift", "logit_mean", "logit_std", "weighting_scheme",
            "guidance_scale", "model_prediction_type")
    return {**{f"ss_{key}": str(getattr(config, key)) for key in keys},
            "ss_apply_t5_attn_mask": str(text.t5_mask), "ss_t5xxl_max_token_length": str(text.max_length)}


def build_flux_loop(config: TrainConfig, session: Session, stop: StopRequest) -> ImageLoop:
    """The Flux families' engine (`Family.engine`): data, the Flux model, caches, LoRA, optimizer and resumed
    progress, assembled into the image loop."""
    report, accelerator, device = session.report, session.accelerator, session.device
    source = flux_source(config.base_model)
    if source is None:  # the dispatcher saw a Flux family's file or folder: it changed, or its names lie
        raise UserError(f"base_model {config.base_model} no longer holds a Flux.1 or Chroma model: check the path.")
    check_flux_config(config, source.family)
    swap_counts(config.blocks_to_swap, *block_counts(source))
    data = build_image_data(config, accelerator.num_processes, accelerator.process_index)
    for warning in data.warnings:
        report.say(warning, "warning")
    base = load_model(config, source, session)
    text = text_settings(base.family, config.t5xxl_max_token_length, config.apply_t5_attn_mask)
    if not base.family.parts.clip_l and config.train_text_encoder:
        report.say(f"{base.family.names.title} has no CLIP-L, and T5 stays frozen: only the transformer trains.")
    sampler = FluxSampler(base, sample_settings(config, data), text, device)
    fill_latent_cache(config, data, base, device, cache_folders(config, session.output_dir, report.say),
                      f"{base.sources['ae']}:{base.vae.config.shift_factor}")
    fill_text_cache(config, data, base, text, session)
    targets = select_flux_targets(base.transformer, base.clip, base.family.targets, train_unet=config.train_unet,
                                  train_text_encoder=config.train_text_encoder, flux_targets=config.flux_targets,
                                  text_encoder_targets=config.text_encoder_targets,
                                  target_modules=config.target_modules,
                                  double_blocks=config.train_double_block_indices,
                                  single_blocks=config.train_single_block_indices)
    lora = add_lora(config, base, session, targets, load_flux_state_dict)
    if config.blocks_to_swap:
        report.say(BlockSwap(base.transformer, config.blocks_to_swap, device).describe())
    if config.cpu_offload_checkpointing:
        OffloadedCheckpoints(base.transformer)
        report.say("Gradient checkpointing keeps its activations in CPU memory (cpu_offload_checkpointing).")
    release_unused_encoders(config, data, base, lora, report.say)
    _release_memory(device)
    schedule = make_schedule(config, data)
    state = training_state(config, lora, schedule, session)
    wrapped = prepare_trained(lora, accelerator, ("unet",) if config.blocks_to_swap else ())
    progress, run = resumed_progress(config, state, session, base.path)
    flow = FlowSettings(config.timestep_sampling, config.sigmoid_scale, config.discrete_flow_shift, config.logit_mean,
                        config.logit_std, config.weighting_scheme)
    runner = FlowStepRunner(config, base, flow, text, session.precision, device, wrapped, accelerator)
    writer = lora_writer(config, base, lora.spec, data.index, session.lora_dir, run, FluxLoraWriter)
    writer.settings = _flow_metadata(config, text)
    return start_loop(config, session, stop, LoopParts(data, base, lora, schedule, state, progress, run, runner,
                                                       writer, sampler))
