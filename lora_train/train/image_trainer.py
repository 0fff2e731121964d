"""The image LoRA training loop, readable top to bottom.

config -> base model -> data (+ caches) -> LoRA layers -> optimizer -> loop -> kohya file.

Frozen weights are cast to the training precision; LoRA weights and optimizer state stay
fp32. An optimizer step covers `gradient_accumulation_steps` batches. Every random choice
comes from seeded generators whose state is saved in checkpoints, and the data order from
(seed, epoch), so a resumed run continues exactly where it stopped. Only the main process
writes files and sends events.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..adapters.inject import inject_lora, lora_parameters
from ..adapters.spec import LoraSpec
from ..adapters.targets import select_targets
from ..config import TrainConfig
from ..errors import UserError
from ..export.pretrained import load_pretrained_lora
from ..models.load import load_base_model
from .checkpoint import (Progress, load_checkpoint, load_trainable, prune_checkpoints, resolve_resume_path,
                         restore_rng, save_checkpoint, trainable_state)
from .conditioning import TextConditioning, encode_text, sdxl_time_ids, tokenize
from .events import Fanout, LogFileSink, make_event
from .faults import check_finite_loss, out_of_memory_message
from .image_data import ImageData, build_image_data, cache_latents, cache_text_outputs
from .meter import StepMeter
from .noise import diffusion_loss, sample_noise, sample_timesteps, snr_weights, training_scheduler, training_target
from .optim import ParamGroup, build_lr_scheduler, build_optimizer
from .output import prepare_output_dir
from .precision import Precision, resolve_precision
from .sampling import render, sample_prompts, save_samples
from .saving import LoraWriter
from .stop import StopRequest


def train_image_lora(config: TrainConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    """Train; return the saved LoRA's path (also after a stop request), or raise UserError."""
    accelerator = Accelerator()
    main = accelerator.is_main_process
    output_dir = prepare_output_dir(config.output_dir)
    lora_dir = prepare_output_dir(config.lora_output_dir, "lora_output_dir") if config.lora_output_dir else output_dir
    if not main:
        emit = Fanout()
    else:
        emit.add(LogFileSink(str(output_dir / "train.log")))

    def say(text: str, level: str = "info") -> None:
        emit(make_event("log", message=text, level=level))

    device = accelerator.device
    precision = resolve_precision(config.mixed_precision, device)
    set_seed(config.seed)
    data = build_image_data(config)  # before the model: a dataset problem is reported in a second
    for warning in data.warnings:
        say(warning, "warning")
    say(f"Loading base model {config.base_model}")
    base = load_base_model(config.base_model, config.vae, config.prediction_type)
    say(f"Base model: {base.sd_version}{' (v-prediction)' if base.v_prediction else ''}, training in "
        f"{precision.name if precision.name != 'no' else 'fp32'} on {device}")
    scheduler = training_scheduler(base.noise_scheduler, config.zero_terminal_snr)

    # Frozen weights on the device in the training precision; the SDXL VAE stays fp32 (fp16 overflows).
    for module in [base.unet, *base.text_encoders]:
        module.to(device, precision.weight_dtype)
    base.vae.to(device, torch.float32 if base.arch == "sdxl" else precision.weight_dtype)
    warn = lambda text: say(text, "warning")  # noqa: E731
    if config.cache_latents and (report := cache_latents(config, data, base, device, output_dir, warn)):
        say(report)
    if config.cache_text_encoder_outputs or config.cache_text_encoder_outputs_to_disk:
        say(cache_text_outputs(config, data, base, device, output_dir, warn))

    spec = LoraSpec.from_settings(network_type=config.network_type, lora_rank=config.lora_rank,
                                  lora_alpha=config.lora_alpha, conv_dim=config.conv_dim,
                                  conv_alpha=config.conv_alpha, use_dora=config.use_dora)
    targets = select_targets(base.unet, base.text_encoders, train_unet=config.train_unet,
                             train_text_encoder=config.train_text_encoder, unet_targets=config.unet_targets,
                             text_encoder_targets=config.text_encoder_targets, network_type=config.network_type,
                             target_modules=config.target_modules)
    params = inject_lora(base.unet, base.text_encoders, targets, spec)
    if config.pretrained_lora:
        report = load_pretrained_lora(config.pretrained_lora, base.arch, base.unet, base.text_encoders)
        params = lora_parameters(base.unet, base.text_encoders)
        say(f"Continuing from {config.pretrained_lora} ({len(report.loaded)} modules)")
        if report.unmatched:
            say(f"{len(report.unmatched)} modules of {config.pretrained_lora} are not trained in this run "
                f"(e.g. {report.unmatched[0]})", "warning")
    trained = {"unet": base.unet} if params.unet else {}
    trained.update({f"text_encoder_{i}": te for i, (te, p) in enumerate(zip(base.text_encoders,
                                                                             params.text_encoders)) if p})
    if config.gradient_checkpointing:
        _enable_gradient_checkpointing(trained)

    text_lr = config.text_encoder_lr or config.learning_rate
    optimizer = build_optimizer(config.optimizer, [
        ParamGroup("unet", params.unet, config.unet_lr or config.learning_rate),
        ParamGroup("text_encoder", [p for group in params.text_encoders for p in group], text_lr)],
        config.weight_decay, config.optimizer_args)
    accumulation = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(data.sampler.batches_per_epoch() / accumulation)
    total_steps = config.max_train_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    lr_scheduler = build_lr_scheduler(config.scheduler, optimizer, total_steps, config.warmup_steps,
                                      config.scheduler_num_cycles, config.scheduler_power)
    wrapped = {name: accelerator.prepare(module) for name, module in trained.items()}
    for module in trained.values():
        module.train()

    generator = torch.Generator().manual_seed(config.seed)
    progress = Progress(step=0, epoch=0, batch_in_epoch=0)
    if config.resume_from_checkpoint:
        path = resolve_resume_path(config.resume_from_checkpoint, output_dir)
        tensors, state = load_checkpoint(path)
        load_trainable(trained, tensors, path)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if precision.scaler is not None and state["scaler"]:
            precision.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], {"noise": generator})
        progress = Progress(**state["progress"])
        say(f"Resumed from {path} at step {progress.step}")

    step_context = _StepContext(config, base, scheduler, precision, generator, device, wrapped, accelerator)
    writer = LoraWriter(config, base, spec, data.index, lora_dir, time.time())
    samples_dir = output_dir / "samples"
    tensorboard = _tensorboard(config, output_dir) if main else None
    meter = StepMeter(total_steps, progress.step)
    emit(make_event("start", step=progress.step, total=total_steps, epoch=progress.epoch + 1, epochs=epochs,
                    message=f"{data.index.num_images} images, {data.index.num_train_images} per epoch, "
                            f"{len(targets)} LoRA modules", path=str(output_dir)))

    def sample(label: str) -> list:
        prompts = sample_prompts(config.sample_prompts, config.trigger_word, data.index.records[0].caption)
        images = render(base, prompts, negative_prompt=config.sample_negative_prompt, seed=config.sample_seed,
                        steps=config.sample_steps, guidance_scale=config.sample_guidance_scale,
                        size=config.sample_resolution or config.resolution, device=device,
                        autocast=precision.autocast())
        if main:
            for path in save_samples(images, samples_dir, label):
                emit(make_event("sample", step=progress.step, path=str(path)))
            if tensorboard is not None:
                for i, image in enumerate(images):
                    tensorboard.add_image(f"sample/{i}", np.asarray(image), progress.step, dataformats="HWC")
        return images

    def save_state() -> None:
        if not main:
            return
        path = save_checkpoint(output_dir, trainable_state(trained), optimizer, lr_scheduler, precision.scaler,
                               {"noise": generator}, progress, {"seed": config.seed})
        prune_checkpoints(output_dir, config.save_total_limit)
        emit(make_event("save", step=progress.step, path=str(path), message="checkpoint"))

    def save_lora(epoch: int | None = None) -> Path | None:
        if not main:
            return None
        path = writer.save(base.unet, base.text_encoders, steps=progress.step, epochs_done=progress.epoch, epoch=epoch)
        emit(make_event("save", step=progress.step, epoch=epoch, path=str(path), message="LoRA"))
        return path

    try:
        for epoch in range(progress.epoch, epochs):
            batches = data.batches(epoch, skip=progress.batch_in_epoch)
            for chunk in iter(lambda: list(itertools.islice(batches, accumulation)), []):
                loss = step_context.optimizer_step(chunk, optimizer, params.all())
                check_finite_loss(loss, progress.step + 1, precision.name, config.learning_rate)
                lr_scheduler.step()
                progress.step += 1
                progress.batch_in_epoch += len(chunk)
                rates = meter.update(progress.step, loss)
                lr = lr_scheduler.get_last_lr()[0]
                emit(make_event("step", step=progress.step, total=total_steps, epoch=epoch + 1, epochs=epochs,
                                loss=round(loss, 6), loss_avg=round(rates.loss_avg, 6), lr=lr, its=rates.its,
                                eta_s=rates.eta_s))
                if tensorboard is not None:
                    tensorboard.add_scalar("loss/step", loss, progress.step)
                    tensorboard.add_scalar("loss/average", rates.loss_avg, progress.step)
                    for group in optimizer.param_groups:
                        tensorboard.add_scalar(f"lr/{group['name']}", group["lr"], progress.step)
                if config.save_steps and progress.step % config.save_steps == 0:
                    save_state()
                if config.sample_every_n_steps and progress.step % config.sample_every_n_steps == 0:
                    sample(f"step{progress.step:06d}")
                if stop:
                    save_state()
                    path = save_lora()
                    if main:
                        writer.write_card(path, None)
                    emit(make_event("done", step=progress.step, total=total_steps, path=str(path), interrupted=True,
                                    message=f"Stopped at step {progress.step}; the LoRA trained so far is saved. "
                                            "Resume continues from here."))
                    return path
                if progress.step >= total_steps:
                    break
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            emit(make_event("epoch", step=progress.step, total=total_steps, epoch=epoch + 1, epochs=epochs,
                            loss_avg=round(meter.loss_avg, 6)))
            last = progress.step >= total_steps
            if config.save_every_n_epochs and (epoch + 1) % config.save_every_n_epochs == 0 and not last:
                save_lora(epoch=epoch + 1)
            if config.sample_every_n_epochs and (epoch + 1) % config.sample_every_n_epochs == 0 and not last:
                sample(f"epoch{epoch + 1:04d}")
            if last:
                break
        final = save_lora()
        preview = sample(f"final{progress.step:06d}")
        if main:
            writer.write_card(final, preview[0] if preview else None)
            emit(make_event("done", step=progress.step, total=total_steps, path=str(final),
                            peak_vram_mb=_peak_vram_mb(device), message=f"Saved {final}. Use it in a prompt with <lora:{final.stem}:"
                                    f"{config.preferred_weight:g}>"))
        return final
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory_message(progress.step, config.resolution, config.batch_size) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()


