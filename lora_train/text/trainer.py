"""The text LoRA training loop, readable top to bottom.

config -> tokenizer + template -> data (checked before the slow model load) -> model -> LoRA
(targets checked one by one) -> optimizer -> loop -> PEFT adapter folder.

The events, train.log, TensorBoard, stop request, checkpoints and optimizer / schedule builders are
the image engine's. The data order of an epoch is seeded by (seed, epoch) and the random state is
saved in each checkpoint, so a resumed run continues the same loss curve.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..core.errors import UserError
from ..core.events import Fanout, LogFileSink, make_event
from ..core.resume_folders import resolve_resume_path
from ..train.resume_state import Checkpoints, Progress, TrainingState
from ..train.run_record import RunRecord
from ..train.faults import check_finite_loss
from ..train.meter import StepMeter
from ..train.optim import ParamGroup, build_lr_scheduler, build_optimizer
from ..train.output import prepare_output_dir, remove_partial_saves
from ..train.reporting import Reporter, peak_vram_mb
from ..train.stop import StopRequest
from ..train.validation import Tracker
from .adapter import save_adapter
from .data import TextData, build_text_data, epoch_batches
from .encode import IGNORE
from .model import DTYPES, classify_base_model, load_model, load_tokenizer, quantization_config, resolve_dtype
from .schema import TextConfig
from .targets import choose_targets
from .templates import choose_template


def train_text_lora(config: TextConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    """Train; return the saved adapter folder (also after a stop request), or raise UserError."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    accelerator = Accelerator()
    if accelerator.num_processes > 1:
        raise UserError("Text LoRA training runs in one process for now: start it with `python -m lora_train`, "
                        "not `accelerate launch` on several GPUs.")
    main = accelerator.is_main_process
    output_dir = prepare_output_dir(config.output_dir)
    if main:
        emit.add(LogFileSink(str(output_dir / "train.log")))
    else:
        emit = Fanout()
    report = Reporter(emit, output_dir if main else None, config.log_with == "tensorboard")
    say = report.say
    if main and (partial := remove_partial_saves(output_dir, config.output_name)):
        say(f"Removed {len(partial)} partial save(s) an interrupted run left in {output_dir}: {', '.join(partial)}")
    device = accelerator.device
    set_seed(config.seed)

    source = classify_base_model(config.base_model)
    tokenizer = load_tokenizer(source, config.trust_remote_code)
    template = choose_template(config.template, tokenizer)
    say("Prompt format: the model's own chat template" if template.name == "model" else
        f"Prompt format: {template.name}" + (" (the model has no chat template)" if config.template == "auto" else ""))
    data = build_text_data(config, tokenizer)  # before the model: a data problem is reported in seconds
    for note in data.notes:
        say(note, "warning")

    dtype = resolve_dtype(config.dtype, device)
    precision_name = next(name for name, value in DTYPES.items() if value == dtype)
    quantization = quantization_config(config.load_in_4bit, config.load_in_8bit, dtype, device)
    say(f"Loading base model {config.base_model} ({str(dtype).removeprefix('torch.')}"
        f"{', 4-bit' if config.load_in_4bit else ', 8-bit' if config.load_in_8bit else ''}) on {device}")
    model = load_model(source, dtype, quantization, config.trust_remote_code, device)
    if quantization is not None:  # casts norms to fp32 and readies inputs for gradients: quantized models only
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    targets = choose_targets(model, config.target_modules)
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for the user to do
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
        model = get_peft_model(model, LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, bias="none",
            target_modules=targets.names, fan_in_fan_out=targets.fan_in_fan_out, task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    say(f"LoRA on {', '.join(targets.names)}: {sum(p.numel() for p in trainable):,} trainable parameters")

    optimizer = build_optimizer(config.optimizer, [ParamGroup("lora", trainable, config.learning_rate)],
                                config.weight_decay, config.optimizer_args)
    accumulation = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(data.batches_per_epoch(config.batch_size) / accumulation)
    total_steps = config.max_train_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    lr_scheduler = build_lr_scheduler(config.scheduler, optimizer, total_steps, config.warmup_steps,
                                      config.scheduler_num_cycles, config.scheduler_power)
    wrapped = accelerator.prepare(model) if quantization is None else model
    wrapped.train()

    state = TrainingState({"model": model}, optimizer, lr_scheduler, None)
    checkpoints = Checkpoints(output_dir, config.output_name, config.save_total_limit, config.seed)
    progress, run = Progress(step=0, epoch=0, batch_in_epoch=0), RunRecord.start(config.output_name, config.base_model)
    if config.resume_from_checkpoint:
        path = resolve_resume_path(config.resume_from_checkpoint, output_dir, config.output_name)
        resumed = state.restore(path, run, say)
        progress, run, report.history = resumed.progress, resumed.run, resumed.history
        say(f"Resumed from {path} at step {progress.step}")

    settings = {**dataclasses.asdict(config), "template_used": template.name}
    meter = StepMeter(total_steps, progress.step)
    pad_id = tokenizer.pad_token_id
    report.start(progress.step, total_steps, progress.epoch + 1, epochs, output_dir,
                 f"{len(data.train)} training sequences, {len(data.val)} for eval")

    def save_state() -> None:
        if main:
            path = state.save(checkpoints, progress, run, report.history)
            emit(make_event("save", step=progress.step, path=str(path), message="checkpoint"))

    def save_final(best: dict | None = None) -> Path | None:
        if not main:
            return None
        path = save_adapter(accelerator.unwrap_model(wrapped), tokenizer, template,
                            {**settings, "steps_done": progress.step, **(best or {})}, output_dir, config.output_name,
                            run.run_id)
        emit(make_event("save", step=progress.step, path=str(path), message="adapter"))
        return path

    tracker = Tracker(lambda: evaluate(wrapped, data, config.batch_size, pad_id, device), report, state,
                      steps_per_epoch, config.keep_best, config.early_stop_patience, perplexity=True)
    early_stopped = False
    try:
        for epoch in range(progress.epoch, epochs):
            batches = epoch_batches(data.train, config.batch_size, config.seed, epoch, progress.batch_in_epoch, pad_id)
            for chunk in iter(lambda: list(itertools.islice(batches, accumulation)), []):
                loss = _optimizer_step(wrapped, chunk, optimizer, trainable, accelerator, config.max_grad_norm, device)
                check_finite_loss(loss, progress.step + 1, precision_name, config.learning_rate)
                progress.step += 1
                progress.batch_in_epoch += len(chunk)
                report.step(progress.step, total_steps, epoch + 1, epochs, loss, meter.update(progress.step, loss),
                            optimizer.param_groups)
                lr_scheduler.step()  # after the report: it shows the rate this step used
                stopping = bool(stop)  # a stop saves the state to resume from, and the adapter so far
                if stopping or (config.save_steps and progress.step % config.save_steps == 0):
                    save_state()
                if stopping:
                    report.stopped(progress.step, total_steps, path := save_final(), "adapter")
                    return path
                if progress.step >= total_steps:
                    break
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            report.epoch_done(progress.step, total_steps, epoch + 1, epochs, meter.loss_avg)
            if data.val:
                tracker.evaluate(progress.step, epoch + 1)
                if early_stopped := tracker.should_stop:
                    say(tracker.early_stop_message())
                    break
            if progress.step >= total_steps:
                break
        fields, best_text = tracker.done_fields(tracker.use_best(), early_stopped, "adapter")
        final = save_final(fields)
        if main:
            emit(make_event("done", step=progress.step, total=total_steps, path=str(final),
                            peak_vram_mb=peak_vram_mb(device), **fields,
                            message=f"Saved {final}. Load it with PeftModel.from_pretrained(model, \"{final}\")."
                                    f"{best_text}"))
        return final
    finally:
        report.close()


def _optimizer_step(model, chunk: list[dict[str, torch.Tensor]], optimizer, params, accelerator: Accelerator,
                    max_grad_norm: float, device: torch.device) -> float:
    """One optimizer step over the batches of `chunk` (gradient accumulation); the mean of their losses."""
    total = 0.0
    for batch in chunk:
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss / len(chunk)
        accelerator.backward(loss)
        total += loss.item()
    if max_grad_norm > 0:
        accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


@torch.no_grad()
def evaluate(model, data: TextData, batch_size: int, pad_id: int, device: torch.device) -> float:
    """Mean loss per learned token over the eval rows."""
    was_training = model.training
    model.eval()
    loss_sum, tokens = 0.0, 0
    for batch in epoch_batches(data.val, batch_size, 0, 0, 0, pad_id, shuffle=False):
        count = int((batch["labels"][:, 1:] != IGNORE).sum())
        loss_sum += model(**{k: v.to(device) for k, v in batch.items()}).loss.item() * count
        tokens += count
    model.train(was_training)
    return loss_sum / max(tokens, 1)


def out_of_memory_advice(config: TextConfig) -> UserError:
    steps = [f"lower batch_size (now {config.batch_size}) and raise gradient_accumulation_steps",
             f"lower cutoff_len (now {config.cutoff_len})"]
    if not config.gradient_checkpointing:
        steps.append("set gradient_checkpointing: true")
    if not (config.load_in_4bit or config.load_in_8bit):
        steps.append("set load_in_4bit: true (QLoRA)")
    return UserError(f"Out of GPU memory while training the text LoRA. Try to {', or '.join(steps)}. Close other "
                     "programs using the GPU. Checkpoints saved so far are kept (resume_from_checkpoint: latest).")
