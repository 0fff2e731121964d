"""The standalone server as the tab's host: a models folder and a LoRA folder given on the command
line (`python -m lora_train ui`), nothing to unload, no image generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .host import TabSettings
from .model_files import ModelInfo, list_models
from .part_selection import PartSelection
from .paths import PathPolicy


@dataclass
class StandaloneHost:
    """`python -m lora_train ui`: folders from the command line, no WebUI."""

    models_dir: Path | None
    tab_settings: TabSettings
    policy: PathPolicy
    name: str = "standalone"
    can_render: bool = False
    inserts_prompts: bool = False
    holders: set[str] = field(default_factory=set)

    def settings(self) -> TabSettings:
        return self.tab_settings

    def path_policy(self) -> PathPolicy:
        return self.policy

    def current_model(self) -> ModelInfo | None:
        return None

    def _models_under(self, subfolder: str) -> list[ModelInfo]:
        if self.models_dir is None:
            return []
        folder = self.models_dir / subfolder
        return list_models(folder if folder.is_dir() else self.models_dir)

    def checkpoints(self) -> list[ModelInfo]:
        lora_dir = self.tab_settings.lora_dir.resolve()
        return [model for model in self._models_under("Stable-diffusion")
                if lora_dir not in Path(model.path).resolve().parents]

    def vaes(self) -> list[ModelInfo]:
        return self._models_under("VAE") if self.models_dir and (self.models_dir / "VAE").is_dir() else []

    def parts(self, base_model: Path) -> PartSelection | None:
        return None  # the trainer looks for them itself (docs/flux.md)

    def release_model(self) -> str | None:
        return None

    def restore_model(self) -> str | None:
        return None

    def refresh_loras(self) -> None:
        return None

    def render(self, prompt: str, negative: str, seed: int, steps: int, width: int, height: int):
        raise NotImplementedError("the standalone server has no image generator")

    def render_progress(self) -> tuple[int, int] | None:
        return None

    def stop_render(self) -> None:
        return None
