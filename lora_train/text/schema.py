"""The keys of a text-generation config (`task_type: text-generation`): the shared ones and the text ones.

Keys that mean the same as on the image side (`lora_rank`, `learning_rate`, `optimizer`, `save_steps`,
...) take their type, range, choices and help from the image schema, so the two cannot drift; only
their default or help is changed where text training differs. The same loader
(`lora_train.config.load.build_config`) validates both. Torch-free.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Optional

from ..config.schema import TrainConfig, opt
from ..core.errors import UserError
from ..core.naming import NAME_ADVICE, output_name_problem

GROUP = "Text generation"
TEMPLATES = ("auto", "alpaca", "chatml", "vicuna", "plain")
_IMAGE = {spec.name: spec for spec in fields(TrainConfig)}


def shared(name: str, default: Any = MISSING, help: str | None = None):
    """The image schema's field `name`, in the text group, with an optional other default or help."""
    spec = _IMAGE[name]
    meta = dict(spec.metadata)
    meta["group"] = GROUP
    if help is not None:
        meta["help"] = help
    if default is MISSING and spec.default_factory is not MISSING:
        return opt(None, meta["help"], GROUP, choices=meta["choices"], min=meta["min"], max=meta["max"],
                   path=meta["path"], default_factory=spec.default_factory)
    return opt(spec.default if default is MISSING else default, meta["help"], GROUP, choices=meta["choices"],
               min=meta["min"], max=meta["max"], path=meta["path"])


