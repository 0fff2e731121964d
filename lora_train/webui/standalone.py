"""`python -m lora_train ui`: the Train LoRA and LLM LoRA tabs in a browser, without a WebUI.

Models come from `--models-dir` (its `Stable-diffusion/` and `VAE/` subfolders when it is a
WebUI models folder), finished LoRAs go to `--lora-dir`. Training runs with this interpreter
(or `--python`, or LORA_TRAIN_PYTHON). On an address other than loopback the server has no
password, so typed paths are confined to those folders and the `--dataset-root` folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .host import StandaloneHost, TabSettings
from .paths import LOOPBACK_HOSTS, PathPolicy
from .presets import CHOICES as PRESET_CHOICES, DEFAULT_PRESET
from .worker_env import EXTENSION_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_train ui",
                                     description="Serve the Train LoRA tab with plain gradio (no WebUI needed).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                        "machine only; any other address confines paths to the folders below)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder of checkpoints (.safetensors / .ckpt), e.g. a WebUI's models folder")
    parser.add_argument("--lora-dir", type=Path, default=Path("loras"), help="where finished LoRAs go")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="samples, logs and checkpoints of each job (default: <lora-dir>/../lora_train_runs)")
    parser.add_argument("--dataset-root", action="append", default=[], type=Path,
                        help="a folder the tab may read datasets from when confined (repeatable)")
    parser.add_argument("--python", default=None, help="interpreter that runs training (default: this one)")
    parser.add_argument("--preset", choices=PRESET_CHOICES, default=DEFAULT_PRESET, help="preset the tab starts with")
    parser.add_argument("--defaults-file", default="", help="a YAML config whose values fill the tab at start")
    return parser


def make_host(args: argparse.Namespace) -> StandaloneHost:
    lora_dir = args.lora_dir.resolve()
    work_dir = (args.work_dir or lora_dir.parent / "lora_train_runs").resolve()
    settings = TabSettings(lora_dir, work_dir, args.preset, args.defaults_file, args.python or "",
                           [str(root) for root in args.dataset_root])
    roots = [root for root in (args.models_dir, lora_dir, work_dir, *args.dataset_root) if root]
    policy = PathPolicy(args.host not in LOOPBACK_HOSTS, roots, "Start the server with --dataset-root FOLDER.")
    return StandaloneHost(args.models_dir.resolve() if args.models_dir else None, settings, policy)


def main(argv: list[str] | None = None) -> int:
    """Parse the `ui` options, serve the tab until Ctrl+C; a running job is asked to stop and save."""
    import gradio as gr

    from . import compat
    from .llm_tab import build_llm_tab
    from .tab import RUNNER, build_tab

    args = build_parser().parse_args(argv)
    host = make_host(args)
    for folder in (host.tab_settings.lora_dir, host.tab_settings.work_dir):
        folder.mkdir(parents=True, exist_ok=True)
    blocks = gr.TabbedInterface([build_tab(host, python_fallback=sys.executable),
                                 build_llm_tab(host, RUNNER, python_fallback=sys.executable)],
                                ["Train LoRA", "LLM LoRA"])
    blocks.title = "LoRA trainer"
    blocks.queue()
    css = (EXTENSION_ROOT / "style.css").read_text(encoding="utf-8")
    print(f"LoRAs go to {host.tab_settings.lora_dir}; job files to {host.tab_settings.work_dir}", flush=True)
    try:
        compat.launch(blocks, css, server_name=args.host, server_port=args.port, inbrowser=False)
    except KeyboardInterrupt:
        pass
    finally:
        if RUNNER.busy():
            print(RUNNER.stop(), flush=True)
            RUNNER.wait(120)
    return 0
