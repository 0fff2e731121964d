"""Which layers get a LoRA: the model's own linear layers, each given name checked on its own.

peft raises only when no name matches, so `[query_proj, value_proj]` plus one right name trains
silently on a part of the model. Here every name must match a layer, else the run stops before
training and lists the names the model has. Unset, every linear layer except the output head is
adapted (Llama `q_proj`..`down_proj`, GPT-NeoX / ChatGLM `query_key_value`, `dense`...,
GPT-2 `c_attn`, `c_proj`, `c_fc`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from ..core.errors import UserError

ALL_LINEAR = "all-linear"
# Output heads that get_output_embeddings() does not always return (ChatGLM's output_layer).
_HEADS = {"lm_head", "output_layer", "embed_out"}


@dataclass
class TargetChoice:
    names: list[str]
    fan_in_fan_out: bool  # GPT-2's Conv1D stores its weight transposed


def _is_linear(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, (torch.nn.Linear, Conv1D)):
        return True
    return type(module).__name__ in ("Linear4bit", "Linear8bitLt")  # bitsandbytes layers


def linear_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Full name -> module of every linear layer except the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: module for name, module in model.named_modules()
            if _is_linear(module) and module is not head and name.rsplit(".", 1)[-1] not in _HEADS}


def module_names(model: torch.nn.Module) -> Counter:
    """Short layer name (the last part) -> how many layers have it, in model order."""
    return Counter(name.rsplit(".", 1)[-1] for name in linear_layers(model))


def choose_targets(model: torch.nn.Module, requested: list[str] | None) -> TargetChoice:
    layers = linear_layers(model)
    available = module_names(model)
    if not available:
        raise UserError("This model has no linear layers a LoRA could adapt.")
    if not requested or requested == [ALL_LINEAR]:
        names = list(available)
    else:
        missing = [name for name in requested if name != ALL_LINEAR and not _matches(name, layers)]
        if missing:
            model_type = getattr(getattr(model, "config", None), "model_type", "this model")
            raise UserError(f"target_modules {', '.join(missing)} match no layer of the model ({model_type}); a LoRA "
                            f"on them would train nothing there. Its linear layers are: {', '.join(available)}. Pick "
                            "from these, or leave target_modules empty to adapt them all.")
        names = list(available) if ALL_LINEAR in requested else list(requested)
    chosen = [module for name, module in layers.items() if any(_matches_one(name, target) for target in names)]
    from transformers.pytorch_utils import Conv1D

    return TargetChoice(names, any(isinstance(module, Conv1D) for module in chosen))


def _matches_one(full_name: str, target: str) -> bool:
    return full_name == target or full_name.endswith("." + target)


def _matches(target: str, layers: dict[str, torch.nn.Module]) -> bool:
    return any(_matches_one(name, target) for name in layers)


def describe_modules(model: torch.nn.Module) -> str:
    """The `--list-modules` text: each layer name, how many layers, and what auto-detection picks."""
    counts = module_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    lines = [f"Linear layers of this {model_type} model (target_modules candidates; empty = all of them):"]
    lines += [f"  {name:<24} x{count}" for name, count in counts.items()]
    return "\n".join(lines)
