"""What the tab needs from whatever hosts it: models, folders, settings, the GPU, test renders.

Two hosts implement it: the WebUI (`a1111_host.py`, with `forge_backend.py` for Forge and Neo: the loaded
checkpoint, its parts, folders and settings) and the standalone server (`standalone_host.py`: folders given
on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..image_tab.presets import DEFAULT_PRESET
from .model_files import ModelInfo
from .part_selection import PartSelection
from .paths import PathPolicy


@dataclass
class TabSettings:
    """The user's settings that the tab reads each time it acts."""

    lora_dir: Path
    work_dir: Path
    default_preset: str = DEFAULT_PRESET
    defaults_file: str = ""  # a YAML config whose values fill the form at start
    worker_python: str = ""  # empty: the worker venv (WebUI) or this interpreter (standalone)
    dataset_roots: list[str] = field(default_factory=list)
    llm_models_dir: Path | None = None  # the LLM tab's base models (folders with config.json, .gguf files)
    llm_lora_dir: Path | None = None  # where the LLM tab's adapters go (never the image Lora folder)
    captioners_dir: Path | None = None  # captioning models (hub downloads); None: <lora_dir>/../lora_train/captioners


class Host(Protocol):
    name: str
    can_render: bool
    inserts_prompts: bool
    holders: set[str]  # who else needs the GPU now (e.g. "llm"): restore_model waits until it is empty

    def settings(self) -> TabSettings: ...

    def path_policy(self) -> PathPolicy: ...

    def current_model(self) -> ModelInfo | None: ...

    def checkpoints(self) -> list[ModelInfo]: ...

    def vaes(self) -> list[ModelInfo]: ...

    def parts(self, base_model: Path) -> PartSelection | None:
        """The host's own choice of the files besides the transformer (Forge's "VAE / Text Encoder" selector) for
        a base model whose family takes them; None where the host has no such choice."""

    def release_model(self) -> str | None:
        """Move the host's model out of VRAM before training; returns a note for the user, if any."""

    def restore_model(self) -> str | None:
        """Bring the model back after training (also after a failure or an interrupt), unless `holders` remain."""

    def refresh_loras(self) -> None: ...

    def render(self, prompt: str, negative: str, seed: int, steps: int, width: int, height: int): ...

    def render_progress(self) -> tuple[int, int] | None:
        """(step, steps) of the render under way, when the host knows."""

    def stop_render(self) -> None:
        """Interrupt the render under way."""

