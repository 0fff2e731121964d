"""What a run holds in memory: the frozen weights stay the checkpoint file's own pages on a CPU (no copy
beside them), the VAE and text encoders are freed once the caches hold what the steps need, and samples
still render, with the encoders read from the file again."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lora_train.models.load import load_base_model
from lora_train.train import image_trainer
from lora_train.train.encoders import encoders_loaded, place_model, release_encoders, weight_layout
from lora_train.train.precision import resolve_precision
from lora_train.train.step import StepRunner
from train_support import train


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of `path`."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(" " + str(path)):
            start, end = line.split()[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def copies(module: torch.nn.Module, path: Path) -> list[str]:
    """The module's parameters whose data is not in a mapping of `path` (copies of the file's weights)."""
    ranges = file_mappings(path)
    return [name for name, param in module.named_parameters()
            if not any(start <= param.data_ptr() < end for start, end in ranges)]


class AtFirstStep:
    """Records, when the first optimizer step begins, the base model and weak references to its first parts."""

    def __init__(self, monkeypatch):
        self.base = self.vae = self.text_encoder = None
        self.loaded = []
        load = image_trainer.load_base_model
        monkeypatch.setattr(image_trainer, "load_base_model", lambda *a, **k: self._keep(load(*a, **k)))
        step = StepRunner.optimizer_step
        monkeypatch.setattr(StepRunner, "optimizer_step", lambda runner, *a: self._step(runner) or step(runner, *a))

    def _keep(self, base):
        self.loaded.append(base)
        self.vae, self.text_encoder = weakref.ref(base.vae), weakref.ref(base.text_encoders[0])
        return base

    def _step(self, runner: StepRunner) -> None:
        if self.base is None:
            self.base = runner.base
            self.state = {"vae": self.vae() is not None, "text_encoder": self.text_encoder() is not None,
                          "mappings": len(file_mappings(Path(runner.base.path))),
                          "unet copies": copies(runner.base.unet, Path(runner.base.path))}


NO_SAMPLES = dict(max_train_steps=2, train_text_encoder=False, sample_steps=0)


def test_on_a_cpu_the_frozen_weights_are_the_files_pages_not_copies(tiny_sd1_file, tmp_path, monkeypatch):
    """An fp32 file trained in fp32: no weight, 3x3 convolutions included, is copied out of the mapping."""
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    seen = AtFirstStep(monkeypatch)
    train(tiny_sd1_file, tmp_path / "out", **NO_SAMPLES)
    assert [name for name in seen.state["unet copies"] if "lora_" not in name] == []


def test_without_samples_the_vae_and_text_encoder_are_freed_after_the_caches(tiny_sd1_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    seen = AtFirstStep(monkeypatch)
    _, events = train(tiny_sd1_file, tmp_path / "out", **NO_SAMPLES)
    assert seen.state["vae"] is False and seen.state["text_encoder"] is False
    assert seen.state["mappings"] == 1, "only the UNet's part of the file should stay mapped"
    assert any("Freed the VAE and the text encoder" in e.get("message", "") for e in events)
    assert events[-1]["type"] == "done"


@pytest.mark.parametrize("settings, kept", [
    (dict(train_text_encoder=True), "text_encoder"),  # trained: it holds LoRA layers
    (dict(shuffle_caption=True), "text_encoder"),  # captions change: encoded every step
    (dict(flip_aug=True), "vae"),  # flips cannot be cached: images encoded every step
    (dict(cache_latents=False, cache_text_encoder_outputs=False), "both"),
])
def test_what_the_steps_use_stays(tiny_sd1_file, tmp_path, monkeypatch, settings, kept):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    seen = AtFirstStep(monkeypatch)
    _, events = train(tiny_sd1_file, tmp_path / "out", **{**NO_SAMPLES, **settings})
    assert events[-1]["type"] == "done"
    assert seen.state["vae"] is (kept in ("vae", "both"))
    assert seen.state["text_encoder"] is (kept in ("text_encoder", "both"))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32)


@pytest.mark.slow
def test_samples_load_the_freed_encoders_again_and_render_as_with_them_kept(tiny_sd1_file, tmp_path, monkeypatch):
    """The same run with the caches off keeps both encoders throughout: its samples are the reference."""
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    settings = dict(max_train_steps=2, train_text_encoder=False, sample_every_n_steps=1, sample_seed=3)
    seen = AtFirstStep(monkeypatch)
    freed, _ = train(tiny_sd1_file, tmp_path / "freed", **settings)
    assert seen.state["vae"] is False and seen.state["text_encoder"] is False
    base = seen.base
    assert base.vae is None and base.text_encoders == []  # released again after each sample
    kept, _ = train(tiny_sd1_file, tmp_path / "kept", **settings, cache_latents=False,
                    cache_text_encoder_outputs=False)
    names = ["step000001_00.png", "step000002_00.png", "final000002_00.png"]
    for name in names:
        a, b = pixels(tmp_path / "freed" / "samples" / name), pixels(tmp_path / "kept" / "samples" / name)
        assert a.std() > 1.0 and np.abs(a - b).mean() < 0.5, name
    assert pixels(freed.with_name(freed.stem + ".preview.png")).shape == pixels(
        kept.with_name(kept.stem + ".preview.png")).shape


@pytest.mark.parametrize("form", ["single_file", "diffusers", "ckpt"])
def test_load_encoders_reads_the_same_weights_again(tiny_checkpoints, form):
    model = getattr(tiny_checkpoints("sdxl" if form == "diffusers" else "sd1"), form)
    base = load_base_model(model)
    vae, text_encoders = base.load_encoders(with_vae=True, with_text_encoders=False)
    assert text_encoders == []
    torch.testing.assert_close(vae.state_dict(), base.vae.state_dict(), rtol=0, atol=0)
    vae, text_encoders = base.load_encoders(with_vae=False, with_text_encoders=True)
    assert vae is None and len(text_encoders) == len(base.text_encoders)
    for again, first in zip(text_encoders, base.text_encoders):
        torch.testing.assert_close(again.state_dict(), first.state_dict(), rtol=0, atol=0)
        assert not again.training and not any(p.requires_grad for p in again.parameters())


def test_a_released_vae_is_back_inside_encoders_loaded_and_gone_after(tiny_sd1_file):
    base = load_base_model(tiny_sd1_file)
    text_encoder = base.text_encoders[0]
    assert release_encoders(base, vae=True, text_encoders=False) == ["VAE"]
    device, precision = torch.device("cpu"), resolve_precision("no", torch.device("cpu"))
    with encoders_loaded(base, device, precision):
        vae = weakref.ref(base.vae)
        assert vae() is not None and base.text_encoders[0] is text_encoder  # the kept one is not read again
    assert base.vae is None and vae() is None and base.text_encoders[0] is text_encoder


def test_on_a_cpu_the_vae_becomes_one_channels_last_copy_and_its_mapping_goes(tiny_sd1_file):
    base = load_base_model(tiny_sd1_file)
    mapped = len(file_mappings(tiny_sd1_file))
    place_model(base, torch.device("cpu"), resolve_precision("no", torch.device("cpu")))
    assert base.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(copies(base.vae, tiny_sd1_file)) == len(list(base.vae.parameters()))
    assert len(file_mappings(tiny_sd1_file)) == mapped - 1, "the VAE's part of the file should be unmapped"
    assert copies(base.unet, tiny_sd1_file) == [] and copies(base.text_encoders[0], tiny_sd1_file) == []


def test_channels_last_unet_only_where_it_pays_and_it_changes_no_result():
    """CUDA's convolutions get channels-last UNet weights; a CPU keeps the layout the file has."""
    from lora_train.fixtures.components import tiny_sd1

    assert weight_layout(torch.device("cpu")) == torch.preserve_format
    assert weight_layout(torch.device("cuda")) == torch.channels_last
    unet = tiny_sd1().unet.eval()
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        plain = unet(latents, torch.tensor([10, 900]), encoder_hidden_states=context).sample
        unet.to("cpu", torch.float32, memory_format=weight_layout(torch.device("cuda")))
        nhwc = unet(latents, torch.tensor([10, 900]), encoder_hidden_states=context).sample
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, plain, rtol=1e-4, atol=1e-5)
