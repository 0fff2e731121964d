"""The bad-input corpus of issue 7, built in code: the messy inputs users hand the trainer, and what
the trainer must say about each (docs/troubleshooting.md lists the same messages for users).

Two tables:
- IMAGE_FILES: files dropped into an image folder beside good ones. Scanning meets them: each is
  skipped with a warning naming it, used with a warning, or used silently (converted to RGB).
- CASES: every other input. `make(folder)` writes it and returns the config settings that differ
  from a good job; `stage` is the entry point that meets it first (config: the YAML file, data: the
  dataset, job: base model, network, output folder); `message` is a regex of what the user reads.
  `fault` stands in for what a test machine cannot do for real (a full disk; a read-only folder,
  which root can still write) by making the file system calls fail as they would.
"""

from __future__ import annotations

import argparse
import builtins
import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from test_data_helpers import png_header_only, save_image

from train_support import FAST

TRIGGER = "lt_shapes"


@dataclass(frozen=True)
class ImageFile:
    name: str  # the file dropped into the folder; warnings name it (or its caption file) by its stem
    write: Callable[[Path], object]  # writes it (and its caption when it has one)
    used: bool  # trained on (converted if need be), or skipped
    warning: str | None  # regex of the problem in the one warning naming it; None: no warning


@dataclass(frozen=True)
class Case:
    name: str
    stage: str  # config | data | job
    message: str  # regex of the error (of the one warning when `error` is false)
    make: Callable[[Path], dict[str, Any]] = lambda folder: {}
    yaml: str = ""  # raw text appended to the config file
    fault: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    error: bool = True
    cli: bool = False  # also run through `python -m lora_train train` in a subprocess


def good_images(folder: Path, count: int = 2) -> Path:
    """`folder` holding `count` good captioned images."""
    for i in range(count):
        save_image(folder / f"good{i}.png", size=(64, 64), color=(40 * i, 90, 200), caption=f"a card {i}")
    return folder


def settings_for(folder: Path, base_model: Path) -> dict[str, Any]:
    """A good one-step job on two good images, everything under `folder`."""
    return {**FAST, "base_model": str(base_model), "train_data_dir": str(good_images(folder / "data")),
            "output_dir": str(folder / "out"), "trigger_word": TRIGGER, "max_train_steps": 1, "sample_steps": 1}


def write_config(path: Path, settings: dict[str, Any], tail: str = "") -> Path:
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()) + tail,
                    encoding="utf-8")
    return path


def case_config(case: Case, folder: Path, base_model: Path) -> Path:
    """folder/job.yaml: a good job with the case's input written and its settings applied."""
    return write_config(folder / "job.yaml", {**settings_for(folder, base_model), **case.make(folder)}, case.yaml)


def warnings_about(warnings: list[str], file_name: str) -> list[str]:
    """The problems ('<files>: <problem>') of the warnings naming the file (or its caption file)."""
    stem = Path(file_name).stem
    return [problem for names, _, problem in (w.partition(": ") for w in warnings)
            if any(Path(token).stem == stem for token in re.split(r"[ ,]+", names))]


# --- image files --------------------------------------------------------------------------------

def _truncated(path: Path) -> None:
    whole = save_image(path, size=(96, 96), color=(10, 200, 90))
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _sixteen_bit(path: Path) -> None:
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(path)
    path.with_suffix(".txt").write_text("a grey card")


def _palette_with_transparency(path: Path) -> None:
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(path, transparency=0)
    path.with_suffix(".txt").write_text("a red card")


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    save_image(path, size=(96, 64), caption="a phone photo", exif=exif)


def _with_caption_bytes(data: bytes | None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        save_image(path, size=(64, 64))
        if data is not None:
            path.with_suffix(".txt").write_bytes(data)
    return write


_FALLBACK = f"so the trigger word '{TRIGGER}' is its caption"
_DAMAGED = r"skipped, damaged or incomplete \(.*\): re-export or re-download it, or remove it"

IMAGE_FILES = [
    ImageFile("zero.jpg", lambda p: p.write_bytes(b""), False,
              r"skipped, the file is empty \(0 bytes\): replace or remove it"),
    ImageFile("cut_jpeg.jpg", _truncated, False, _DAMAGED),
    ImageFile("cut_png.png", _truncated, False, _DAMAGED),
    ImageFile("cut_webp.webp", _truncated, False, _DAMAGED),
    ImageFile("cmyk.jpg", lambda p: save_image(p, (64, 64), mode="CMYK", color=(0, 255, 255, 0), caption="cyan"),
              True, None),
    ImageFile("deep.png", _sixteen_bit, True, None),
    ImageFile("palette.png", _palette_with_transparency, True, None),
    ImageFile("rotated.jpg", _exif_rotated, True, None),
    ImageFile("bomb.png", lambda p: p.write_bytes(png_header_only(100_000, 100_000)), False,
              r"skipped, too large \(.*a decompression-bomb guard\): resize it, or remove it"),
    ImageFile("small.png", lambda p: save_image(p, size=(16, 16), caption="tiny"), True,
              r"smaller than the training size, so enlarged .*set bucket_no_upscale"),
    ImageFile("notes.png", lambda p: p.write_text("shopping list: eggs, milk"), False,
              r"skipped, not an image Pillow can read \(a different file type with an image extension"),
    ImageFile("blank_caption.png", _with_caption_bytes(b"  \n"), True, f"the caption file is empty, {_FALLBACK}"),
    ImageFile("latin_caption.png", _with_caption_bytes(b"caf\xe9 au lait"), True,
              r"caption file not UTF-8, read as Windows-1252: re-save it as UTF-8"),
    ImageFile("bom_caption.png", _with_caption_bytes(b"\xef\xbb\xbfa card with a BOM"), True, None),
    ImageFile("no_caption.png", _with_caption_bytes(None), True,
              rf"no caption file \(\.txt beside the image\), {_FALLBACK}"),
]


# --- other inputs -------------------------------------------------------------------------------

def _file(name: str, write: Callable[[Path], object], key: str = "base_model") -> Callable[[Path], dict]:
    def make(folder: Path) -> dict[str, Any]:
        path = folder / name
        write(path)
        return {key: str(path)}
    return make


def _csv(text: str) -> Callable[[Path], dict]:
    return _file("data/metadata.csv", lambda path: path.write_text(text), key="metadata_path")


def _folder_of(*images: ImageFile) -> Callable[[Path], dict]:
    def make(folder: Path) -> dict[str, Any]:
        target = folder / "bad_only"
        target.mkdir()
        for image in images:
            image.write(target / image.name)
        return {"train_data_dir": str(target)}
    return make


def _pickle_needing_code(path: Path) -> None:
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
                "args": argparse.Namespace(lr=1e-4)}, path)


def _read_only(name: str) -> Callable[[pytest.MonkeyPatch, Path], None]:
    """folder/name exists, and creating a file in it fails as in a folder the user may not write to."""
    def fault(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
        target = folder / name
        target.mkdir(exist_ok=True)
        real_open = os.open

        def guarded(path, flags, *args, **kwargs):
            if flags & os.O_CREAT and Path(path).parent == target:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, *args, **kwargs)
        monkeypatch.setattr(os, "open", guarded)
    return fault


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_when_flushed(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Writes land in the cache, then flushing them to the disk fails: a disk that filled up mid-run."""
    def fsync(descriptor: int) -> None:
        raise _no_space()
    monkeypatch.setattr(os, "fsync", fsync)


def _full_from_the_start(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Opening a file in the output folder for writing fails: a disk that was full before the job began."""
    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wa") and Path(str(file)).parent == folder / "out":
            raise _no_space()
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", guarded)


def _nearly_full(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """The disk has 1 KB free: less than any LoRA."""
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=1024))


_NAME = r"cannot be used as a file name: it contains a path separator or '\.\.'"
_ONLY_BAD = [image for image in IMAGE_FILES if image.name in ("notes.png", "zero.jpg")]

