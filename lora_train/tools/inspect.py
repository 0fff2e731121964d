"""`python -m lora_train inspect FILE [--json]`: what a LoRA file holds, from its tensors and header.

`inspect_lora` returns a JSON-ready dict: the model family (from keys, metadata or shapes),
module counts per component, ranks and alphas, LoCon convolutions and DoRA layers, the main
metadata, trigger words (the header's `modelspec.trigger_phrase` and the card's
"activation text"), the most frequent training tags, and whether `sshs_model_hash` matches
the tensor bytes. `format_report` turns it into the text the CLI prints.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.arch import ARCH_NAMES, detect_arch
from ..kohya.hashes import file_model_hash
from ..kohya.names import ALPHA, DORA_SCALE, DOWN, UP, count_by_component, group_by_module
from ..core.naming import sidecar_path
from ..kohya.read import read_lora_file

MAIN_METADATA = ("ss_output_name", "ss_sd_model_name", "ss_base_model_version", "ss_network_module",
                 "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_resolution", "ss_num_train_images",
                 "ss_num_epochs", "ss_steps", "ss_learning_rate", "ss_unet_lr", "ss_text_encoder_lr",
                 "ss_training_started_at", "ss_training_comment", "modelspec.architecture", "modelspec.title",
                 "modelspec.date", "sshs_model_hash")
COMPONENT_LABELS = {"unet": "UNet", "te": "text encoder", "te1": "text encoder 1", "te2": "text encoder 2",
                    "other": "other"}


def _top_tags(metadata: dict[str, str], count: int = 10) -> list[list[Any]]:
    try:
        folders = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except json.JSONDecodeError:
        return []
    totals: Counter = Counter()
    for tags in folders.values() if isinstance(folders, dict) else []:
        totals.update({tag.strip(): int(n) for tag, n in tags.items()})
    return [[tag, n] for tag, n in totals.most_common(count)]


def _trigger_words(path: Path, metadata: dict[str, str]) -> list[str]:
    words = [metadata.get("modelspec.trigger_phrase", "")]
    card = sidecar_path(path)
    if card.is_file():
        try:
            words.append(str(json.loads(card.read_text(encoding="utf-8")).get("activation text", "")))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    return list(dict.fromkeys(word for word in words if word))


def inspect_lora(path: str | Path) -> dict[str, Any]:
    """A summary of a kohya-format LoRA file; UserError when it is unreadable or holds no LoRA."""
    path = Path(path)
    tensors, metadata = read_lora_file(path)
    modules = group_by_module(tensors)
    lora = {name: parts for name, parts in modules.items() if DOWN in parts and UP in parts}
    if not lora:
        raise UserError(f"{path} holds no kohya-format LoRA modules (keys like lora_unet_..._lora_down.weight).")
    ranks = {name: parts[DOWN].shape[0] for name, parts in lora.items()}
    alphas = {float(parts[ALPHA].item()) if ALPHA in parts else float(ranks[name]) for name, parts in lora.items()}
    stored_hash = metadata.get("sshs_model_hash")
    arch = detect_arch({key: tuple(value.shape) for key, value in tensors.items()}, metadata)
    return {
        "file": str(path),
        "architecture": arch,
        "base_model": ARCH_NAMES[arch].title if arch else "unknown",
        "modules": count_by_component(lora),
        "other_modules": len(modules) - len(lora),
        "ranks": sorted(set(ranks.values())),
        "alphas": sorted(alphas),
        "conv_layers": sum(parts[DOWN].ndim == 4 and tuple(parts[DOWN].shape[2:]) != (1, 1)
                           for parts in lora.values()),
        "dora_layers": sum(DORA_SCALE in parts for parts in lora.values()),
        "dtypes": sorted({str(tensor.dtype).removeprefix("torch.") for tensor in tensors.values()}),
        "trigger_words": _trigger_words(path, metadata),
        "top_tags": _top_tags(metadata),
        "hash_matches": None if stored_hash is None else stored_hash == file_model_hash(path),
        "metadata": {key: metadata[key] for key in MAIN_METADATA if key in metadata},
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    modules = ", ".join(f"{COMPONENT_LABELS.get(part, part)} {count}" for part, count in report["modules"].items())
    lines = [
        ("File", report["file"]),
        ("Base model", report["base_model"]),
        ("Modules", modules + (f" (+{report['other_modules']} not plain LoRA)" if report["other_modules"] else "")),
        ("Rank (dim)", ", ".join(map(str, report["ranks"]))),
        ("Alpha", ", ".join(f"{alpha:g}" for alpha in report["alphas"])),
        ("LoCon convs", str(report["conv_layers"] or "none")),
        ("DoRA", f"yes ({report['dora_layers']} layers)" if report["dora_layers"] else "no"),
        ("Tensor dtype", ", ".join(report["dtypes"])),
        ("Trigger words", " | ".join(report["trigger_words"]) or "none recorded"),
        ("Top tags", ", ".join(f"{tag} ({count})" for tag, count in report["top_tags"]) or "none recorded"),
    ]
    if report["hash_matches"] is not None:
        lines.append(("Hash", "matches the tensors" if report["hash_matches"] else "DOES NOT match the tensors"))
    text = [f"{label + ':':<15}{value}" for label, value in lines]
    if report["metadata"]:
        text.append("Metadata:")
        text += [f"  {key}: {value}" for key, value in report["metadata"].items()]
    return "\n".join(text)