@dataclass
class TextConfig:
    task_type: str = shared("task_type", "text-generation")
    base_model: Optional[str] = opt(None, "A Hugging Face model folder (with config.json), a .gguf file "
                                    "(dequantised for training), or a hub id such as Qwen/Qwen2.5-0.5B when this "
                                    "machine can download.", GROUP)
    metadata_path: Optional[str] = shared("metadata_path", help="The training data: a .jsonl / .json file of alpaca "
                                          "rows (instruction, input, output), chat rows ({messages: [{role, "
                                          "content}]}) or ShareGPT rows ({conversations: [{from, value}]}); or a "
                                          ".txt file of raw text.")
    train_data_dir: Optional[str] = shared("train_data_dir", help="A folder of .jsonl / .json / .txt files, read as "
                                           "metadata_path is (instead of one file).")
    template: str = opt("auto", "Prompt format. auto: the model's own chat template, else alpaca. A name forces "
                        "that format (saved with the adapter so that inference uses the same one).", GROUP,
                        choices=TEMPLATES)
    train_on_inputs: bool = opt(False, "Also learn the prompt tokens (default: the loss is on the responses only).",
                                GROUP)
    cutoff_len: int = opt(1024, "Longest token sequence; longer rows are cut (and counted in the log).", GROUP,
                          min=8, max=131072)
    text_overlap: int = opt(128, "For .txt data: tokens shared by consecutive cutoff_len windows.", GROUP, min=0,
                            max=131072)
    packing: bool = opt(False, "Pack several short rows into one cutoff_len sequence (faster on short data).",
                        GROUP)
    val_size: float = opt(0.0, "Rows held out for an eval loss and perplexity each epoch: a fraction (0.1) or a "
                          "count (20). 0: none.", GROUP, min=0.0, max=1e6)
    keep_best: bool = shared("keep_best", help="Save the adapter of the lowest eval loss (needs val_size) instead "
                             "of the last one.")
    early_stop_patience: int = shared("early_stop_patience", help="Stop the run when the eval loss has not improved "
                                      "for this many epochs, and save (needs val_size; 0: never stop early).")
    dtype: str = opt("auto", "Precision of the frozen model weights. auto: bf16 on GPUs that support it, else fp16 "
                     "on GPU, fp32 on CPU. LoRA weights and optimizer state stay fp32.", GROUP,
                     choices=("auto", "fp32", "fp16", "bf16"))
    load_in_4bit: bool = opt(False, "QLoRA: load the frozen model in 4-bit NF4 (bitsandbytes, NVIDIA GPU only).",
                             GROUP)
    load_in_8bit: bool = opt(False, "Load the frozen model in 8-bit (bitsandbytes, NVIDIA GPU only).", GROUP)
    trust_remote_code: bool = opt(False, "Allow a model folder to run its own Python code (only for models you "
                                  "trust; off by default).", GROUP)
    lora_rank: int = shared("lora_rank", 8)
    lora_alpha: float = shared("lora_alpha", 16.0)
    lora_dropout: float = opt(0.05, "Dropout on the LoRA input during training.", GROUP, min=0.0, max=0.9)
    target_modules: Optional[list[str]] = shared("target_modules", help="Layer names to adapt, e.g. [q_proj, v_proj], "
                                                 "or [all-linear]. Empty: every linear layer of the model except the "
                                                 "output head (see `llm --list-modules MODEL`). A name that matches "
                                                 "no layer stops the run.")
    epochs: int = shared("epochs", 3)
    max_train_steps: Optional[int] = shared("max_train_steps")
    batch_size: int = shared("batch_size", 4, help="Sequences per step (lower it if memory runs out).")
    gradient_accumulation_steps: int = shared("gradient_accumulation_steps")
    learning_rate: float = shared("learning_rate", 2e-4, help="Learning rate (1e-4 to 3e-4 is usual for LoRA).")
    optimizer: str = shared("optimizer", "adamw")
    weight_decay: float = shared("weight_decay", 0.0)
    optimizer_args: dict[str, Any] = shared("optimizer_args")
    scheduler: str = shared("scheduler")
    warmup_steps: int = shared("warmup_steps")
    scheduler_num_cycles: int = shared("scheduler_num_cycles")
    scheduler_power: float = shared("scheduler_power")
    max_grad_norm: float = shared("max_grad_norm")
    gradient_checkpointing: bool = shared("gradient_checkpointing")
    seed: int = shared("seed")
    output_dir: str = shared("output_dir", help="Where the adapter folder, checkpoints, logs and train.log go.")
    output_name: str = shared("output_name", "my_llm_lora", help="Name of the adapter folder in output_dir; an "
                              "existing one is never overwritten, a new version gets `_v2`, `_v3`...")
    save_steps: int = shared("save_steps")
    save_total_limit: int = shared("save_total_limit")
    resume_from_checkpoint: Optional[str] = shared("resume_from_checkpoint")
    log_with: str = shared("log_with")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]



def check_text_config(config: TextConfig) -> None:
    """Rules that involve more than one key."""
    if config.task_type != "text-generation":
        raise UserError(f"task_type is {config.task_type!r}, but these are text-generation settings.")
    if not config.base_model:
        raise UserError("'base_model' is required for task_type text-generation: a Hugging Face model folder, a "
                        ".gguf file or a hub id. Set it in the config file or with --set base_model=...")
    if not (config.metadata_path or config.train_data_dir):
        raise UserError("Text training needs data: set 'metadata_path' (a .jsonl / .json / .txt file) or "
                        "'train_data_dir' (a folder of them).")
    if config.load_in_4bit and config.load_in_8bit:
        raise UserError("'load_in_4bit' and 'load_in_8bit' are both true: choose one.")
    if config.val_size >= 1 and not float(config.val_size).is_integer():
        raise UserError(f"'val_size' is {config.val_size}: use a fraction below 1 (0.1) or a whole count (20).")
    for key in ("keep_best", "early_stop_patience"):
        if getattr(config, key) and not config.val_size:
            raise UserError(f"'{key}' needs an eval loss: set val_size (rows held out for it, e.g. 0.1).")
    problem = output_name_problem(config.output_name)
    if problem:
        raise UserError(f"'output_name' {config.output_name!r} cannot be used as a folder name: {problem}. "
                        f"{NAME_ADVICE}")
