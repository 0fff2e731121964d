"""Which layers get a LoRA: kohya's module sets, by kind, or exact names from `target_modules`.

kohya's sd-scripts (`networks/lora.py`) adapts every Linear / Conv2d inside the UNet's
`Transformer2DModel` blocks (192 modules on SD 1.5, 722 on SDXL base) and inside the text
encoders' `CLIPAttention` / `CLIPMLP` (72 per CLIP-L, 192 for SDXL's OpenCLIP-G). Its LoCon
adds every Linear / Conv2d inside `ResnetBlock2D`, `Downsample2D` and `Upsample2D`: the 3x3
convolutions at `conv_dim`, the time-embedding Linear and 1x1 shortcut at the LoRA rank.
Here the Transformer2D layers are split into the `unet_targets` kinds (attention, feed_forward,
projection) and the CLIP layers into `text_encoder_targets` (attention, mlp); all kinds together
give exactly kohya's set. Names are module paths inside each component, in `named_modules` order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import UserError

UNET_KINDS = ("attention", "feed_forward", "projection")
TEXT_ENCODER_KINDS = ("attention", "mlp")
TRANSFORMER_BLOCKS = ("Transformer2DModel",)
LOCON_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
CLIP_BLOCKS = {"CLIPAttention": "attention", "CLIPSdpaAttention": "attention", "CLIPFlashAttention2": "attention",
               "CLIPMLP": "mlp"}


@dataclass(frozen=True)
class TargetSet:
    """Module paths to adapt: in the UNet and in each text encoder (same order as the model's list)."""

    unet: tuple[str, ...] = ()
    text_encoders: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.unet) + sum(len(names) for names in self.text_encoders)


def is_adaptable(module: nn.Module) -> bool:
    """LoRA wraps Linear and Conv2d layers."""
    return isinstance(module, (nn.Linear, nn.Conv2d))


def _layers_inside(root: nn.Module, block_classes: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """(block class, path relative to the block, full path) of each Linear / Conv2d inside the blocks."""
    for block_path, block in root.named_modules():
        kind = type(block).__name__
        if kind not in block_classes:
            continue
        for child_path, child in block.named_modules():
            if child_path and is_adaptable(child):
                yield kind, child_path, f"{block_path}.{child_path}" if block_path else child_path


def unet_layer_kind(child_path: str) -> str:
    """The `unet_targets` kind of a layer inside a Transformer2DModel, from its path in the block."""
    parts = child_path.split(".")
    if any(part.startswith("attn") for part in parts):
        return "attention"
    if "ff" in parts:
        return "feed_forward"
    return "projection"


def _check_kinds(kinds: Sequence[str], allowed: Sequence[str], key: str) -> None:
    unknown = [kind for kind in kinds if kind not in allowed]
    if unknown:
        raise UserError(f"{key}: unknown value(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}.")


def unet_target_names(unet: nn.Module, kinds: Sequence[str], locon: bool = False) -> tuple[str, ...]:
    """The UNet layers of the given kinds, plus kohya's LoCon layers of the ResNet / resampling blocks."""
    _check_kinds(kinds, UNET_KINDS, "unet_targets")
    names = [path for _, child, path in _layers_inside(unet, TRANSFORMER_BLOCKS) if unet_layer_kind(child) in kinds]
    if locon:
        names += [path for _, _, path in _layers_inside(unet, LOCON_BLOCKS)]
    return tuple(dict.fromkeys(names))


def text_encoder_target_names(text_encoder: nn.Module, kinds: Sequence[str]) -> tuple[str, ...]:
    """The CLIP attention (q/k/v/out_proj) and / or MLP (fc1/fc2) layers of a text encoder."""
    _check_kinds(kinds, TEXT_ENCODER_KINDS, "text_encoder_targets")
    return tuple(dict.fromkeys(path for block, _, path in _layers_inside(text_encoder, tuple(CLIP_BLOCKS))
                               if CLIP_BLOCKS[block] in kinds))


def _matches(path: str, entry: str) -> bool:
    return path == entry or path.endswith("." + entry)


def _example_names(components: Mapping[str, nn.Module]) -> list[str]:
    """Short layer names that exist (last two path segments), as hints for a mistyped entry."""
    seen: dict[str, None] = {}
    for component in components.values():
        for path, module in component.named_modules():
            if is_adaptable(module):
                seen[".".join(path.split(".")[-2:])] = None
    return list(seen)


def names_by_entries(components: Mapping[str, nn.Module], entries: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`target_modules`: each component's Linear / Conv2d layers whose path is, or ends with, an entry.
    An entry that matches no layer anywhere is an error naming it and showing names that exist."""
    if not entries:
        raise UserError("target_modules is an empty list: leave it out to use unet_targets / text_encoder_targets, "
                        "or name the layers to adapt.")
    found = {name: tuple(path for path, module in component.named_modules()
                         if is_adaptable(module) and any(_matches(path, entry) for entry in entries))
             for name, component in components.items()}
    unmatched = [entry for entry in entries
                 if not any(_matches(path, entry) for paths in found.values() for path in paths)]
    if unmatched:
        examples = _example_names(components)
        raise UserError(
            f"target_modules: {', '.join(map(repr, unmatched))} match(es) no Linear or Conv2d layer of the "
            f"{' or '.join(components)}. Give full module paths or their endings; names that exist include: "
            f"{', '.join(examples[:14])}{', ...' if len(examples) > 14 else ''}.")
    return found


def select_targets(unet: nn.Module, text_encoders: Sequence[nn.Module], *, train_unet: bool,
                   train_text_encoder: bool, unet_targets: Sequence[str], text_encoder_targets: Sequence[str],
                   network_type: str = "lora", target_modules: Sequence[str] | None = None) -> TargetSet:
    """The layers to adapt for these settings (config keys of the same names). Nothing to adapt is an error."""
    components: dict[str, nn.Module] = {}
    if train_unet:
        components["unet"] = unet
    if train_text_encoder:
        components.update({f"text_encoder_{i}": te for i, te in enumerate(text_encoders)})
    if not components:
        raise UserError("train_unet and train_text_encoder are both off: there is nothing to train.")
    if target_modules is not None:
        found = names_by_entries(components, target_modules)
    else:
        found = {"unet": unet_target_names(unet, unet_targets, network_type == "locon")} if train_unet else {}
        found.update({name: text_encoder_target_names(te, text_encoder_targets)
                      for name, te in components.items() if name != "unet"})
    targets = TargetSet(found.get("unet", ()), tuple(found.get(f"text_encoder_{i}", ())
                                                      for i in range(len(text_encoders))))
    if not len(targets):
        raise UserError("No layer selected for LoRA: unet_targets and text_encoder_targets are empty (or the "
                        "trained parts have none of those layers). Choose at least one kind.")
    return targets