class _StepContext:
    """What one optimizer step needs: models, schedule, precision, random generator."""

    def __init__(self, config: TrainConfig, base, scheduler, precision: Precision, generator: torch.Generator,
                 device: torch.device, wrapped: dict, accelerator: Accelerator):
        self.config, self.base, self.scheduler, self.precision = config, base, scheduler, precision
        self.generator, self.device, self.wrapped, self.accelerator = generator, device, wrapped, accelerator
        self.unet = wrapped.get("unet", base.unet)
        self.text_encoders = [wrapped.get(f"text_encoder_{i}", te) for i, te in enumerate(base.text_encoders)]

    def optimizer_step(self, chunk: list[dict], optimizer, params: list[torch.nn.Parameter]) -> float:
        """Forward and backward over the chunk's batches, then one optimizer step; returns the mean loss."""
        scaler, total = self.precision.scaler, 0.0
        for i, batch in enumerate(chunk):
            sync = i == len(chunk) - 1
            with contextlib.ExitStack() as stack:
                if not sync:
                    for module in self.wrapped.values():
                        stack.enter_context(self.accelerator.no_sync(module))
                with self.precision.autocast():
                    loss = self.batch_loss(batch)
                scaled = loss / len(chunk)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.item()
        mean = total / len(chunk)
        if not math.isfinite(mean):
            optimizer.zero_grad(set_to_none=True)
            return mean
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return mean

    def batch_loss(self, batch: dict) -> torch.Tensor:
        base, config = self.base, self.config
        latents = self.latents(batch)
        noise = sample_noise(latents, self.generator, config.noise_offset)
        timesteps = sample_timesteps(latents.shape[0], self.scheduler, self.generator, self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        text = self.text_conditioning(batch)
        extra = {}
        if base.arch == "sdxl":
            time_ids = sdxl_time_ids(batch["original_size"], batch["crop_top_left"], batch["target_size"])
            extra["added_cond_kwargs"] = {"text_embeds": text.pooled, "time_ids": time_ids.to(self.device)}
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=text.hidden_states, **extra).sample
        target = training_target(self.scheduler, latents, noise, timesteps)
        weights = snr_weights(self.scheduler, timesteps, config.min_snr_gamma) if config.min_snr_gamma else None
        return diffusion_loss(prediction, target, weights)

    def latents(self, batch: dict) -> torch.Tensor:
        if "latents" in batch:
            return batch["latents"].to(self.device, torch.float32)
        vae = self.base.vae
        with torch.no_grad():
            pixels = batch["pixel_values"].to(self.device, vae.dtype)
            return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).float()

    def text_conditioning(self, batch: dict) -> TextConditioning:
        if "text_encoder_outputs" in batch:
            cached = batch["text_encoder_outputs"]
            pooled = cached.get("pooled")
            return TextConditioning(cached["hidden_states"].to(self.device),
                                    pooled.to(self.device) if pooled is not None else None)
        ids = [t.to(self.device) for t in tokenize(self.base.tokenizers, batch["caption"])]
        grad = torch.enable_grad() if self.config.train_text_encoder else torch.no_grad()
        with grad:
            return encode_text(self.base.arch, self.text_encoders, ids, self.config.clip_skip)


def _enable_gradient_checkpointing(trained: dict[str, torch.nn.Module]) -> None:
    for name, module in trained.items():
        if name == "unet":
            module.enable_gradient_checkpointing()
        elif hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.2x
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _peak_vram_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _tensorboard(config: TrainConfig, output_dir: Path):
    if config.log_with != "tensorboard":
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(output_dir / "logs"))
