"""Every config key, its type, default, allowed values and help text, in one dataclass.

Keys follow the lora-scripts / kohya names users already know (`train_data_dir`,
`lora_rank`, `learning_rate`, ...). The YAML file is flat: one key per line. The help texts
here generate `docs/config.md` and `python -m lora_train config --help`, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

GROUPS = ["Model", "Data", "Network", "Training", "Validation", "Memory and speed", "Saving", "Samples", "Flux"]


def opt(default: Any, help: str, group: str, *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, path: str | None = None, default_factory=None):
    """A config field. `path` is "file", "dir" or "file_or_dir" when the value must exist."""
    meta = {"help": help, "group": group, "choices": choices, "min": min, "max": max, "path": path}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial")
OPTIMIZERS = ("adamw8bit", "adamw", "lion", "prodigy", "adafactor")
UNET_TARGETS = ("attention", "feed_forward", "projection")
TEXT_ENCODER_TARGETS = ("attention", "mlp")
FLUX_TARGETS = ("attention", "mlp", "modulation")
TIMESTEP_SAMPLING = ("sigmoid", "shift", "flux_shift", "logit_normal", "uniform")
WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "cosmap")


@dataclass
class TrainConfig:
    # --- Model -------------------------------------------------------------------------
    task_type: str = opt("image", "What to train: `image` (a Stable Diffusion LoRA; `image-to-image` is the same) "
                         "or `text-generation` (a LoRA on a causal language model).", "Model",
                         choices=("image", "image-to-image", "text-generation"))
    base_model: Optional[str] = opt(None, "The base model: a single-file checkpoint (.safetensors / .ckpt, SD1, SD2 "
                                    "or SDXL, as in the WebUI's models/Stable-diffusion; Flux.1 / Chroma: the "
                                    "transformer or an all-in-one file, see the Flux keys) or a diffusers folder.",
                                    "Model", path="file_or_dir")
    vae: Optional[str] = opt(None, "A separate VAE file (.safetensors / .pt) to use instead of the checkpoint's own.",
                             "Model", path="file")
    prediction_type: str = opt("auto", "Noise target of the base model. `auto` reads it from the checkpoint or the "
                               "`.yaml` beside it (SD 2.x 768 models use v_prediction).", "Model",
                               choices=("auto", "epsilon", "v_prediction"))
    # --- Data --------------------------------------------------------------------------
    train_data_dir: Optional[str] = opt(None, "Folder of training images with same-name .txt captions. Subfolders "
                                        "named `N_name` (kohya style) repeat their images N times per epoch.", "Data",
                                        path="dir")
    metadata_path: Optional[str] = opt(None, "A metadata.csv (columns: filename,prompt) giving the captions instead of "
                                       ".txt files.", "Data", path="file")
    caption_extension: str = opt(".txt", "Extension of the caption file beside each image.", "Data")
    trigger_word: str = opt("", "Words put in front of every caption (and used as the caption of images that have "
                            "none); saved as the LoRA's activation text.", "Data")
    repeats: int = opt(1, "How many times each image is seen per epoch (an `N_name` folder sets its own).", "Data",
                       min=1, max=10000)
    shuffle_caption: bool = opt(False, "Shuffle the comma-separated tags of each caption every time it is used.",
                                "Data")
    keep_tokens: int = opt(0, "When shuffling, keep this many leading tags in place (the trigger word counts as one).",
                           "Data", min=0, max=1000)
    caption_dropout_rate: float = opt(0.0, "Chance of training an image with an empty caption.", "Data", min=0.0,
                                      max=1.0)
    resolution: int = opt(512, "Training resolution in pixels (SDXL: 1024). Images are resized and cropped to it, "
                          "or bucketed by aspect ratio.", "Data", min=64, max=4096)
    crop: str = opt("center", "How an image is cropped to its training size.", "Data", choices=("center", "random"))
    flip_aug: bool = opt(False, "Randomly mirror images left-right (not for asymmetric characters or text).", "Data")
    enable_bucket: bool = opt(True, "Group images by aspect ratio instead of cropping them all square.", "Data")
    min_bucket_reso: int = opt(256, "Smallest side of a bucket, in pixels.", "Data", min=16, max=4096)
    max_bucket_reso: int = opt(1024, "Largest side of a bucket, in pixels.", "Data", min=16, max=8192)
    bucket_reso_steps: int = opt(64, "Bucket sides are multiples of this.", "Data", min=8, max=256)
    bucket_no_upscale: bool = opt(False, "Never enlarge an image smaller than the resolution; give it a smaller "
                                  "bucket instead.", "Data")
    # --- Network -----------------------------------------------------------------------
    network_type: str = opt("lora", "`lora`: attention/linear layers; `locon`: also the 3x3 convolutions of the "
                            "UNet's ResNet blocks (kohya's LoCon).", "Network", choices=("lora", "locon"))
    lora_rank: int = opt(16, "LoRA rank (network_dim): 4-32 is usual; higher learns more and makes bigger files.",
                         "Network", min=1, max=1024)
    lora_alpha: float = opt(8.0, "LoRA alpha (network_alpha); the update is scaled by alpha / rank. Usual: rank or "
                            "rank / 2.", "Network", min=0.0, max=100000.0)
    conv_dim: int = opt(8, "Rank of the convolution LoRA when network_type is locon.", "Network", min=1, max=1024)
    conv_alpha: float = opt(4.0, "Alpha of the convolution LoRA when network_type is locon.", "Network", min=0.0,
                            max=100000.0)
    use_dora: bool = opt(False, "Weight-decomposed LoRA (DoRA): a learned magnitude per output channel.", "Network")
    train_unet: bool = opt(True, "Train a LoRA on the UNet.", "Network")
    train_text_encoder: bool = opt(True, "Train a LoRA on the text encoder(s) too.", "Network")
    unet_targets: list[str] = opt(None, "UNet layer kinds to adapt: attention (q/k/v/out), feed_forward (the MLP), "
                                  "projection (proj_in/proj_out).", "Network", choices=UNET_TARGETS,
                                  default_factory=lambda: list(UNET_TARGETS))
    text_encoder_targets: list[str] = opt(None, "Text-encoder layer kinds to adapt: attention (q/k/v/out_proj), mlp "
                                          "(fc1/fc2).", "Network", choices=TEXT_ENCODER_TARGETS,
                                          default_factory=lambda: list(TEXT_ENCODER_TARGETS))
    target_modules: Optional[list[str]] = opt(None, "Exact module names to adapt (overrides unet_targets and "
                                              "text_encoder_targets); a name that matches nothing is an error.",
                                              "Network")
    clip_skip: int = opt(1, "Use the output of the N-th last text-encoder layer (2 for most anime SD1 models; "
                         "SDXL always uses its own setting).", "Network", min=1, max=12)
    pretrained_lora: Optional[str] = opt(None, "Continue training from an existing kohya-format LoRA file.",
                                         "Network", path="file")
    # --- Training ----------------------------------------------------------------------
    epochs: int = opt(10, "Passes over the dataset (5-20 is usual).", "Training", min=1, max=100000)
    max_train_steps: Optional[int] = opt(None, "Stop after this many optimizer steps (overrides epochs).", "Training",
                                         min=1, max=10000000)
    batch_size: int = opt(2, "Images per step (2-8 is usual; lower it if memory runs out).", "Training", min=1,
                          max=1024)
    gradient_accumulation_steps: int = opt(1, "Sum gradients over this many batches per optimizer step.",
                                           "Training", min=1, max=1024)
    learning_rate: float = opt(1e-4, "Learning rate (1e-4 to 3e-4 is usual for the UNet).", "Training", min=0.0,
                               max=1.0)
    unet_lr: Optional[float] = opt(None, "UNet learning rate (default: learning_rate; 0 keeps the UNet's LoRA as it "
                                   "starts).", "Training", min=0.0, max=1.0)
    text_encoder_lr: Optional[float] = opt(5e-5, "Text-encoder learning rate (1e-5 to 5e-5 is usual; default: "
                                           "learning_rate when empty; 0 keeps the text encoder's LoRA as it starts).",
                                           "Training", min=0.0, max=1.0)
    optimizer: str = opt("adamw8bit", "Optimizer. adamw8bit keeps its state in 8 bits (bitsandbytes) where that saves "
                         "memory, else runs torch's fused AdamW (the same update); prodigy sets its own step "
                         "size (use learning_rate 1.0).", "Training", choices=OPTIMIZERS)
    weight_decay: float = opt(0.01, "Weight decay of the optimizer.", "Training", min=0.0, max=10.0)
    optimizer_args: dict[str, Any] = opt(None, "Extra keyword arguments for the optimizer, e.g. {betas: [0.9, 0.99]}.",
                                         "Training", default_factory=dict)
    scheduler: str = opt("cosine", "Learning-rate schedule.", "Training", choices=SCHEDULERS)
    warmup_steps: int = opt(0, "Steps of linear warm-up at the start.", "Training", min=0, max=10000000)
    scheduler_num_cycles: int = opt(1, "Restarts for cosine_with_restarts.", "Training", min=1, max=1000)
    scheduler_power: float = opt(1.0, "Power of the polynomial schedule.", "Training", min=0.0, max=100.0)
    max_grad_norm: float = opt(1.0, "Clip gradients to this norm (0 turns clipping off).", "Training", min=0.0,
                               max=1e6)
    noise_offset: float = opt(0.0, "Noise offset (0.05-0.1 helps very dark / bright images).", "Training", min=0.0,
                              max=1.0)
    min_snr_gamma: Optional[float] = opt(None, "Min-SNR loss weighting gamma (5 is usual); empty turns it off.",
                                         "Training", min=0.1, max=100.0)
    zero_terminal_snr: bool = opt(False, "Rescale the noise schedule to zero terminal SNR (for v-prediction models).",
                                  "Training")
    seed: int = opt(42, "Random seed: the same seed, data and settings give the same run.", "Training", min=0,
                    max=2**32 - 1)
    # --- Validation --------------------------------------------------------------------
    val_split: float = opt(0.0, "Images held out of training for a validation loss: a fraction (0.1) or a count (5). "
                           "Which ones is chosen by seed, so a resumed run holds out the same. 0: none.",
                           "Validation", min=0.0, max=1e6)
    val_data_dir: Optional[str] = opt(None, "A separate folder of validation images with their captions (the same "
                                      "layout as train_data_dir), instead of val_split.", "Validation", path="dir")
    val_every_n_steps: int = opt(0, "Compute the validation loss every N steps (0: after every epoch).", "Validation",
                                 min=0, max=10000000)
    keep_best: bool = opt(False, "Save the weights of the lowest validation loss as the final LoRA (the epoch files "
                          "stay); needs val_split or val_data_dir.", "Validation")
    early_stop_patience: int = opt(0, "Stop the run when the validation loss has not improved for this many "
                                   "evaluations, and save (0: never stop early).", "Validation", min=0, max=100000)
    # --- Memory and speed --------------------------------------------------------------
    mixed_precision: str = opt("auto", "Precision of the frozen weights: bf16, fp16 (with a loss scaler) or no "
                               "(fp32). `auto`: bf16 on GPUs that support it, else fp16 on GPU, no on CPU. LoRA "
                               "weights and optimizer state stay fp32.", "Memory and speed",
                               choices=("auto", "no", "fp16", "bf16"))
    gradient_checkpointing: bool = opt(False, "Recompute activations in the backward pass: much less memory, about "
                                       "20-30% slower.", "Memory and speed")
    compile_unet: bool = opt(False, "Compile the UNet with torch.compile: faster steps on GPUs after a slow first "
                             "step (and one per new bucket size); where it cannot compile, training continues "
                             "without it and says why.", "Memory and speed")
    cache_latents: bool = opt(True, "Encode every image with the VAE once, before training (no random crop or flip "
                              "then).", "Memory and speed")
    cache_latents_to_disk: bool = opt(False, "Keep the latent cache on disk beside the images, reused by later runs.",
                                      "Memory and speed")
    cache_text_encoder_outputs: bool = opt(True, "Encode every caption once, before training, whenever that cannot "
                                           "change the result: the text encoder is not trained and captions are "
                                           "not shuffled or dropped (otherwise they are encoded every step).",
                                           "Memory and speed")
    cache_text_encoder_outputs_to_disk: bool = opt(False, "Keep the text-encoder output cache on disk beside the "
                                                   "images, reused by later runs (implies "
                                                   "cache_text_encoder_outputs).", "Memory and speed")
    max_data_loader_n_workers: int = opt(0, "Worker processes loading images (0: in the main process).",
                                         "Memory and speed", min=0, max=64)
    # --- Saving ------------------------------------------------------------------------
    output_dir: str = opt("output", "Where the LoRA, checkpoints, samples and logs go.", "Saving")
    lora_output_dir: Optional[str] = opt(None, "Folder for the finished LoRA and its epoch saves, sidecars and "
                                         "previews, e.g. the WebUI's models/Lora (default: output_dir). "
                                         "Checkpoints, samples and logs stay in output_dir.", "Saving")
    output_name: str = opt("my_lora", "File name of the LoRA (without extension); an existing file is never "
                           "overwritten, a new version gets `_v2`, `_v3`... (a resumed run replaces only the "
                           "partial LoRA it saved itself).", "Saving")
    save_every_n_epochs: int = opt(0, "Also save the LoRA every N epochs as `name-00000N.safetensors` (0: off).",
                                   "Saving", min=0, max=100000)
    save_steps: int = opt(0, "Save the full training state every N steps as "
                          "`output_dir/checkpoint-<output_name>-<step>/` (0: off).", "Saving", min=0, max=10000000)
    save_total_limit: int = opt(3, "Keep only this many of the job's checkpoint folders (0: keep all).", "Saving",
                                min=0, max=100000)
    resume_from_checkpoint: Optional[str] = opt(None, "A checkpoint folder of this job (same output_name and "
                                                "base_model) to continue exactly from, or `latest` for the job's "
                                                "newest in output_dir.", "Saving")
    save_precision: str = opt("fp16", "dtype of the saved LoRA tensors.", "Saving", choices=("fp16", "bf16", "fp32"))
    preferred_weight: float = opt(0.8, "The weight written into the sidecar (the WebUI's `<lora:name:weight>`).",
                                  "Saving", min=-10.0, max=10.0)
    training_comment: str = opt("", "Free text stored in the file's metadata (ss_training_comment).", "Saving")
    log_with: str = opt("tensorboard", "Where metrics go besides train.log.", "Saving", choices=("tensorboard", "none"))
    # --- Samples -----------------------------------------------------------------------
    sample_prompts: list[str] = opt(None, "Prompts rendered during training (default: the trigger word).", "Samples",
                                    default_factory=list)
    sample_negative_prompt: str = opt("", "Negative prompt for the samples.", "Samples")
    sample_every_n_epochs: int = opt(0, "Render the sample prompts every N epochs (0: only at the end).", "Samples",
                                     min=0, max=100000)
    sample_every_n_steps: int = opt(0, "Render the sample prompts every N steps (0: off).", "Samples", min=0,
                                    max=10000000)
    sample_steps: int = opt(20, "Denoising steps per sample image; 0 renders no samples at all (no preview at the "
                            "end either: a faster finish, and the WebUI card gets no preview image).", "Samples",
                            min=0, max=200)
    sample_guidance_scale: float = opt(7.0, "Classifier-free guidance scale of the samples.", "Samples", min=0.0,
                                       max=50.0)
    sample_seed: int = opt(1234, "Seed of the sample images (fixed, so samples are comparable).", "Samples", min=0,
                           max=2**32 - 1)
    sample_resolution: Optional[int] = opt(None, "Size of the sample images (default: resolution).", "Samples", min=64,
                                           max=4096)

    # --- Flux (the DiT engine: base_model a Flux.1 / Chroma file or folder) ------------------------
    ae: Optional[str] = opt(None, "Flux's autoencoder file (ae.safetensors) for a base_model that is a transformer "
                            "only; empty: looked for in the file, beside it, and in the WebUI's models/VAE.", "Flux",
                            path="file")
    clip_l: Optional[str] = opt(None, "Flux's CLIP-L file (clip_l.safetensors); empty: looked for in the file, beside "
                                "it, and in the WebUI's models/text_encoder (Chroma has no CLIP-L).", "Flux",
                                path="file")
    t5xxl: Optional[str] = opt(None, "Flux's T5-XXL file (t5xxl_fp16.safetensors or fp8_e4m3fn); empty: looked for "
                               "as clip_l is.", "Flux", path="file")
    t5xxl_tokenizer: Optional[str] = opt(None, "Folder with T5's tokenizer.json, which single files lack; empty: a "
                                         "t5xxl_tokenizer folder beside the T5 file, or the copy Forge ships.", "Flux",
                                         path="dir")
    fp8_base: bool = opt(False, "Keep the transformer's linear weights in fp8 (an fp8 file as it is, a wider one cast "
                         "to e4m3fn), each layer upcast for its own matmul: half the transformer's memory of bf16.",
                         "Flux")
    blocks_to_swap: int = opt(0, "Keep this many of the transformer's blocks in CPU memory, each copied to the GPU "
                              "only while it runs (kohya's count: N // 2 double and (N - N // 2) * 2 single "
                              "blocks; at most 35 for Flux.1): less VRAM, slower steps (0: off).", "Flux", min=0,
                              max=1000)
    cpu_offload_checkpointing: bool = opt(False, "With gradient_checkpointing, keep the checkpointed activations "
                                          "(each block's inputs) in CPU memory: up to about 1 GB less VRAM at "
                                          "1024 px, about 15% slower (kohya's figures).", "Flux")
    flux_targets: list[str] = opt(None, "Flux layer kinds to adapt in the double and single blocks: attention "
                                  "(q/k/v/out, single blocks' linear2), mlp, modulation (kohya adapts all three).",
                                  "Flux", choices=FLUX_TARGETS, default_factory=lambda: ["attention", "mlp"])
    train_double_block_indices: str = opt("all", "Double blocks that get a LoRA: all, none, or indices and ranges "
                                          "such as 0-3,10 (kohya's network_args of the same name).", "Flux")
    train_single_block_indices: str = opt("all", "Single blocks that get a LoRA, written as "
                                          "train_double_block_indices.", "Flux")
    timestep_sampling: str = opt("sigmoid", "How sigma (the noise level) is drawn: sigmoid of a normal, shift "
                                 "(that, shifted by discrete_flow_shift), flux_shift (shifted by image size as Flux "
                                 "samples), logit_normal (logit_mean, logit_std), uniform.", "Flux",
                                 choices=TIMESTEP_SAMPLING)
    sigmoid_scale: float = opt(1.0, "Scale of the normal draw for sigmoid, shift and flux_shift (larger: more "
                               "uniform).", "Flux", min=0.001, max=100.0)
    discrete_flow_shift: float = opt(3.0, "The shift of timestep_sampling shift (kohya's default 3.0; 1.0: none).",
                                     "Flux", min=0.01, max=100.0)
    logit_mean: float = opt(0.0, "Mean of timestep_sampling logit_normal.", "Flux", min=-10.0, max=10.0)
    logit_std: float = opt(1.0, "Standard deviation of timestep_sampling logit_normal.", "Flux", min=0.001, max=10.0)
    weighting_scheme: str = opt("none", "Loss weight per sample by its sigma: none, sigma_sqrt (1/sigma^2), cosmap.",
                                "Flux", choices=WEIGHTING_SCHEMES)
    guidance_scale: float = opt(1.0, "The guidance value Flux.1-dev's guidance embedding is given in training "
                                "(kohya's guide: 1.0); schnell and Chroma have none.", "Flux", min=0.0, max=100.0)
    model_prediction_type: str = opt("raw", "How the prediction is compared with the velocity target: raw (as "
                                     "is).", "Flux", choices=("raw",))
    t5xxl_max_token_length: Optional[int] = opt(None, "T5 tokens per caption (empty: 512, 256 for schnell).",
                                                "Flux", min=1, max=512)
    apply_t5_attn_mask: Optional[bool] = opt(None, "Mask T5's padding in T5 and in the transformer's attention "
                                             "(empty: on for Chroma, which needs it, off for Flux.1).", "Flux")

    @property
    def component_lrs(self) -> dict[str, float]:
        """The learning rate of the UNet's and of the text encoders' LoRA: its own key, else learning_rate.
        An explicit 0 is kept: that part's LoRA stays as it starts (fresh, or as `pretrained_lora` has it)."""
        return {"unet": self.learning_rate if self.unet_lr is None else self.unet_lr,
                "text_encoder": self.learning_rate if self.text_encoder_lr is None else self.text_encoder_lr}

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]
