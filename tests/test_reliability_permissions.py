"""Saved files follow the umask as a plain `open()` would (a WebUI served by another user, or a shared models
folder, must read them), not the 0600 of the temporary file they are written through."""

import os
import stat
from pathlib import Path

import pytest

from lora_train.core.atomic import replace_file, write_new_file, write_new_folder
from train_support import train


@pytest.fixture
def umask():
    """`umask(mask)` sets the process umask for the test; the old one comes back after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    new = write_new_file(tmp_path / "new.safetensors", lambda temporary: temporary.write_bytes(b"x"))
    replace_file(tmp_path / "cache.bin", b"x")
    assert mode(new) == mode(tmp_path / "cache.bin") == mode(plain) == 0o666 & ~mask
    (tmp_path / "plain").mkdir()
    adapter = write_new_folder(tmp_path / "adapter", lambda folder: (folder / "adapter_config.json").write_text("{}"))
    assert mode(adapter) == mode(tmp_path / "plain") == 0o777 & ~mask  # a PEFT adapter folder


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_a_writer_that_replaces_its_file_still_gives_the_plain_mode(tmp_path, umask, mask):
    """safetensors' save_file (bake's checkpoint, peft's adapter weights) replaces the file it is given with a
    0600 one."""
    import torch
    from safetensors.torch import save_file

    umask(mask)
    tensors = {"weight": torch.zeros(2)}
    baked = write_new_file(tmp_path / "baked.safetensors", lambda temporary: save_file(tensors, str(temporary)))

    def adapter(folder: Path) -> None:
        (folder / "nested").mkdir()
        save_file(tensors, str(folder / "nested" / "adapter_model.safetensors"))

    folder = write_new_folder(tmp_path / "adapter", adapter)
    assert mode(baked) == mode(folder / "nested" / "adapter_model.safetensors") == 0o666 & ~mask
    assert mode(folder / "nested") == 0o777 & ~mask


@pytest.mark.slow
def test_a_training_run_saves_readable_files_everywhere(tiny_sd1_file, tmp_path, umask):
    umask(0o002)  # a group-shared models folder
    loras = tmp_path / "Lora"
    lora, _ = train(tiny_sd1_file, tmp_path / "run", lora_output_dir=str(loras), max_train_steps=2, save_steps=2)
    saved = [file for folder in (loras, tmp_path / "run") for file in folder.rglob("*") if file.is_file()]
    assert {lora, lora.with_suffix(".json"), lora.with_suffix(".preview.png")} <= set(saved)
    assert any("checkpoint-my_lora-2" in file.parts for file in saved)
    assert {file.name: oct(mode(file)) for file in saved} == {file.name: oct(0o664) for file in saved}
