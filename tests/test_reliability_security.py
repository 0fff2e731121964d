"""Security: no pickle is ever loaded with code (every `torch.load` passes weights_only=True, and a
pickle whose payload would run is refused by every loader without running it), `trust_remote_code` is
off unless turned on, and output names with path separators or '..' are refused by the config and
the exporter alike."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lora_train.config import load_config
from lora_train.text.schema import TextConfig
from lora_train.core.errors import UserError
from lora_train.core.naming import free_lora_path
from lora_train.export.read import read_lora_file
from lora_train.models.load import load_base_model
from lora_train.train.checkpoint import load_checkpoint

PACKAGE = Path(__file__).resolve().parents[1] / "lora_train"


def _nodes(kind: type) -> list[tuple[str, ast.AST]]:
    """(file:line, node) of every node of this kind in the package's source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, kind):
                found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", node))
    return found


def _is_true(call: ast.Call, keyword: str) -> bool:
    value = next((kw.value for kw in call.keywords if kw.arg == keyword), None)
    return isinstance(value, ast.Constant) and value.value is True


UNPICKLERS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "cloudpickle.load",
              "cloudpickle.loads", "joblib.load", "torch.serialization.load"}


def test_every_torch_load_passes_weights_only_true_and_nothing_else_unpickles():
    calls = [(where, call, ast.unparse(call.func)) for where, call in _nodes(ast.Call)]
    loads = [(where, call) for where, call, name in calls if name == "torch.load"]
    assert len(loads) >= 3, "the scan found no torch.load calls: it no longer looks at the right code"
    assert not [where for where, call in loads if not _is_true(call, "weights_only")], "torch.load without weights_only"
    assert not [where for where, call, name in calls if name in UNPICKLERS
                or (name in ("np.load", "numpy.load") and _is_true(call, "allow_pickle"))], "pickle-style loading"
    assert not [where for where, node in _nodes(ast.ImportFrom)
                if node.module in ("torch", "torch.serialization", "pickle", "dill", "cloudpickle", "joblib")
                and any(alias.name in ("load", "loads", "Unpickler") for alias in node.names)], "a load imported bare"


class _Payload:
    """Unpickling this opens (creates) a file: the harmless stand-in for code a malicious .ckpt would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _poisoned(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    return path


def _poisoned_diffusers_part(part: str, weights: str):
    def load(folder: Path, marker: Path, tiny) -> None:
        model = shutil.copytree(tiny("sd1").diffusers, folder / "model")
        for file in (model / part).glob("*.safetensors"):
            file.unlink()
        _poisoned(model / part / weights, marker)
        load_base_model(model)
    return load


def _poisoned_checkpoint(folder: Path, marker: Path, tiny) -> None:
    save_file({"unet.weight": torch.zeros(1)}, str(folder / "lora_params.st"))
    _poisoned(folder / "training_state.pt", marker)
    load_checkpoint(folder)


LOADERS = {
    "base model .ckpt": lambda folder, marker, tiny: load_base_model(_poisoned(folder / "model.ckpt", marker)),
    "VAE .pt": lambda folder, marker, tiny: load_base_model(tiny("sd1").single_file,
                                                            vae_path=_poisoned(folder / "vae.pt", marker)),
    "LoRA .pt (pretrained_lora)": lambda folder, marker, tiny: read_lora_file(_poisoned(folder / "lora.pt", marker)),
    "training state (resume)": _poisoned_checkpoint,
    "diffusers UNet .bin": _poisoned_diffusers_part("unet", "diffusion_pytorch_model.bin"),
    "diffusers text encoder .bin": _poisoned_diffusers_part("text_encoder", "pytorch_model.bin"),
}


@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_a_pickle_with_code_is_refused_by_every_loader_and_its_code_never_runs(load, tmp_path, tiny_checkpoints):
    marker = tmp_path / "payload-ran"
    with pytest.raises(Exception) as error:
        load(tmp_path, marker, tiny_checkpoints)
    assert not marker.exists(), "the pickle's code ran"
    assert isinstance(error.value, UserError), f"not a clear message: {error.value!r}"


def test_trust_remote_code_is_off_unless_turned_on(tmp_path):
    assert TextConfig().trust_remote_code is False
    assert load_config(overrides={"task_type": "text-generation", "base_model": "some/model",
                                  "train_data_dir": str(tmp_path)}).trust_remote_code is False
    forced = [where for where, call in _nodes(ast.Call) if _is_true(call, "trust_remote_code")]
    assert not forced, f"trust_remote_code=True hard-coded at {forced}"


@pytest.mark.parametrize("name", ["../escape", "loras/mine", "loras\\mine", "..", "a/../b", "tab\tname", ".hidden"])
def test_names_that_are_paths_are_refused_by_config_and_exporter(name, tiny_sd1_file, tmp_path):
    with pytest.raises(UserError, match="'output_name' .* cannot be used as a file name"):
        load_config(overrides={"base_model": str(tiny_sd1_file), "train_data_dir": str(tmp_path), "output_name": name})
    with pytest.raises(UserError, match="output_name .* cannot be used"):
        free_lora_path(tmp_path / "loras", name)
    assert not (tmp_path / "loras").exists()
