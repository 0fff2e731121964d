"""open_clip's model classes, importable with or without torchvision.

`import open_clip` runs the package's `__init__`, which imports its torchvision image transforms,
and `open_clip.utils` imports `torchvision.ops.misc.FrozenBatchNorm2d` (used only to freeze
ResNet towers for training). The worker here reuses the host's torch and installs open_clip
without its dependencies (torchvision from PyPI would pull a second torch), so torchvision may be
missing. Then the model modules are loaded under a private package name, without the package's
`__init__`, with a stand-in for that one class present only while `utils` is imported. Images are
preprocessed by `clip_ranker.preprocess` (PIL and numpy), so no torchvision transform is needed.
When torchvision is installed (a WebUI's environment), the real package is used unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from lora_train.core.errors import UserError

_PRIVATE_NAME = "lora_train_open_clip"
_STAND_INS = ("torchvision", "torchvision.ops", "torchvision.ops.misc")


def open_clip_package_dir() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("CLIP ranking needs the open_clip_torch package: install it into the trainer's venv with "
                        "`pip install --no-deps open_clip_torch==3.3.0`.")
    return Path(next(iter(spec.submodule_search_locations)))


def open_clip_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """(open_clip.model, open_clip.coca_model), from the real package when torchvision is there."""
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("open_clip.model"), importlib.import_module("open_clip.coca_model")
    if _PRIVATE_NAME not in sys.modules:
        package = types.ModuleType(_PRIVATE_NAME)
        package.__path__ = [str(open_clip_package_dir())]
        sys.modules[_PRIVATE_NAME] = package
        _import_utils_without_torchvision()
    return (importlib.import_module(f"{_PRIVATE_NAME}.model"), importlib.import_module(f"{_PRIVATE_NAME}.coca_model"))


def _import_utils_without_torchvision() -> None:
    import torch

    class FrozenBatchNorm2d(torch.nn.Module):  # never built: only freeze_batch_norm_2d (training) uses it
        def __init__(self, *args, **kwargs):
            raise RuntimeError("freezing batch norm layers needs torchvision")

    stand_ins = {name: types.ModuleType(name) for name in _STAND_INS}
    stand_ins["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d
    sys.modules.update(stand_ins)
    try:
        importlib.import_module(f"{_PRIVATE_NAME}.utils")
    finally:
        for name in _STAND_INS:
            sys.modules.pop(name, None)
