"""The command line each tool gets for the same work, and the differences that remain.

Every run is `python benchmarks/probe.py OUT.json <tool> ...` (see probe.py). The references
run from checkouts named by environment variables, never copied here:

    LORA_BENCH_DIFFUSERS   a huggingface/diffusers checkout (examples/text_to_image/...)
    LORA_BENCH_KOHYA       a kohya-ss/sd-scripts checkout
    LORA_BENCH_BASELINE    another checkout of this project (e.g. the last release) run beside this one
    LORA_BENCH_DIFFUSERS_PYTHONPATH / LORA_BENCH_KOHYA_PYTHONPATH
                           folders put in front of PYTHONPATH for that tool only (the extra
                           packages it needs: `datasets` and torchvision for diffusers' example;
                           kohya's pinned transformers/diffusers), so the project's venv stays as it is
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workload import ROOT, Workload

sys.path.insert(0, str(ROOT))
from lora_train.config.presets import PRESETS  # noqa: E402  (torch-free)

PROBE = ROOT / "benchmarks" / "probe.py"


@dataclass
class Settings:
    """What every tool is asked to do."""

    steps: int = 60
    batch_size: int = 2
    rank: int = 4
    learning_rate: float = 1e-4
    optimizer: str = "adamw8bit"  # adamw8bit | adamw
    precision: str = "no"  # no | fp16 | bf16
    attention_only: bool = True  # diffusers' example adapts to_q/k/v/out only; kohya adapts every transformer Linear
    low_vram: bool = False  # our low_vram preset (batch 1 x 2 accumulated, checkpointing, rank 16) on both sides
    train_text_encoder: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42


@dataclass
class Run:
    label: str
    tool: str  # ours | diffusers | kohya
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT


def ours(label: str, work: Workload, s: Settings, out: Path, root: Path = ROOT, **overrides) -> Run:
    """Ours through the CLI, from the checkout `root` (another one: a baseline); `overrides` are config keys
    (e.g. cache_latents=False)."""
    values = {"base_model": str(work.model), "train_data_dir": str(work.images), "output_dir": str(out),
              "resolution": work.resolution, "batch_size": s.batch_size, "lora_rank": s.rank, "lora_alpha": s.rank,
              "train_text_encoder": s.train_text_encoder, "optimizer": s.optimizer, "learning_rate": s.learning_rate,
              "scheduler": "constant", "max_train_steps": s.steps, "mixed_precision": s.precision,
              "enable_bucket": False, "seed": s.seed, "sample_steps": 0, "log_with": "tensorboard"}
    if s.attention_only:
        values["unet_targets"] = ["attention"]
    if s.gradient_checkpointing:
        values["gradient_checkpointing"] = True
    if s.low_vram:  # the preset, with its own batch, rank and alpha
        values = {**{k: v for k, v in values.items() if k not in ("batch_size", "lora_rank", "lora_alpha")},
                  **{k: v for k, v in PRESETS["low_vram"].items() if k != "mixed_precision"}}
    if s.train_text_encoder:  # after the preset, which freezes them
        values.update(train_text_encoder=True, cache_text_encoder_outputs=False)
    argv = ["-m", "lora_train", "train"]
    for key, value in {**values, **overrides}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return Run(label, "ours", argv, {"LORA_TRAIN_LOCK_DIR": str(out.parent), "PYTHONPATH": str(root)})


def diffusers_example(label: str, work: Workload, s: Settings, out: Path) -> Run | None:
    repo = os.environ.get("LORA_BENCH_DIFFUSERS")
    if not repo:
        return None
    name = "train_text_to_image_lora_sdxl.py" if work.arch == "sdxl" else "train_text_to_image_lora.py"
    argv = [str(Path(repo) / "examples" / "text_to_image" / name),
            "--pretrained_model_name_or_path", str(work.diffusers_model), "--train_data_dir", str(work.imagefolder),
            "--caption_column", "text", "--resolution", str(work.resolution), "--center_crop",
            "--train_batch_size", str(s.batch_size), "--max_train_steps", str(s.steps),
            "--learning_rate", str(s.learning_rate), "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
            "--rank", str(s.rank), "--seed", str(s.seed), "--output_dir", str(out),
            "--mixed_precision", s.precision, "--report_to", "tensorboard", "--checkpointing_steps", "1000000"]
    if s.optimizer == "adamw8bit":
        argv.append("--use_8bit_adam")
    if s.gradient_checkpointing:
        argv.append("--gradient_checkpointing")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(out.parent / "hf-datasets")}
    return Run(label, "diffusers", argv, _pythonpath(env, "LORA_BENCH_DIFFUSERS_PYTHONPATH"))


def kohya(label: str, work: Workload, s: Settings, out: Path) -> Run | None:
    repo = os.environ.get("LORA_BENCH_KOHYA")
    if not repo:
        return None
    script = "sdxl_train_network.py" if work.arch == "sdxl" else "train_network.py"
    argv = [str(Path(repo) / script), "--pretrained_model_name_or_path", str(work.model),
            "--train_data_dir", str(work.kohya), "--caption_extension", ".txt", "--resolution", str(work.resolution),
            "--train_batch_size", str(s.batch_size), "--max_train_steps", str(s.steps),
            "--learning_rate", str(s.learning_rate), "--unet_lr", str(s.learning_rate), "--lr_scheduler", "constant",
            "--network_module", "networks.lora", "--network_dim", str(s.rank), "--network_alpha", str(s.rank),
            "--optimizer_type", "AdamW8bit" if s.optimizer == "adamw8bit" else "AdamW",
            "--mixed_precision", s.precision, "--save_precision", "fp16", "--output_dir", str(out),
            "--output_name", "kohya", "--seed", str(s.seed), "--max_data_loader_n_workers", "0", "--sdpa",
            "--cache_latents", "--logging_dir", str(out / "logs"), "--tokenizer_cache_dir", str(work.tokenizers)]
    if s.train_text_encoder:
        argv += ["--text_encoder_lr", "5e-5"]  # our default text_encoder_lr
    else:
        argv += ["--network_train_unet_only"] + (["--cache_text_encoder_outputs"] if work.arch == "sdxl" else [])
    if s.low_vram:  # our low_vram preset, in kohya's words
        argv = _replace(argv, "--train_batch_size", "1") + ["--gradient_accumulation_steps", "2",
                                                            "--gradient_checkpointing", "--network_dim", "16",
                                                            "--network_alpha", "8"]
    return Run(label, "kohya", argv, _pythonpath({"HF_HUB_OFFLINE": "1"}, "LORA_BENCH_KOHYA_PYTHONPATH"), Path(repo))


def command(run: Run, record: Path) -> list[str]:
    return [sys.executable, str(PROBE), str(record), *run.argv]


def environment(run: Run) -> dict[str, str]:
    env = {**os.environ, **run.env}
    paths = [run.env.get("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _pythonpath(env: dict[str, str], variable: str) -> dict[str, str]:
    if os.environ.get(variable):
        env["PYTHONPATH"] = os.environ[variable]
    return env


def _replace(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv
