"""The image LoRA training run, readable top to bottom.

config -> output folders and reporting -> data (+ caches) -> base model -> LoRA layers -> the
encoders the steps do not use released (encoders.py) -> optimizer -> resume -> loop (image_loop.py)
-> kohya file.

Frozen weights are cast to the training precision; LoRA weights and optimizer state stay
fp32. An optimizer step covers `gradient_accumulation_steps` batches (see step.py). Every
random choice comes from seeds: the data order from (seed, epoch), the noise from (seed,
process, step), so a resumed run continues exactly where it stopped. With several processes
(`accelerate launch`) each trains on its share of the batches; losses and stop requests are
agreed across them, and only the main process writes files and sends events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..adapters.spec import LoraSpec
from ..adapters.targets import TargetSet, select_targets
from ..config import TrainConfig
from ..core.collector import collector_paused
from ..core.errors import UserError
from ..core.events import Fanout, LogFileSink
from ..core.resume_folders import resolve_resume_path
from ..kohya.state import load_kohya_state_dict
from ..models.base_model import BaseModel
from ..models.load import load_base_model
from ..models.pretrained_lora import StateLoader
from .compile import CompiledWithFallback
from .encoders import place_model, release_encoders
from .faults import out_of_memory_message
from .image_data import ImageData, build_image_data, fill_caches
from .image_loop import ImageLoop, Schedule
from .lora_setup import LoraSetup, attach_lora
from .lora_writer import LoraWriter, lora_writer, save_sizes
from .noise import training_scheduler
from .optim import ParamGroup, build_lr_scheduler, build_optimizer
from .output import check_free_space, prepare_output_dir, remove_partial_saves
from .precision import Precision, resolve_precision
from .reporting import Reporter, Say
from .resume_state import Checkpoints, Progress, TrainingState
from .run_record import RunRecord
from .sampling import SampleSettings, generate_samples, sample_prompts
from .step import OptimizerStepper, StepRunner, enable_gradient_checkpointing
from .stop import StopRequest
from .validation import FIXED_POINTS, ImageValidation, Tracker


@dataclass
class Session:
    """This process's part of the run: its device and precision, the folders, where reports go."""

    accelerator: Accelerator
    output_dir: Path
    lora_dir: Path
    report: Reporter
    precision: Precision

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def open_session(config: TrainConfig, emit: Fanout) -> Session:
    """Folders checked, train.log added to the events (main process only; the others stay silent),
    partial saves of an interrupted run removed, the device and precision chosen, the seed set."""
    accelerator = Accelerator()
    main = accelerator.is_main_process
    output_dir = prepare_output_dir(config.output_dir)
    lora_dir = prepare_output_dir(config.lora_output_dir, "lora_output_dir") if config.lora_output_dir else output_dir
    if main:
        emit.add(LogFileSink(str(output_dir / "train.log")))
    report = Reporter(emit if main else Fanout(), output_dir if main else None, config.log_with == "tensorboard")
    if main:
        for folder in dict.fromkeys((output_dir, lora_dir)):
            if partial := remove_partial_saves(folder, config.output_name):
                report.say(f"Removed {len(partial)} partial save(s) an interrupted run left in {folder}: "
                           f"{', '.join(partial)}")
    if accelerator.device.type == "cuda":  # TF32 matmuls: the fp32 parts (LoRA, optimizer, losses) on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    precision = resolve_precision(config.mixed_precision, accelerator.device)
    set_seed(config.seed)
    return Session(accelerator, output_dir, lora_dir, report, precision)


def load_model(config: TrainConfig, session: Session) -> BaseModel:
    """The base model, frozen on the device in the training precision (a VAE its family keeps fp32, SDXL's,
    stays fp32: it overflows in fp16)."""
    say, precision, device = session.report.say, session.precision, session.device
    say(f"Loading base model {config.base_model}")
    base = load_base_model(config.base_model, config.vae, config.prediction_type)
    say(f"Base model: {base.sd_version}{' (v-prediction)' if base.v_prediction else ''}, training in "
        f"{precision.name if precision.name != 'no' else 'fp32'} on {device}")
    place_model(base, device, precision)
    return base


