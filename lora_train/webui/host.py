"""What the tab needs from whatever hosts it: models, folders, settings, the GPU, test renders.

Two hosts implement it: the WebUI (`a1111_host.py`: the loaded checkpoint, its folders and
settings) and the standalone server (`standalone_host.py`: folders given on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .model_files import ModelInfo
from .paths import PathPolicy
from .preset_choices import DEFAULT_PRESET


@dataclass
class TabSettings:
    """The user's settings that the tab reads each time it acts."""

    lora_dir: Path
    work_dir: Path
    default_preset: str = DEFAULT_PRESET
    defaults_file: str = ""  # a YAML config whose values fill the form at start
    worker_python: str = ""  # empty: the worker venv (WebUI) or this interpreter (standalone)
    dataset_roots: list[str] = field(default_factory=list)


class Host(Protocol):
    name: str
    can_render: bool
    inserts_prompts: bool

    def settings(self) -> TabSettings: ...

    def path_policy(self) -> PathPolicy: ...

    def current_model(self) -> ModelInfo | None: ...

    def checkpoints(self) -> list[ModelInfo]: ...

    def vaes(self) -> list[ModelInfo]: ...

    def release_model(self) -> str | None:
        """Move the host's model out of VRAM before training; returns a note for the user, if any."""

    def restore_model(self) -> str | None:
        """Bring the model back after training (also after a failure or an interrupt)."""

    def refresh_loras(self) -> None: ...

    def render(self, prompt: str, negative: str, seed: int, steps: int, width: int, height: int): ...
