"""The package boundaries that keep the WebUI's process light and the engines apart.

- The WebUI side (`lora_train.webui` and its wings), the core, the model families and the torch-free data
  modules import without torch, diffusers, transformers, peft or accelerate, and bring in no engine package:
  the WebUI side may use only the core, the families' tables, the config (the text engine's
  `text.schema` included) and the torch-free data modules.
- The families (`lora_train.families.*`) name engine code only by `Ref`: importing every one of them,
  and reading every label and signature, loads no engine module.
- `data/` and `config/` never import the kohya file format or the trainer.

Each check imports the modules in a fresh interpreter and reads its `sys.modules`.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import lora_train

ROOT = Path(lora_train.__file__).resolve().parent
TORCH_STACK = ("torch", "diffusers", "transformers", "peft", "accelerate")
TORCH_FREE_DATA = ("buckets", "caption_tokens", "captions", "doctor", "image_hash", "images", "messages", "metadata_csv",
                   "plan", "scan")
ENGINE = ("lora_train.adapters", "lora_train.dit", "lora_train.kohya", "lora_train.models", "lora_train.text",
          "lora_train.train", "lora_train.tools")
ENGINE_CONFIG = ("lora_train.text", "lora_train.text.schema")  # the text engine's config, torch-free

# Imports each module named on the command line; blocks the torch stack when asked, noting which
# lora_train file asked for it. Prints, per module, the error (if any), the blocked imports that came
# from lora_train code, and the lora_train modules its import loaded.
PROBE = r"""
import importlib, json, sys, traceback
block = json.loads(sys.argv[1])
asked = []

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in block:
            ours = [f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_stack()
                    if "/lora_train/" in frame.filename.replace("\\", "/")]
            if ours:
                asked.append(f"{name} from {ours[-1]}")
            raise ModuleNotFoundError(f"{name} is blocked in this check")
        return None

sys.meta_path.insert(0, Block())
report = {}
for module in sys.argv[2:]:
    del asked[:]
    before = set(sys.modules)
    try:
        importlib.import_module(module)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    report[module] = {"error": error, "asked": list(asked),
                      "loaded": sorted(name for name in set(sys.modules) - before if name.startswith("lora_train."))}
print(json.dumps(report))
"""


def _modules(package: str) -> list[str]:
    """The package and every module under it, its sub-packages' included (webui/'s wings)."""
    folder = ROOT.joinpath(*package.split(".")[1:])
    return [package] + [info.name for info in pkgutil.walk_packages([str(folder)], f"{package}.")]


def _probe(modules: list[str], block: tuple[str, ...]) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(block), *modules], capture_output=True,
                            text=True, timeout=300, cwd=ROOT.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_webui_side_and_the_core_import_without_torch_and_without_the_engine():
    light = (_modules("lora_train.webui") + _modules("lora_train.core") + _modules("lora_train.families")
             + ["lora_train.data"] + [f"lora_train.data.{name}" for name in TORCH_FREE_DATA])
    report = _probe(light, TORCH_STACK)
    problems = []
    for module, found in report.items():
        if found["error"]:
            problems.append(f"{module} does not import without torch: {found['error']} ({found['asked']})")
        elif found["asked"]:
            problems.append(f"{module} asks for the torch stack: {found['asked']}")
        engine = [name for name in found["loaded"] if name.startswith(ENGINE) and name not in ENGINE_CONFIG]
        torch_data = [name for name in found["loaded"] if name.startswith("lora_train.data.")
                      and name.split(".")[2] not in TORCH_FREE_DATA]
        if engine or torch_data:
            problems.append(f"{module} loads engine modules: {engine + torch_data}")
    assert not problems, "\n".join(problems)


def test_data_and_config_do_not_import_the_file_format_or_the_trainer():
    report = _probe(_modules("lora_train.data") + _modules("lora_train.config"), ())
    problems = [f"{module} imports {name}" for module, found in report.items() for name in found["loaded"]
                if name.startswith(("lora_train.kohya", "lora_train.train"))]
    errors = [f"{module}: {found['error']}" for module, found in report.items() if found["error"]]
    assert not errors, errors
    assert not problems, "\n".join(problems)


def test_every_family_loads_without_torch_and_its_refs_name_engine_code():
    """The tables are read (labels, signatures, recognisers) without torch; each `Ref` they hold names an
    object that exists once the engine is importable."""
    table = r"""
import dataclasses, json, sys
from lora_train.families import all_families, labels, trained_families
from lora_train.families.interface import Ref
from lora_train.families.recognise import checkpoint_family, lora_family
labels(), checkpoint_family(["cond_stage_model.transformer.x"]), lora_family({"lora_te1_x.lora_down.weight": (4, 8)})

def refs_in(value):  # every Ref a row holds: its engine, conditioning, samplers, parts' classes
    if isinstance(value, Ref):
        return [value.path]
    if dataclasses.is_dataclass(value):
        return [path for field in dataclasses.fields(value) for path in refs_in(getattr(value, field.name))]
    return [path for item in value for path in refs_in(item)] if isinstance(value, tuple) else []

refs = [path for row in trained_families() for path in refs_in(row)]
print(json.dumps({"refs": refs, "loaded": sorted(name for name in sys.modules if name.split(".")[0] in
      ("torch", "diffusers", "transformers") or name.startswith(("lora_train.train", "lora_train.models")))}))
"""
    result = subprocess.run([sys.executable, "-c", table], capture_output=True, text=True, timeout=300,
                            cwd=ROOT.parent)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    from lora_train.families.interface import Ref

    assert {"lora_train.train.image_trainer:build_loop", "lora_train.dit.trainer:build_flux_loop"} <= set(found["refs"])
    assert all(Ref(path).load() is not None for path in found["refs"])