def add_lora(config: TrainConfig, base: BaseModel, session: Session, targets: TargetSet | None = None,
             load_state: StateLoader = load_kohya_state_dict) -> LoraSetup:
    """The configured LoRA on the base model (on `targets`, default: the UNet family's; `pretrained_lora` read
    with `load_state`), its disk needs checked."""
    spec = LoraSpec.from_settings(network_type=config.network_type, lora_rank=config.lora_rank,
                                  lora_alpha=config.lora_alpha, conv_dim=config.conv_dim,
                                  conv_alpha=config.conv_alpha, use_dora=config.use_dora)
    targets = targets or select_targets(base.unet, base.text_encoders, base.family.targets,
                                        train_unet=config.train_unet, train_text_encoder=config.train_text_encoder,
                                        unet_targets=config.unet_targets,
                                        text_encoder_targets=config.text_encoder_targets,
                                        network_type=config.network_type, target_modules=config.target_modules)
    lora = attach_lora(base, spec, targets, pretrained_lora=config.pretrained_lora, say=session.report.say,
                       load_state=load_state)
    if session.accelerator.is_main_process:
        param_count = sum(param.numel() for param in lora.params.all())
        check_free_space(save_sizes(param_count, config.save_precision, bool(config.save_steps),
                                    session.output_dir, session.lora_dir))
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(lora.trained)
    return lora


def release_unused_encoders(config: TrainConfig, data: ImageData, base: BaseModel, lora: LoraSetup, say: Say) -> None:
    """Free the VAE when every latent is cached, the text encoders when every caption's output is and none
    holds LoRA layers: the steps never use them, and samples load them again (encoders.py)."""
    trains_text = any(name.startswith("text_encoder") for name in lora.trained)
    released = release_encoders(base, vae=data.dataset.latents_cached,
                                text_encoders=data.dataset.text_cached and not trains_text)
    if released:
        say(f"Freed the {' and the '.join(released)} for the training steps: the caches hold all they need"
            + (" (samples load them again)." if config.sample_steps else "."))


def make_schedule(config: TrainConfig, data: ImageData) -> Schedule:
    accumulation = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(data.sampler.batches_per_shard() / accumulation)
    total_steps = config.max_train_steps or steps_per_epoch * config.epochs
    return Schedule(total_steps, math.ceil(total_steps / steps_per_epoch), accumulation, config.save_steps,
                    config.sample_every_n_steps, config.save_every_n_epochs, config.sample_every_n_epochs,
                    steps_per_epoch, config.val_every_n_steps)


def training_state(config: TrainConfig, lora: LoraSetup, schedule: Schedule, session: Session) -> TrainingState:
    """Optimizer (one parameter group per part, at its learning rate: 0 keeps that part as it starts) and LR
    schedule over the LoRA."""
    lrs = config.component_lrs
    optimizer = build_optimizer(config.optimizer, [
        ParamGroup("unet", lora.params.unet, lrs["unet"]),
        ParamGroup("text_encoder", [p for group in lora.params.text_encoders for p in group], lrs["text_encoder"])],
        config.weight_decay, config.optimizer_args)
    lr_scheduler = build_lr_scheduler(config.scheduler, optimizer, schedule.total_steps, config.warmup_steps,
                                      config.scheduler_num_cycles, config.scheduler_power)
    return TrainingState(lora.trained, optimizer, lr_scheduler, session.precision.scaler)


def sample_settings(config: TrainConfig, data: ImageData) -> SampleSettings:
    prompts = sample_prompts(config.sample_prompts, config.trigger_word, data.index.records[0].caption)
    return SampleSettings(prompts, config.sample_negative_prompt, config.sample_seed, config.sample_steps,
                          config.sample_guidance_scale, config.sample_resolution or config.resolution)


def build_loop(config: TrainConfig, session: Session, stop: StopRequest) -> ImageLoop:
    """Data (+ caches), base model, LoRA, optimizer and resumed progress, assembled into the loop; sends `start`."""
    report, accelerator = session.report, session.accelerator
    refuse_dit_settings(config)
    # The data before the model: a dataset problem is reported in a second.
    data = build_image_data(config, accelerator.num_processes, accelerator.process_index)
    for warning in data.warnings:
        report.say(warning, "warning")
    base = load_model(config, session)
    scheduler = training_scheduler(base.noise_scheduler, config.zero_terminal_snr)
    fill_caches(config, data, base, session.device, session.output_dir, report.say)
    lora = add_lora(config, base, session)
    release_unused_encoders(config, data, base, lora, report.say)
    schedule = make_schedule(config, data)
    state = training_state(config, lora, schedule, session)
    wrapped = prepare_trained(lora, accelerator)
    progress, run = resumed_progress(config, state, session, base.path)
    runner = StepRunner(config, base, scheduler, session.precision, session.device, wrapped, accelerator)
    if config.compile_unet and "unet" in wrapped:
        runner.unet = CompiledWithFallback(runner.unet, lambda text: report.say(text, "warning"))
    writer = lora_writer(config, base, lora.spec, data.index, session.lora_dir, run)
    return start_loop(config, session, stop, LoopParts(data, base, lora, schedule, state, progress, run, runner,
                                                       writer))


_DIT_ONLY = {"blocks_to_swap": 0, "cpu_offload_checkpointing": False}  # key -> its off value


