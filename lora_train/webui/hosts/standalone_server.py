"""`python -m lora_train ui`: the Train LoRA and LLM LoRA tabs in a browser, without a WebUI.

Models come from `--models-dir` (its `Stable-diffusion/` and `VAE/` subfolders when it is a
WebUI models folder), finished LoRAs go to `--lora-dir`; the LLM tab's base models come from
`--llm-models-dir` and its adapters go to `--llm-lora-dir`. Training runs with this interpreter
(or `--python`, or LORA_TRAIN_PYTHON). On an address other than loopback the server has no
password, so typed paths are confined to those folders and the `--dataset-root` folders.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ...core.errors import UserError
from ..image_tab.presets import CHOICES as PRESET_CHOICES, DEFAULT_PRESET
from ..kit.form import read_config_file
from ..worker.environment import EXTENSION_ROOT
from .host import TabSettings
from .paths import LOOPBACK_HOSTS, PathPolicy
from .standalone_host import StandaloneHost


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_train ui",
                                     description="Serve the Train LoRA and LLM LoRA tabs with plain gradio (no WebUI "
                                                 "needed).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                        "machine only; any other address confines paths to the folders below)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder of checkpoints (.safetensors / .ckpt), e.g. a WebUI's models folder")
    parser.add_argument("--lora-dir", type=Path, default=Path("loras"), help="where finished LoRAs go")
    parser.add_argument("--llm-models-dir", type=Path, default=None, help="the LLM tab's base models: folders with "
                        "config.json and .gguf files (default: <models-dir>/LLM, else models/LLM)")
    parser.add_argument("--llm-lora-dir", type=Path, default=None,
                        help="where the LLM tab's adapters go (default: LLM-LoRA beside --lora-dir)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="samples, logs and checkpoints of each job (default: <lora-dir>/../lora_train_runs)")
    parser.add_argument("--dataset-root", action="append", default=[], type=Path,
                        help="a folder the tab may read datasets from when confined (repeatable)")
    parser.add_argument("--captioners-dir", type=Path, default=None,
                        help="captioning models and hub downloads (default: <lora-dir>/../lora_train/captioners)")
    parser.add_argument("--python", default=None, help="interpreter that runs training (default: this one)")
    parser.add_argument("--preset", choices=PRESET_CHOICES, default=DEFAULT_PRESET, help="preset the tab starts with")
    parser.add_argument("--defaults-file", default="", help="a YAML config whose values fill the tab at start")
    return parser


def make_host(args: argparse.Namespace) -> StandaloneHost:
    lora_dir = args.lora_dir.resolve()
    work_dir = (args.work_dir or lora_dir.parent / "lora_train_runs").resolve()
    llm_models = (args.llm_models_dir or (args.models_dir or Path("models")) / "LLM").resolve()
    llm_loras = (args.llm_lora_dir or lora_dir.parent / "LLM-LoRA").resolve()
    settings = TabSettings(lora_dir, work_dir, args.preset, args.defaults_file, args.python or "",
                           [str(root) for root in args.dataset_root], llm_models, llm_loras,
                           args.captioners_dir.resolve() if args.captioners_dir else None)
    roots = [root for root in (args.models_dir, lora_dir, work_dir, llm_models, llm_loras, args.captioners_dir,
                               *args.dataset_root) if root]
    policy = PathPolicy(args.host not in LOOPBACK_HOSTS, roots, "Start the server with --dataset-root FOLDER.")
    return StandaloneHost(args.models_dir.resolve() if args.models_dir else None, settings, policy)


def option_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the options, before anything is served (each names the option and what to give)."""
    problems = []
    if args.port is not None and not 1 <= args.port <= 65535:
        problems.append(f"--port {args.port}: give a port from 1 to 65535 (or leave it out for the first free one).")
    if args.models_dir and not args.models_dir.is_dir():
        problems.append(f"--models-dir {args.models_dir} is not a folder: give the folder of your checkpoints.")
    if args.python and not (Path(args.python).is_file() or shutil.which(args.python)):
        problems.append(f"--python {args.python} is not a program here: give the Python interpreter that runs "
                        "training (or leave it out for this one).")
    if args.defaults_file:
        try:
            read_config_file(Path(args.defaults_file))
        except UserError as exc:
            problems.append(f"--defaults-file: {exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Parse the `ui` options, serve the tab until Ctrl+C; a running job is asked to stop and save."""
    args = build_parser().parse_args(argv)
    problems = option_problems(args)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    import gradio as gr

    from ..kit import compat
    from ..worker.jobs import EXCLUSIVE
    from ..llm_tab.tab import build_llm_tab
    from ..image_tab.tab import build_tab

    host = make_host(args)
    settings = host.tab_settings
    for folder in (settings.lora_dir, settings.work_dir, settings.llm_lora_dir):
        folder.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(analytics_enabled=False, title="LoRA trainer") as blocks:
        with gr.Tab("Train LoRA", elem_id="lora_train_image_tab"):
            build_tab(host, python_fallback=sys.executable)
        with gr.Tab("LLM LoRA", elem_id="lora_train_llm_tab"):
            build_llm_tab(host, python_fallback=sys.executable)
    blocks.queue()
    css = (EXTENSION_ROOT / "style.css").read_text(encoding="utf-8")
    print(f"LoRAs go to {settings.lora_dir}, LLM adapters to {settings.llm_lora_dir}; job files to "
          f"{settings.work_dir}", flush=True)
    try:
        compat.launch(blocks, css, server_name=args.host, server_port=args.port, inbrowser=False)
    except KeyboardInterrupt:
        pass
    finally:
        for runner in EXCLUSIVE:
            if runner.busy():
                print(runner.stop(), flush=True)
                runner.wait(120)
    return 0
