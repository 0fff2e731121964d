"""Any LoRA file in one neutral form: per kohya module name, its down / up factors, alpha and DoRA scale.

`read_any_lora` reads kohya files (ours, kohya's sd-scripts, LoCon with 4-D convolutions, DoRA's
`dora_scale`), LyCORIS LoCon files (kohya's key names, `lycoris.kohya` metadata) and diffusers /
PEFT key style (`unet.<path>.lora_A.weight`, converted by `key_styles`), and detects the base
family with the LoRA header sniffer. Forms that are not low-rank products (LoHa, LoKr, Tucker
`lora_mid`, OFT, ...) are refused by name: merging or baking them here would be silently wrong.
`LoraModule.delta` is the weight change as the WebUI computes it (strength 1, before DoRA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import UserError
from ..families import title_of
from ..families.recognise import lora_family
from ..kohya.names import ALPHA, DORA_SCALE, DOWN, UP
from ..kohya.read import read_lora_file
from .key_styles import kohya_style, model_adapter_key

SCALAR = "scalar"
_OTHER_FORMS = {"hada_w1_a": "LoHa", "lokr_w1": "LoKr", "lokr_w1_a": "LoKr", "lora_mid.weight": "Tucker LoCon",
                "oft_blocks": "OFT", "oft_diag": "OFT", "diff": "full-weight diff", "w_norm": "norm",
                "b_norm": "norm", "ia3": "IA3", "weight": "IA3 / full"}


@dataclass
class LoraModule:
    """One adapted layer: delta W = alpha / rank * up @ down, then DoRA when `dora_scale` is set."""

    down: torch.Tensor  # (rank, in[, kh, kw])
    up: torch.Tensor  # (out, rank[, 1, 1])
    alpha: float
    dora_scale: torch.Tensor | None = None  # (1, in[, 1, 1]) as A1111 reads it

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def is_conv(self) -> bool:
        """A spatial (kxk, k > 1) convolution: LoCon's `conv_dim` layers."""
        return self.down.ndim == 4 and tuple(self.down.shape[2:]) != (1, 1)

    def delta(self) -> torch.Tensor:
        """alpha / rank * up @ down in fp32, shaped (out, in[, kh, kw])."""
        product = self.up.float().flatten(1) @ self.down.float().flatten(1)
        return (self.scale * product).reshape(self.up.shape[0], *self.down.shape[1:])


@dataclass
class LoraFile:
    """A LoRA file read into the neutral form."""

    path: Path
    arch: str | None  # sd1 | sd2 | sdxl, None when nothing tells
    modules: dict[str, LoraModule]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = "kohya"  # kohya | lycoris | diffusers

    @property
    def label(self) -> str:
        return title_of(self.arch)

    @property
    def has_dora(self) -> bool:
        return any(module.dora_scale is not None for module in self.modules.values())


def _refuse_other_forms(path: Path, modules: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, parts in modules.items():
        if DOWN in parts and UP in parts and "lora_mid.weight" not in parts:
            continue
        kind = next((label for suffix, label in _OTHER_FORMS.items() if suffix in parts), None)
        if kind is not None:
            raise UserError(f"{path} holds {kind} modules (e.g. {name}), which are not a low-rank up @ down "
                            "product: merge, resize and bake work on LoRA, LoCon and DoRA files only.")


def _module(name: str, parts: dict[str, torch.Tensor], path: Path) -> LoraModule:
    down, up = parts[DOWN], parts[UP]
    if up.shape[1] != down.shape[0]:
        raise UserError(f"{path}: {name} has lora_up rank {up.shape[1]} but lora_down rank {down.shape[0]}; "
                        "the file is damaged.")
    if SCALAR in parts:  # LyCORIS `use_scalar`: a learned factor on the product
        up = up * parts[SCALAR].float()
    alpha = float(parts[ALPHA].item()) if ALPHA in parts else float(down.shape[0])  # kohya: no alpha = rank
    return LoraModule(down, up, alpha, parts.get(DORA_SCALE))


def not_a_lora(path: Path, keys) -> UserError:
    """What to say of a file whose tensors (`keys`) hold no LoRA module: a text adapter's, or something else's."""
    text_key = model_adapter_key(keys)
    if text_key:
        return UserError(f"{path} is a PEFT adapter of a language model (keys like {text_key}), not an image LoRA: "
                         "merge, resize and bake take SD 1.x / SD 2.x / SDXL LoRAs. For text adapters use "
                         "`lora_train llm stack` or `llm merge` on its folder.")
    return UserError(f"{path} is not a LoRA: it holds no LoRA modules (keys like lora_unet_..._lora_down.weight or "
                     "unet....lora_A.weight). Is it a checkpoint, an embedding or a VAE?")


def read_any_lora(path: str | Path) -> LoraFile:
    """Read a LoRA file of any supported key style; UserError when it is not a LoRA."""
    path = Path(path)
    tensors, metadata = read_lora_file(path)
    grouped, source = kohya_style(tensors, metadata)
    _refuse_other_forms(path, grouped)
    modules = {name: _module(name, parts, path) for name, parts in grouped.items() if DOWN in parts and UP in parts}
    if not modules:
        raise not_a_lora(path, tensors)
    if source == "kohya" and metadata.get("ss_network_module", "").startswith("lycoris"):
        source = "lycoris"
    shapes = {f"{name}.{DOWN}": tuple(module.down.shape) for name, module in modules.items()}
    found = lora_family(shapes, metadata)
    return LoraFile(path, found.id if found else None, modules, metadata, source)


def module_tensors(modules: dict[str, LoraModule], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The kohya-format state dict of neutral modules (alpha as a float32 scalar, as loaders expect)."""
    state: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        state[f"{name}.{DOWN}"] = module.down.to(dtype).contiguous()
        state[f"{name}.{UP}"] = module.up.to(dtype).contiguous()
        state[f"{name}.{ALPHA}"] = torch.tensor(float(module.alpha), dtype=torch.float32)
        if module.dora_scale is not None:
            state[f"{name}.{DORA_SCALE}"] = module.dora_scale.to(dtype).contiguous()
    return state


def storage_dtype(files: list[LoraFile]) -> torch.dtype:
    """The inputs' common factor dtype, or float32 when they differ."""
    dtypes = {module.down.dtype for file in files for module in file.modules.values()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32