def refuse_dit_settings(config: TrainConfig) -> None:
    """A UserError for the DiT engine's memory keys, which a UNet has nothing to apply to."""
    for key, off in _DIT_ONLY.items():
        if getattr(config, key) != off:
            raise UserError(f"{key} is a Flux setting: it moves a transformer's blocks or their activations, and "
                            f"Stable Diffusion models (a UNet) have none. Set {key}: {str(off).lower()}, or use "
                            "gradient_checkpointing and the low_vram preset to save memory.")


def prepare_trained(lora: LoraSetup, accelerator: Accelerator, placed: tuple[str, ...] = ()
                    ) -> dict[str, torch.nn.Module]:
    """The trained components as `accelerate` wraps them (DDP with several processes), in train mode; those named
    in `placed` are left where they are (not moved to the device: the DiT engine's block swap placed them)."""
    wrapped = {name: accelerator.prepare(module, device_placement=[name not in placed])
               for name, module in lora.trained.items()}
    for module in lora.trained.values():
        module.train()
    return wrapped


def resumed_progress(config: TrainConfig, state: TrainingState, session: Session, base_model: Path
                     ) -> tuple[Progress, RunRecord]:
    """Where the run starts and whose run it is: step 0 of a new run, or the `resume_from_checkpoint` state
    restored into `state` once it is checked to be this job's (its loss history back in the reporter)."""
    progress, run = Progress(step=0, epoch=0, batch_in_epoch=0), RunRecord.start(config.output_name, base_model)
    if not config.resume_from_checkpoint:
        return progress, run
    report = session.report
    path = resolve_resume_path(config.resume_from_checkpoint, session.output_dir, config.output_name)
    resumed = state.restore(path, run, report.say)
    report.history = resumed.history
    report.say(f"Resumed from {path} at step {resumed.progress.step}")
    return resumed.progress, resumed.run


@dataclass
class LoopParts:
    """What an engine builds for the image loop: its data, model, LoRA, schedule, state, step and writer."""

    data: ImageData
    base: BaseModel
    lora: LoraSetup
    schedule: Schedule
    state: TrainingState
    progress: Progress
    record: RunRecord  # whose run it is (new, or the resumed one's)
    runner: OptimizerStepper
    writer: LoraWriter
    generate: Callable[..., list] = generate_samples  # (base, samples, device, autocast) -> images


def start_loop(config: TrainConfig, session: Session, stop: StopRequest, parts: LoopParts) -> ImageLoop:
    """The image loop over `parts`; sends `start`."""
    report, data = session.report, parts.data
    report.start(parts.progress.step, parts.schedule.total_steps, parts.progress.epoch + 1, parts.schedule.epochs,
                 session.output_dir, f"{data.index.num_images} images, {data.index.num_train_images} per epoch, "
                                     f"{parts.lora.module_count} LoRA modules")
    return ImageLoop(
        schedule=parts.schedule, data=data, state=parts.state, params=parts.lora.params.all(),
        progress=parts.progress, runner=parts.runner,
        checkpoints=Checkpoints(session.output_dir, config.output_name, config.save_total_limit, config.seed),
        record=parts.record, writer=parts.writer, samples=sample_settings(config, data), base=parts.base, precision=session.precision,
        accelerator=session.accelerator, report=report, stop=stop, learning_rate=config.learning_rate,
        preferred_weight=config.preferred_weight, generate=parts.generate,
        validation=image_validation(config, session, parts))


def image_validation(config: TrainConfig, session: Session, parts: LoopParts) -> Tracker | None:
    """The validation loss over the held-out images (none without val_split / val_data_dir)."""
    held_out = parts.data.validation
    if held_out is None:
        return None
    when = f"every {config.val_every_n_steps} steps" if config.val_every_n_steps else "after every epoch"
    session.report.say(f"Validation loss {when}: {len(held_out)} images, each at {FIXED_POINTS} fixed noise levels")
    compute = ImageValidation(held_out, parts.runner, parts.lora.trained, config.seed)
    return Tracker(compute, session.report, parts.state, parts.schedule.steps_per_epoch, config.keep_best,
                   config.early_stop_patience)


def train_image_lora(config: TrainConfig, emit: Fanout, stop: StopRequest,
                     build: Callable[[TrainConfig, Session, StopRequest], ImageLoop] = build_loop) -> Path | None:
    """Train (the loop from `build`: the UNet engine's by default); return the saved LoRA's path (also after a
    stop request), or raise UserError."""
    session = open_session(config, emit)
    try:
        with collector_paused():  # the start builds millions of long-lived objects: see core/collector.py
            loop = build(config, session, stop)
        try:
            return loop.run()
        except torch.cuda.OutOfMemoryError:
            raise out_of_memory_message(loop.progress.step, config.resolution, config.batch_size) from None
    finally:
        session.report.close()
