"""`grid` on a Flux.1 / Chroma base: each cell is the family's pipeline on the base with the cell's LoRA weights,
the weight-1 cell the same image as the base with the LoRA merged independently (on BFL's layout, as Forge
applies it), and the CLI saves the grid and its parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flux_support import apply_lora_file
from flux_tools_support import save_flux_lora

from lora_train.cli import main
from lora_train.core.grid_image import GridSpec
from lora_train.dit.base import load_flux_base
from lora_train.dit.source import flux_source
from lora_train.tools.grid_flux import _pipeline, flux_grid_images
from lora_train.tools.lora_file import read_any_lora


def _render(base, spec):
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    options = {"guidance_scale": 3.5} if base.guidance else {}
    return _pipeline(base)(spec.prompt, width=spec.width, height=spec.height, num_inference_steps=spec.steps,
                           generator=generator, max_sequence_length=base.family.parts.t5_max_length,
                           **options).images[0]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["flux-dev", "chroma"])
def test_each_cell_is_the_base_with_the_lora_at_that_weight(tiny_flux_files, tmp_path, arch):
    lora, _ = save_flux_lora(tmp_path, "a", arch, 4, 40.0)  # strong, so that the images differ
    source = flux_source(tiny_flux_files(arch).transformer)
    spec = GridSpec(["a"], [[0.0, 1.0]], "a red circle", seed=7, width=64, height=64, steps=2,
                    base_model=str(source.path))
    plain, full = flux_grid_images(spec, [read_any_lora(lora)], source, "cpu", lambda *_: None)
    base = load_flux_base(source)
    assert np.array_equal(np.asarray(plain), np.asarray(_render(base, spec)))
    apply_lora_file(base.transformer, lora, arch == "chroma")
    expected = np.asarray(_render(base, spec)).astype(int)
    assert np.abs(np.asarray(full).astype(int) - expected).max() <= 1  # fp32 sums in another order
    assert np.abs(np.asarray(full).astype(int) - np.asarray(plain).astype(int)).mean() > 1


@pytest.mark.slow
def test_the_grid_command_saves_a_flux_grid(tiny_flux_files, tmp_path, capsys):
    lora, _ = save_flux_lora(tmp_path, "a", "flux-schnell", 2, 2.0)
    code = main(["grid", str(tiny_flux_files("flux-schnell").transformer), str(lora), "--weights", "0.5,1",
                 "--prompt", "a blue square", "--width", "64", "--height", "64", "--steps", "1",
                 "--out-dir", str(tmp_path / "grid")])
    saved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and (tmp_path / "grid").is_dir()
    assert json.loads(open(saved["params"]).read())["weights"] == [[0.0, 0.5, 1.0]]


def test_a_lora_of_another_family_is_refused_before_rendering(tiny_flux_files, tmp_path, capsys):
    lora, _ = save_flux_lora(tmp_path, "a", "chroma", 2, 2.0)
    code = main(["grid", str(tiny_flux_files("flux-dev").transformer), str(lora), "--weights", "1", "--prompt", "x",
                 "--width", "64", "--height", "64", "--steps", "1", "--out-dir", str(tmp_path / "grid")])
    assert code == 2 and "a.safetensors is a LoRA for Chroma but the base model" in capsys.readouterr().err
    assert not (tmp_path / "grid").exists()
