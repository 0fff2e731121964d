"""Which layers get a LoRA: kohya's module sets, by kind, or exact names from `target_modules`.

kohya's sd-scripts (`networks/lora.py`) adapts every Linear / Conv2d inside the UNet's
`Transformer2DModel` blocks (192 modules on SD 1.5, 722 on SDXL base) and inside the text
encoders' `CLIPAttention` / `CLIPMLP` (72 per CLIP-L, 192 for SDXL's OpenCLIP-G). Its LoCon
adds every Linear / Conv2d inside `ResnetBlock2D`, `Downsample2D` and `Upsample2D`: the 3x3
convolutions at `conv_dim`, the time-embedding Linear and 1x1 shortcut at the LoRA rank.
Here the Transformer2D layers are split into the `unet_targets` kinds (attention, feed_forward,
projection) and the CLIP layers into `text_encoder_targets` (attention, mlp); all kinds together
give exactly kohya's set. The block classes are the family's (`Family.targets`, families/stable_diffusion.py
for these). Names are module paths inside each component, in `named_modules` order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from ..core.errors import UserError
from ..families.interface import LoraTargets

UNET_KINDS = ("attention", "feed_forward", "projection")
TEXT_ENCODER_KINDS = ("attention", "mlp")


@dataclass(frozen=True)
class TargetSet:
    """Module paths to adapt: in the UNet and in each text encoder (same order as the model's list)."""

    unet: tuple[str, ...] = ()
    text_encoders: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.unet) + sum(len(names) for names in self.text_encoders)


def text_encoder_labels(count: int) -> list[str]:
    """How messages name the text encoders: `text encoder`, or `text encoder 1`, `text encoder 2`."""
    return ["text encoder"] if count == 1 else [f"text encoder {i + 1}" for i in range(count)]


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


def unet_target_names(unet: nn.Module, blocks: LoraTargets, kinds: Sequence[str], locon: bool = False
                      ) -> tuple[str, ...]:
    """The UNet layers of the given kinds, plus kohya's LoCon layers of the ResNet / resampling blocks."""
    _check_kinds(kinds, UNET_KINDS, "unet_targets")
    names = [path for _, child, path in _layers_inside(unet, blocks.unet_blocks) if unet_layer_kind(child) in kinds]
    if locon:
        names += [path for _, _, path in _layers_inside(unet, blocks.locon_blocks)]
    return tuple(dict.fromkeys(names))


def text_encoder_target_names(text_encoder: nn.Module, blocks: LoraTargets, kinds: Sequence[str]) -> tuple[str, ...]:
    """The CLIP attention (q/k/v/out_proj) and / or MLP (fc1/fc2) layers of a text encoder."""
    _check_kinds(kinds, TEXT_ENCODER_KINDS, "text_encoder_targets")
    kind_of = dict(blocks.text_encoder_blocks)
    return tuple(dict.fromkeys(path for block, _, path in _layers_inside(text_encoder, tuple(kind_of))
                               if kind_of[block] in kinds))


def text_encoder_root(text_encoder: nn.Module) -> str:
    """What a text encoder's module paths lack of transformers 4's layout: transformers 5's CLIPTextModel
    has no `text_model` level (`encoder.layers.0...`); CLIPTextModelWithProjection still has it."""
    return "" if hasattr(text_encoder, "text_model") else "text_model."


def _matches(paths: Sequence[str], entry: str) -> bool:
    return any(path == entry or path.endswith("." + entry) for path in paths)


def _short_name(path: str) -> str:
    """The path after its last container index (`...transformer_blocks.0.attn1.to_q` -> `attn1.to_q`)."""
    parts = path.split(".")
    cut = max((i + 1 for i in range(1, len(parts)) if parts[i].isdigit() and parts[i - 1].endswith("s")), default=0)
    return ".".join(parts[cut:])


def names_by_entries(components: Mapping[str, nn.Module], entries: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`target_modules`: each component's Linear / Conv2d layers whose path is, or ends with, an entry (text
    encoder paths also as `text_model.encoder...`). An entry matching no layer is an error naming it and
    showing names that exist."""
    if not entries:
        raise UserError("target_modules is an empty list: leave it out to use unet_targets / text_encoder_targets, "
                        "or name the layers to adapt.")
    layers = {label: [(path, (path, text_encoder_root(component) + path) if label != "UNet" else (path,))
                      for path, module in component.named_modules() if is_adaptable(module)]
              for label, component in components.items()}
    found = {label: tuple(path for path, forms in paths if any(_matches(forms, entry) for entry in entries))
             for label, paths in layers.items()}
    unmatched = [entry for entry in entries
                 if not any(_matches(forms, entry) for paths in layers.values() for _, forms in paths)]
    if unmatched:
        examples = {label: dict.fromkeys(_short_name(path) for path, _ in paths) for label, paths in layers.items()}
        raise UserError(
            f"target_modules: {', '.join(map(repr, unmatched))} match(es) no Linear or Conv2d layer of the "
            f"{' or '.join(components)}. Give full module paths or their endings. Names that exist: "
            + "; ".join(f"{label}: {', '.join(names)}" for label, names in examples.items()) + ".")
    return found


def select_targets(unet: nn.Module, text_encoders: Sequence[nn.Module], blocks: LoraTargets, *, train_unet: bool,
                   train_text_encoder: bool, unet_targets: Sequence[str], text_encoder_targets: Sequence[str],
                   network_type: str = "lora", target_modules: Sequence[str] | None = None) -> TargetSet:
    """The layers to adapt for these settings (config keys of the same names) in the family's `blocks`. Nothing to
    adapt is an error."""
    labels = text_encoder_labels(len(text_encoders))
    components: dict[str, nn.Module] = {"UNet": unet} if train_unet else {}
    if train_text_encoder:
        components.update(zip(labels, text_encoders))
    if not components:
        raise UserError("train_unet and train_text_encoder are both off: there is nothing to train.")
    if target_modules is not None:
        found = names_by_entries(components, target_modules)
    else:
        found = {label: text_encoder_target_names(component, blocks, text_encoder_targets) if label != "UNet"
                 else unet_target_names(component, blocks, unet_targets, network_type == "locon")
                 for label, component in components.items()}
    targets = TargetSet(found.get("UNet", ()), tuple(found.get(label, ()) for label in labels))
    if not len(targets):
        raise UserError("No layer selected for LoRA: unet_targets and text_encoder_targets are empty (or the "
                        "trained parts have none of those layers). Choose at least one kind.")
    return targets
