"""Loading a Flux-family base model from every form users have, with no hub: BFL single files (bare and
prefixed) with their parts beside them, all-in-one files, diffusers folders; the WebUI's folders; parts named
by config keys. The loaded weights are exactly the tiny model's."""

from __future__ import annotations

import shutil

import pytest
import torch

from lora_train.dit.base import PartPaths, load_flux_base
from lora_train.dit.source import flux_source
from lora_train.fixtures.tiny_flux import tiny_flux

FORMS = ("transformer", "prefixed", "all_in_one", "diffusers")


def assert_same(module, expected):
    state, want = module.state_dict(), expected.state_dict()
    assert state.keys() == want.keys()
    assert all(torch.equal(state[key], want[key]) for key in want)


@pytest.mark.parametrize("family", ["flux-dev", "flux-schnell", "chroma"])
@pytest.mark.parametrize("form", FORMS)
def test_every_form_loads_the_same_model(tiny_flux_files, family, form):
    files = tiny_flux_files(family)
    source = flux_source(getattr(files, form))
    assert source.family.id == family
    base = load_flux_base(source)
    model = tiny_flux(family)
    for part in ("transformer", "vae", "t5"):
        assert_same(getattr(base, part), getattr(model, part))
    if family == "chroma":
        assert base.clip is None
    else:
        assert_same(base.clip, model.clip)
    assert base.t5_tokenizer("a red circle").input_ids == model.t5_tokenizer("a red circle").input_ids
    assert base.guidance == (family == "flux-dev")


def test_parts_are_found_in_the_webui_folders(tiny_flux_files, tmp_path):
    files = tiny_flux_files("flux-dev")
    models = tmp_path / "models"
    for folder, names in {"Stable-diffusion": [files.transformer], "VAE": [files.ae],
                          "text_encoder": [files.clip_l, files.t5xxl, files.t5_tokenizer]}.items():
        (models / folder).mkdir(parents=True)
        for name in names:
            (shutil.copytree if name.is_dir() else shutil.copy)(name, models / folder / name.name)
    (models / "text_encoder" / "t5xxl.safetensors").rename(models / "text_encoder" / "t5xxl_fp16.safetensors")
    base = load_flux_base(flux_source(models / "Stable-diffusion" / files.transformer.name))
    assert base.sources["ae"] == str(models / "VAE" / "ae.safetensors")
    assert base.sources["t5xxl"] == str(models / "text_encoder" / "t5xxl_fp16.safetensors")
    assert_same(base.vae, tiny_flux("flux-dev").vae)


def test_config_keys_name_the_parts_and_replace_a_folder_s_own(tiny_flux_files, tmp_path):
    files, other = tiny_flux_files("flux-dev"), tiny_flux_files("flux-schnell")
    lone = tmp_path / "flux.safetensors"
    shutil.copy(files.transformer, lone)
    paths = PartPaths(ae=str(files.ae), clip_l=str(files.clip_l), t5xxl=str(files.t5xxl),
                      t5xxl_tokenizer=str(files.t5_tokenizer))
    base = load_flux_base(flux_source(lone), paths)
    assert_same(base.t5, tiny_flux("flux-dev").t5)
    # schnell's folder with dev's T5 file named instead of its own (the two seeds differ only by family)
    base = load_flux_base(flux_source(other.diffusers), PartPaths(t5xxl=str(files.t5xxl)))
    assert base.sources["t5xxl"] == str(files.t5xxl)


def test_an_fp8_transformer_and_t5_are_read_and_cast_to_the_training_precision(tiny_flux_files, tmp_path):
    from safetensors.torch import load_file, save_file

    files = tiny_flux_files("flux-schnell")
    for source, name in ((files.transformer, "flux1-schnell-fp8.safetensors"),
                         (files.t5xxl, "t5xxl_fp8_e4m3fn.safetensors")):
        save_file({key: value.to(torch.float8_e4m3fn) for key, value in load_file(source).items()},
                  str(tmp_path / name))
    shutil.copy(files.ae, tmp_path)
    shutil.copy(files.clip_l, tmp_path)
    shutil.copytree(files.t5_tokenizer, tmp_path / files.t5_tokenizer.name)
    base = load_flux_base(flux_source(tmp_path / "flux1-schnell-fp8.safetensors"), dtype=torch.bfloat16)
    model = tiny_flux("flux-schnell")
    for loaded, original in ((base.transformer, model.transformer), (base.t5, model.t5)):
        state = loaded.state_dict()
        assert all(value.dtype == torch.bfloat16 for value in state.values())
        for key, value in original.state_dict().items():
            assert torch.equal(state[key], value.to(torch.float8_e4m3fn).to(torch.bfloat16)), key


def test_fp8_base_keeps_the_linear_weights_in_fp8(tiny_flux_files, tmp_path):
    from safetensors.torch import load_file, save_file

    from lora_train.dit.fp8 import Fp8Linear

    files = tiny_flux_files("chroma")
    stored = {key: value.to(torch.float8_e5m2) if key.endswith("linear1.weight") else value
              for key, value in load_file(files.transformer).items()}
    save_file(stored, str(tmp_path / "chroma-mixed.safetensors"))
    paths = PartPaths(ae=str(files.ae), t5xxl=str(files.t5xxl), fp8_base=True)
    for path in (tmp_path / "chroma-mixed.safetensors", files.diffusers):
        transformer = load_flux_base(flux_source(path), paths, dtype=torch.bfloat16).transformer
        linears = [m for m in transformer.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m) is Fp8Linear for m in linears)
        to_q = transformer.single_transformer_blocks[0].attn.to_q
        assert to_q.weight.dtype == (torch.float8_e5m2 if path.is_file() else torch.float8_e4m3fn)
        assert to_q.bias.dtype == torch.bfloat16 and transformer.x_embedder.weight.dtype == torch.float8_e4m3fn
        assert transformer.single_transformer_blocks[0].attn.norm_q.weight.dtype == torch.bfloat16
        x = torch.randn(2, to_q.in_features, dtype=torch.bfloat16)
        assert torch.equal(to_q(x), torch.nn.functional.linear(x, to_q.weight.to(torch.bfloat16), to_q.bias))