CASES = [
    # config: the YAML file
    Case("yaml_typo", "config", r"is not valid YAML at line \d+, column \d+: .*Each line should read `key: value`",
         yaml="learning_rate 1e-4\n", cli=True),
    Case("unknown_key", "config", r"Unknown key 'lerning_rate' in \S+job\.yaml\. Did you mean 'learning_rate'\?",
         lambda f: {"lerning_rate": 1e-4}, cli=True),
    Case("wrong_type", "config", r"'lora_rank' must be a whole number, got 'sixteen'",
         lambda f: {"lora_rank": "sixteen"}, cli=True),
    Case("negative_learning_rate", "config", r"'learning_rate' is -0\.0001, out of range: it must be between 0\.0 and",
         lambda f: {"learning_rate": -1e-4}),
    Case("base_model_missing", "config", r"'base_model': \S+nowhere\.safetensors does not exist\. Check the path",
         lambda f: {"base_model": str(f / "nowhere.safetensors")}, cli=True),
    Case("name_with_separator", "config", rf"'output_name' 'loras/mine' {_NAME}",
         lambda f: {"output_name": "loras/mine"}),
    Case("name_with_dotdot", "config", rf"'output_name' '\.\./mine' {_NAME}", lambda f: {"output_name": "../mine"},
         cli=True),
    # data: the dataset
    Case("empty_folder", "data", r"No images in \S+empty: put \.png \.jpg .* files there",
         _file("empty", Path.mkdir, key="train_data_dir")),
    Case("only_bad_images", "data", r"None of the 2 images in \S+bad_only can be used: notes\.png: skipped, not an "
         r"image .*zero\.jpg: skipped, the file is empty .*Replace or remove the damaged files", _folder_of(*_ONLY_BAD),
         cli=True),
    Case("metadata_wrong_columns", "data", r"metadata\.csv: the header line must name the columns filename,prompt "
         r"\(found: image, caption\)", _csv("image,caption\ngood0.png,a card\n")),
    Case("metadata_broken_quoting", "data", r"metadata\.csv line 2: a double quote opened on this line is never "
         r"closed\. A prompt containing commas or quotes must be in double quotes",
         _csv('filename,prompt\ngood0.png,"a card, unclosed\ngood1.png,x\n')),
    Case("metadata_missing_file", "data", r"line 4 \(gone\.png\): named in metadata\.csv but not found in .*so the row "
         r"is skipped", _csv("filename,prompt\ngood0.png,a card\ngood1.png,a card\ngone.png,lost\n"), error=False),
    Case("metadata_only_missing_files", "data", r"None of the 1 files named in \S+metadata\.csv exist",
         _csv("filename,prompt\ngone.png,lost\n")),
    # job: base model, network, output folder
    Case("not_a_checkpoint", "job", r"notes\.safetensors is not a model checkpoint but a text file",
         _file("notes.safetensors", lambda p: p.write_text("my favourite prompts"))),
    Case("unsupported_architecture", "job", r"sd3\.safetensors looks like a Stable Diffusion 3 / 3\.5 model\. .*SD.* "
         r"only", _file("sd3.safetensors", lambda p: save_file({"joint_blocks.0.context_block.adaLN_modulation.1.bias":
                                                               torch.zeros(2)}, str(p)))),
    Case("flux_without_its_parts", "job", r"flux\.safetensors looks like a Flux transformer but has no img_in\.weight: "
         r"the file is incomplete", _file("flux.safetensors", lambda p: save_file(
             {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2)}, str(p)))),
    Case("pickle_needing_code", "job", r"old\.ckpt is a pickle that needs Python code \(argparse\.Namespace\) to load"
         r", which is unsafe; checkpoints are only loaded with weights_only=True\. Convert it to \.safetensors",
         _file("old.ckpt", _pickle_needing_code), cli=True),
    Case("rank_larger_than_a_layer", "job", r"lora_rank 128 is more than the UNet layer \S+ can use \(at most 32\): "
         r"lower lora_rank to 32 or less", lambda f: {"lora_rank": 128}),
    Case("output_dir_is_a_file", "job", r"Cannot write into output_dir \S+taken: .*Choose a folder you can write to",
         _file("taken", lambda p: p.write_text("x"), key="output_dir")),
    Case("output_dir_read_only", "job", r"Cannot write into output_dir \S+out: Permission denied\. Choose a folder",
         fault=_read_only("out")),
    Case("lora_output_dir_read_only", "job", r"Cannot write into lora_output_dir \S+loras: Permission denied",
         lambda f: {"lora_output_dir": str(f / "loras")}, fault=_read_only("loras")),
    Case("disk_full_at_checkpoint", "job", r"Not enough free space in \S+out to save checkpoint-my_lora-1: free some "
         r"disk space or set output_dir to another drive", lambda f: {"save_steps": 1}, fault=_full_when_flushed),
    Case("disk_full_at_lora", "job", r"Not enough free space in \S+out to save my_lora\.safetensors",
         fault=_full_when_flushed),
    Case("disk_too_small_for_the_saves", "job", r"Not enough free space for this job in \S+out: its saves need about "
         r"\d+ KB and 1\.0 KB are free\. Free some disk space, or set output_dir / lora_output_dir to another drive",
         fault=_nearly_full),
    Case("disk_full_from_the_start", "job", r"Not enough free space in \S+out to save train\.log",
         fault=_full_from_the_start),
]
