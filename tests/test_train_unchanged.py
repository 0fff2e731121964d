"""A LoRA trained by this code is bit-identical to one the code before the family plug-ins (`BASELINE`) trains.

The exact bytes of a CPU run depend on the machine (its thread count changes the order of float sums), so
no recorded hash is compared: the baseline's `lora_train/` is taken from git (`git archive`) and both trees
train the same config on the same tiny model, each through `python -m lora_train train --config` in its
own process. Compared: every tensor of the LoRA, its header (less the three times and the run id), the card's sidecar,
its preview and the samples. One run per family, each through its own code: SD1 with the text encoder, a
LoCon and clip_skip; SD2 v-prediction with the text-encoder cache; SDXL with both text encoders and samples.

A change that is meant to change what training computes moves `BASELINE` to the commit that made it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image
from safetensors import safe_open

from lora_train.fixtures.checkpoints import build_tiny_checkpoint
from train_support import DATASET, FAST

BASELINE = "6f98c921c07776adf33f7283cadf35877b17497e"  # main before issue 21's family plug-ins (after fix-memory, which changed CPU numerics)
REPO = Path(__file__).resolve().parents[1]
TIMES = ("ss_training_started_at", "ss_training_finished_at", "modelspec.date")
RANDOM = ("lora_train_run_id",)  # a new id per run (core/ownership.py)
RUNS = {
    "sd1": {"train_text_encoder": True, "clip_skip": 2, "network_type": "locon", "conv_dim": 2, "conv_alpha": 1},
    "sd2-v": {},
    "sdxl": {"train_text_encoder": True, "sample_every_n_steps": 2, "sample_prompts": ["a red square"]},
}

pytestmark = pytest.mark.slow


def _baseline_tree(folder: Path) -> Path:
    """The baseline's `lora_train/` package under `folder`; a skip where git or its history is missing."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", BASELINE, "lora_train"],
                                 capture_output=True, timeout=120)
    except OSError as exc:
        pytest.skip(f"git is not available ({exc}): the baseline code cannot be read")
    if archive.returncode != 0:
        pytest.skip(f"commit {BASELINE} is not in this checkout's history: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _train(code: Path, base_model: Path, out: Path, settings: dict) -> Path:
    config = {**FAST, "base_model": str(base_model), "train_data_dir": str(DATASET), "output_dir": str(out),
              "max_train_steps": 4, "output_name": "unchanged", **settings}
    out.mkdir(parents=True)
    config_path = out.parent / f"{out.name}.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-m", "lora_train", "train", "--config", str(config_path), "--events",
                           "none"], cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / f"{config['output_name']}.safetensors"


def _what_it_wrote(lora: Path) -> dict:
    with safe_open(str(lora), framework="pt") as handle:
        tensors = {key: hashlib.sha256(handle.get_tensor(key).numpy().tobytes()).hexdigest() for key in handle.keys()}
        header = {key: value for key, value in handle.metadata().items() if key not in TIMES + RANDOM}
    folder = lora.parent
    pictures = {str(path.relative_to(folder)): hashlib.sha256(Image.open(path).tobytes()).hexdigest()  # the pixels:
                # the preview's PNG text records the run id
                for path in sorted([*folder.glob("*.png"), *folder.glob("samples/*.png")])}
    sidecar = json.loads(lora.with_suffix(".json").read_text(encoding="utf-8"))
    return {"tensors": tensors, "header": header, "sidecar": sidecar, "pictures": pictures}


@pytest.mark.parametrize("arch", list(RUNS))
def test_a_lora_trains_bit_identical_to_the_code_before_the_family_plug_ins(tmp_path_factory, arch):
    folder = tmp_path_factory.mktemp(f"unchanged-{arch}")
    baseline = _baseline_tree(folder / "baseline")
    model = build_tiny_checkpoint(folder / "models", arch).single_file
    before = _what_it_wrote(_train(baseline, model, folder / "before", RUNS[arch]))
    after = _what_it_wrote(_train(REPO, model, folder / "after", RUNS[arch]))
    assert len(before["tensors"]) > 10 and before["pictures"]
    for part in ("tensors", "header", "sidecar", "pictures"):
        assert after[part] == before[part], part
    shutil.rmtree(folder, ignore_errors=True)
