"""`python -m lora_train inspect FILE [--json]`: what a LoRA file holds, from its tensors and header.

`inspect_lora` returns a JSON-ready dict: the model family (from keys, metadata or shapes),
module counts per component, ranks and alphas, LoCon convolutions and DoRA layers, the main
metadata, trigger words (the header's `modelspec.trigger_phrase` and the card's
"activation text"), the most frequent training tags, whether `sshs_model_hash` matches
the tensor bytes, the key style (kohya, LyCORIS, diffusers / PEFT, and the Flux styles of other trainers) and,
per block (the block-weight ids BASE, IN01 ... OUT11; Flux: CLIP, IN, D00 ..., S00 ..., OUT), the modules, ranks
and alphas, to choose merge settings. A Flux LoRA also gets `inspect_flux`'s summary (module kinds, blocks, flow
settings).
`format_report` turns it into the text the CLI prints. A PEFT adapter of a language model (its folder
or its weights file) and other folders go to `inspect_adapter`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..families.interface import DitParts
from ..families.recognise import lora_family
from ..kohya.hashes import file_model_hash
from ..kohya.names import ALPHA, DORA_SCALE, DOWN, UP, count_by_component
from ..core.naming import sidecar_path
from ..kohya.read import read_lora_file
from .blocks import block_of, block_order
from .flux_keys import STYLES
from .inspect_adapter import PEFT_FORMAT, format_adapter_report, inspect_adapter
from .inspect_flux import flux_summary, format_flux
from .key_styles import kohya_style, model_adapter_key
from .lora_file import not_a_lora

MAIN_METADATA = ("ss_output_name", "ss_sd_model_name", "ss_base_model_version", "ss_network_module",
                 "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_resolution", "ss_num_train_images",
                 "ss_num_epochs", "ss_steps", "ss_learning_rate", "ss_unet_lr", "ss_text_encoder_lr",
                 "ss_training_started_at", "ss_training_comment", "modelspec.architecture", "modelspec.title",
                 "modelspec.date", "sshs_model_hash")
SOURCE_LABELS = {"kohya": "kohya", "lycoris": "LyCORIS", "diffusers": "diffusers / PEFT", **STYLES}
COMPONENT_LABELS = {"unet": "UNet", "te": "text encoder", "te1": "text encoder 1", "te2": "text encoder 2",
                    "other": "other"}
FLUX_COMPONENTS = {"unet": "transformer", "te1": "CLIP-L", "te2": "T5"}


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


def _per_block(ranks: dict[str, int], alphas: dict[str, float], arch: str | None) -> list[dict[str, Any]]:
    blocks: dict[str, list[str]] = {}
    for name in ranks:
        blocks.setdefault(block_of(name, arch) or "other", []).append(name)
    return [{"block": block, "modules": len(names), "ranks": sorted({ranks[name] for name in names}),
             "alphas": sorted({alphas[name] for name in names})}
            for block, names in sorted(blocks.items(), key=lambda item: block_order(item[0]))]


def inspect_lora(path: str | Path) -> dict[str, Any]:
    """A summary of a LoRA file (kohya, LyCORIS or diffusers / PEFT keys) or a PEFT adapter; UserError when it
    is unreadable or holds no LoRA."""
    path = Path(path)
    if path.is_dir():
        return inspect_adapter(path)
    tensors, metadata = read_lora_file(path)
    modules, source = kohya_style(tensors, metadata)
    lora = {name: parts for name, parts in modules.items() if DOWN in parts and UP in parts}
    if not lora and model_adapter_key(tensors):
        return inspect_adapter(path)
    if not lora:
        raise not_a_lora(path, tensors)
    if source == "kohya" and metadata.get("ss_network_module", "").startswith("lycoris"):
        source = "lycoris"
    ranks = {name: parts[DOWN].shape[0] for name, parts in lora.items()}
    alpha_of = {name: float(parts[ALPHA].item()) if ALPHA in parts else float(ranks[name])
                for name, parts in lora.items()}
    stored_hash = metadata.get("sshs_model_hash")
    found = lora_family({f"{name}.{suffix}": tuple(value.shape) for name, parts in modules.items()
                         for suffix, value in parts.items()}, metadata)
    flux = found is not None and isinstance(found.parts, DitParts)
    return {
        "file": str(path),
        "format": SOURCE_LABELS[source],
        "architecture": found.id if found else None,
        "base_model": found.names.title if found else "unknown",
        "modules": count_by_component(lora),
        "other_modules": len(modules) - len(lora),
        "ranks": sorted(set(ranks.values())),
        "alphas": sorted(set(alpha_of.values())),
        "blocks": _per_block(ranks, alpha_of, found.id if found else None),
        "flux": flux_summary(ranks, alpha_of, metadata) if flux else None,
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
    if report["format"] == PEFT_FORMAT:
        return format_adapter_report(report)
    labels = {**COMPONENT_LABELS, **(FLUX_COMPONENTS if report["flux"] else {})}
    modules = ", ".join(f"{labels.get(part, part)} {count}" for part, count in report["modules"].items())
    lines = [
        ("File", report["file"]),
        ("Format", report["format"]),
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
    if report["flux"]:
        text += format_flux(report["flux"])
    text.append("Per block:")
    text += [f"  {row['block']:<6} {row['modules']:>4} modules  rank {', '.join(map(str, row['ranks']))}  "
             f"alpha {', '.join(f'{alpha:g}' for alpha in row['alphas'])}" for row in report["blocks"]]
    if report["metadata"]:
        text.append("Metadata:")
        text += [f"  {key}: {value}" for key, value in report["metadata"].items()]
    return "\n".join(text)
