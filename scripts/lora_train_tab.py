"""The WebUI's entry point for lora_train: registers the "Train LoRA" and "LLM LoRA" tabs
and their settings section.

A1111 / Forge load every file in an extension's scripts/ folder; the module's name is global
there, so it is not `lora`, `network` or `networks` (the built-in Lora extension's). Only the
standard library, gradio and WebUI modules are imported in the WebUI's process; training runs
in a separate worker (see install.py).
"""

import sys
from pathlib import Path

EXTENSION_ROOT = str(Path(__file__).resolve().parents[1])
if EXTENSION_ROOT not in sys.path:
    sys.path.append(EXTENSION_ROOT)

from modules import script_callbacks  # noqa: E402

from lora_train.webui.hosts.a1111_host import WebUIHost, register_settings  # noqa: E402
from lora_train.webui.llm_tab.tab import build_llm_tab  # noqa: E402
from lora_train.webui.image_tab.tab import build_tab  # noqa: E402


def on_ui_tabs():
    host = WebUIHost()
    return [(build_tab(host), "Train LoRA", "lora_train"),
            (build_llm_tab(host), "LLM LoRA", "lora_train_llm")]


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(register_settings)
