"""The image LoRA training loop, readable top to bottom.

config -> data (+ caches) -> base model -> LoRA layers -> optimizer -> loop -> kohya file.

Frozen weights are cast to the training precision; LoRA weights and optimizer state stay
fp32. An optimizer step covers `gradient_accumulation_steps` batches (see step.py). Every
random choice comes from seeds: the data order from (seed, epoch), the noise from (seed,
process, step), so a resumed run continues exactly where it stopped. With several processes
(`accelerate launch`) each trains on its share of the batches; losses and stop requests are
agreed across them, and only the main process writes files and sends events.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..config import TrainConfig
from ..models.load import load_base_model
from .checkpoint import (Progress, load_checkpoint, load_trainable, prune_checkpoints, resolve_resume_path,
                         restore_rng, save_checkpoint, trainable_state)
from ..core.events import Fanout, LogFileSink, make_event
from .faults import check_finite_loss, out_of_memory_message
from .image_data import build_image_data, cache_latents, cache_text_outputs
from .lora_setup import attach_lora
from .meter import StepMeter
from .noise import training_scheduler
from .optim import ParamGroup, build_lr_scheduler, build_optimizer
from .output import check_free_space, prepare_output_dir, remove_partial_saves
from .precision import resolve_precision
from .reporting import Reporter, peak_vram_mb
from .sampling import render, sample_prompts
from .saving import LoraWriter, save_sizes
from .step import StepRunner, enable_gradient_checkpointing
from .stop import StopRequest


def train_image_lora(config: TrainConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    """Train; return the saved LoRA's path (also after a stop request), or raise UserError."""
    accelerator = Accelerator()
    main = accelerator.is_main_process
    output_dir = prepare_output_dir(config.output_dir)
    lora_dir = prepare_output_dir(config.lora_output_dir, "lora_output_dir") if config.lora_output_dir else output_dir
    if main:
        emit.add(LogFileSink(str(output_dir / "train.log")))
    else:
        emit = Fanout()  # the other processes stay silent
    report = Reporter(emit, output_dir if main else None, config.log_with == "tensorboard")
    say = report.say
    if main:
        for folder in dict.fromkeys((output_dir, lora_dir)):
            if partial := remove_partial_saves(folder, config.output_name):
                say(f"Removed {len(partial)} partial save(s) an interrupted run left in {folder}: {', '.join(partial)}")
    device = accelerator.device
    if device.type == "cuda":  # TF32 matmuls: the fp32 parts (LoRA, optimizer, losses) run on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    precision = resolve_precision(config.mixed_precision, device)
    set_seed(config.seed)

    data = build_image_data(config, accelerator.num_processes, accelerator.process_index)  # before the model: a dataset problem is reported in a second
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
    if config.cache_latents and (cached := cache_latents(config, data, base, device, output_dir, warn)):
        say(cached)
    if config.cache_text_encoder_outputs or config.cache_text_encoder_outputs_to_disk:
        say(cache_text_outputs(config, data, base, device, output_dir, warn))

    lora = attach_lora(config, base, say)
    if main:
        check_free_space(save_sizes(config, lora.params.all(), output_dir, lora_dir))
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(lora.trained)
    optimizer = build_optimizer(config.optimizer, [
        ParamGroup("unet", lora.params.unet, config.unet_lr or config.learning_rate),
        ParamGroup("text_encoder", [p for group in lora.params.text_encoders for p in group],
                   config.text_encoder_lr or config.learning_rate)],
        config.weight_decay, config.optimizer_args)
    accumulation = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(data.sampler.batches_per_shard() / accumulation)
    total_steps = config.max_train_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    lr_scheduler = build_lr_scheduler(config.scheduler, optimizer, total_steps, config.warmup_steps,
                                      config.scheduler_num_cycles, config.scheduler_power)
    wrapped = {name: accelerator.prepare(module) for name, module in lora.trained.items()}
    for module in lora.trained.values():
        module.train()

    progress = Progress(step=0, epoch=0, batch_in_epoch=0)
    if config.resume_from_checkpoint:
        path = resolve_resume_path(config.resume_from_checkpoint, output_dir)
        tensors, state = load_checkpoint(path)
        load_trainable(lora.trained, tensors, path)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if precision.scaler is not None and state["scaler"]:
            precision.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        progress = Progress(**state["progress"])
        say(f"Resumed from {path} at step {progress.step}")

    runner = StepRunner(config, base, scheduler, precision, device, wrapped, accelerator)
    writer = LoraWriter(config, base, lora.spec, data.index, lora_dir, time.time())
    meter = StepMeter(total_steps, progress.step)
    emit(make_event("start", step=progress.step, total=total_steps, epoch=progress.epoch + 1, epochs=epochs,
                    message=f"{data.index.num_images} images, {data.index.num_train_images} per epoch, "
                            f"{lora.module_count} LoRA modules", path=str(output_dir)))

    def sample(label: str) -> list:
        if not main:
            return []
        prompts = sample_prompts(config.sample_prompts, config.trigger_word, data.index.records[0].caption)
        images = render(base, prompts, negative_prompt=config.sample_negative_prompt, seed=config.sample_seed,
                        steps=config.sample_steps, guidance_scale=config.sample_guidance_scale,
                        size=config.sample_resolution or config.resolution, device=device,
                        autocast=precision.autocast())
        report.samples(images, progress.step, label)
        return images

    def save_state() -> None:
        if main:
            path = save_checkpoint(output_dir, trainable_state(lora.trained), optimizer, lr_scheduler,
                                   precision.scaler, progress, {"seed": config.seed})
            prune_checkpoints(output_dir, config.save_total_limit)
            emit(make_event("save", step=progress.step, path=str(path), message="checkpoint"))

    def save_lora(epoch: int | None = None) -> Path | None:
        if not main:
            return None
        path = writer.save(base.unet, base.text_encoders, steps=progress.step, epochs_done=progress.epoch,
                           epoch=epoch)
        emit(make_event("save", step=progress.step, epoch=epoch, path=str(path), message="LoRA"))
        return path

    try:
        for epoch in range(progress.epoch, epochs):
            batches = data.batches(epoch, skip=progress.batch_in_epoch)
            for chunk in iter(lambda: list(itertools.islice(batches, accumulation)), []):
                loss = runner.optimizer_step(progress.step + 1, chunk, optimizer, lora.params.all())
                check_finite_loss(loss, progress.step + 1, precision.name, config.learning_rate)
                lr_scheduler.step()
                progress.step += 1
                progress.batch_in_epoch += len(chunk) * accelerator.num_processes
                report.step(progress.step, total_steps, epoch + 1, epochs, loss, meter.update(progress.step, loss),
                            optimizer.param_groups)
                if config.save_steps and progress.step % config.save_steps == 0:
                    save_state()
                if config.sample_every_n_steps and progress.step % config.sample_every_n_steps == 0:
                    sample(f"step{progress.step:06d}")
                if _any_process(accelerator, bool(stop)):
                    save_state()
                    path = save_lora()
                    if main:
                        writer.write_card(path, None)
                    report.stopped(progress.step, total_steps, path, "LoRA")
                    return path
                if progress.step >= total_steps:
                    break
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            report.epoch_done(progress.step, total_steps, epoch + 1, epochs, meter.loss_avg)
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
                            peak_vram_mb=peak_vram_mb(device),
                            message=f"Saved {final}. Use it in a prompt with <lora:{final.stem}:"
                                    f"{config.preferred_weight:g}>"))
        return final
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory_message(progress.step, config.resolution, config.batch_size) from None
    finally:
        report.close()


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process when it is true on one (a stop file seen by one process stops them all)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item())
