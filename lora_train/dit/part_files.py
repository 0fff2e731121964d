"""Where a Flux transformer file's other parts are: the autoencoder (`ae`), CLIP-L (`clip_l`), T5 (`t5xxl`)
and T5's tokenizer, which no single file carries.

In this order: the config key of the part's name (kohya's `--ae`, `--clip_l`, `--t5xxl`), the checkpoint
itself (an all-in-one file), a file of a usual name beside the checkpoint, then the WebUI's folders when
the checkpoint is in one (`models/Stable-diffusion`, `models/unet`, `models/diffusion_models`): Forge's
`models/VAE` and `models/text_encoder`, ComfyUI's `models/vae` and `models/clip` / `models/text_encoders`.
T5's tokenizer: `t5xxl_tokenizer`, a `t5xxl_tokenizer` folder beside the T5 file, or the copy Forge ships
(`backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2`). A part that is needed and not found is
a UserError naming every place looked in and the key that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

PART_TITLES = {"ae": "autoencoder (AE)", "clip_l": "CLIP-L text encoder", "t5xxl": "T5-XXL text encoder"}
_NAMES = {  # part -> usual file names, then glob patterns, of the separate file
    "ae": (("ae.safetensors", "ae.sft", "flux_ae.safetensors"), ("ae*.safetensors", "*flux*vae*.safetensors")),
    "clip_l": (("clip_l.safetensors",), ("*clip_l*.safetensors",)),
    "t5xxl": (("t5xxl_fp16.safetensors", "t5xxl.safetensors", "t5xxl_fp8_e4m3fn.safetensors"),
              ("*t5xxl*.safetensors", "*t5*xxl*.safetensors")),
}
_MODEL_FOLDERS = ("Stable-diffusion", "unet", "diffusion_models", "checkpoints")
_PART_FOLDERS = {"ae": ("VAE", "vae"), "clip_l": ("text_encoder", "clip", "text_encoders"),
                 "t5xxl": ("text_encoder", "clip", "text_encoders")}
FORGE_T5_TOKENIZER = Path("backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2")
T5_TOKENIZER_FOLDER = "t5xxl_tokenizer"


@dataclass(frozen=True)
class PartFile:
    """Where one part's tensors are: a file, and the prefix of their names in it ("" for a separate file)."""

    path: Path
    prefix: str = ""


def _folders(checkpoint: Path, part: str) -> list[Path]:
    folders = [checkpoint.parent]
    if checkpoint.parent.name in _MODEL_FOLDERS:
        models = checkpoint.parent.parent
        folders += [models / name for name in _PART_FOLDERS[part] if (models / name).is_dir()]
    return list(dict.fromkeys(folders))


def _search(folder: Path, part: str) -> Path | None:
    names, patterns = _NAMES[part]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted({file for pattern in patterns for file in folder.glob(pattern) if file.is_file()})
    return found[0] if found else None


def find_part(part: str, checkpoint: Path, given: str | None, inside: Mapping[str, str]) -> PartFile:
    """The file of `part` (ae | clip_l | t5xxl) for the transformer in `checkpoint`; `given` is the config key's
    value, `inside` the parts the checkpoint carries (part -> prefix)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise UserError(f"{part}: {path} is not a file. Give the {PART_TITLES[part]} file (.safetensors).")
        return PartFile(path)
    if part in inside:
        return PartFile(checkpoint, inside[part])
    folders = _folders(checkpoint, part)
    for folder in folders:
        if (found := _search(folder, part)) is not None:
            return PartFile(found)
    names = ", ".join(_NAMES[part][0] + _NAMES[part][1])
    raise UserError(f"{checkpoint} holds the Flux transformer only, and no {PART_TITLES[part]} was found: looked in "
                    f"the file itself and for {names} in {', '.join(map(str, folders))}. Put the file there, or "
                    f"name it with the config key {part}.")


def find_t5_tokenizer(given: str | None, t5: PartFile) -> Path:
    """The folder of T5's tokenizer (tokenizer.json, or spiece.model) for the T5 weights in `t5`."""
    candidates = [Path(given)] if given else [t5.path.parent / T5_TOKENIZER_FOLDER]
    if not given:
        for folder in t5.path.parents:  # Forge's own copy, from models/text_encoder up to the WebUI's root
            candidates.append(folder / FORGE_T5_TOKENIZER)
    for folder in candidates:
        if (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file():
            return folder
    if given:
        raise UserError(f"t5xxl_tokenizer: {given} holds no tokenizer (tokenizer.json or spiece.model).")
    raise UserError(f"No tokenizer for the T5 encoder {t5.path} was found (a single file carries none): looked in "
                    f"{candidates[0]} and for Forge's copy ({FORGE_T5_TOKENIZER}). Set t5xxl_tokenizer to a folder "
                    "with T5's tokenizer.json, e.g. the tokenizer_2 folder of the FLUX.1-dev diffusers repository.")
