"""Tools on text adapters: stack several with weights into one adapter, merge one into a full model.

Stacking uses peft's `add_weighted_adapter` with `cat` (rank = sum of ranks: the exact weighted sum
of the adapters' updates, whatever their ranks). peft returns silently when the new name exists, which
would hand back a stale adapter: the name is checked first. Merging bakes the adapter into the base
weights (`merge_and_unload`) and saves a full model folder as safetensors, never over the base model.
Both outputs appear complete or not at all and never replace an existing folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..core.atomic import write_new_folder
from ..core.errors import UserError
from .adapter import TEMPLATE_FILE, base_mismatches, check_adapter_folder, trained_base
from .encode import bos_prefix
from .model import DTYPES, classify_base_model, load_model, load_tokenizer
from .templates import choose_template

STACKED = "stacked"


def adapter_base(adapters: list[Path], base: str | None) -> str:
    """The base model to load: the one given (a note for each adapter recorded on another one), else the one
    the adapters were trained on; UserError when they were trained on different ones, naming each."""
    if base:
        for note in base_mismatches(adapters, base):
            print(f"note: {note} Using --base {base} as asked.", file=sys.stderr)
        return base
    recorded = {adapter: trained_base(adapter) for adapter in adapters}
    trained_on = recorded[adapters[0]]
    if not trained_on:
        raise UserError(f"{adapters[0]} does not say which base model it was trained on: give it with --base.")
    if base_mismatches(adapters, trained_on):
        which = "; ".join(f"{adapter.name} on {name or 'an unrecorded model'}" for adapter, name in recorded.items())
        raise UserError(f"These adapters were trained on different base models ({which}): each changes the weights "
                        "of its own base, so they do not stack. Use adapters of one base model; if these name one "
                        "model in two places, give it with --base.")
    return trained_on


def _check_output(out: Path, base: str) -> Path:
    out = out.expanduser().resolve()
    base_path = Path(base).expanduser().resolve()
    if out == base_path or base_path in out.parents or (base_path.is_file() and out == base_path.parent):
        raise UserError(f"--out {out} is the base model's folder or inside it: the base is never overwritten. "
                        "Choose a new folder.")
    if out.exists():
        raise UserError(f"--out {out} already exists and is never overwritten: choose a new folder name.")
    return out


def _load(base: str, dtype: str, trust_remote_code: bool):
    source = classify_base_model(base)
    return load_model(source, DTYPES[dtype], trust_remote_code=trust_remote_code), \
        load_tokenizer(source, trust_remote_code)


def _adapter_tokenizer(adapter: Path, tokenizer):
    """The tokenizer with the chat template the adapter was trained with (a PEFT folder from elsewhere: the
    model's own template, else alpaca, as training chooses)."""
    template = adapter / TEMPLATE_FILE
    if template.is_file():
        tokenizer.chat_template = json.loads(template.read_text(encoding="utf-8"))["chat_template"]
    else:
        choose_template("auto", tokenizer)
    return tokenizer


def _apply(model, adapter: Path, name: str):
    """`model` with the adapter loaded as `name` (a PeftModel); UserError when it does not fit the model."""
    from peft import PeftModel

    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter), adapter_name=name)
            return model
        return PeftModel.from_pretrained(model, str(adapter), adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        raise UserError(f"{adapter} does not fit this base model ({reason}). It was trained on "
                        f"{trained_base(adapter) or 'an unrecorded model'}: use that model.") from exc


def load_stack(model, adapters: list[tuple[Path, float]], name: str = STACKED):
    """A PeftModel holding each adapter and their weighted sum as `name` (active)."""
    paths = [check_adapter_folder(Path(path)) for path, _ in adapters]
    if name in getattr(model, "peft_config", {}):  # add_weighted_adapter would return silently, keeping the old one
        raise UserError(f"An adapter named {name!r} is already loaded: its result would be stale. Use another name.")
    peft_model = model
    for index, path in enumerate(paths):
        peft_model = _apply(peft_model, path, f"a{index}")
    peft_model.add_weighted_adapter([f"a{i}" for i in range(len(paths))], [w for _, w in adapters], name,
                                    combination_type="cat")
    if name not in peft_model.peft_config:
        raise UserError(f"peft did not create the stacked adapter {name!r}.")
    peft_model.set_adapter(name)
    return peft_model


def _checked(adapters: list[tuple[Path, float]], base: str | None) -> tuple[list[tuple[Path, float]], str]:
    """The adapters as checked folders, and the base model they go on."""
    checked = [(check_adapter_folder(Path(path)), weight) for path, weight in adapters]
    return checked, adapter_base([path for path, _ in checked], base)


def stack_adapters(adapters: list[tuple[Path, float]], out: Path, base: str | None = None, dtype: str = "fp32",
                   trust_remote_code: bool = False) -> Path:
    """Save the weighted sum of the adapters as one PEFT adapter folder `out`; `stack.json` lists them
    (absolute paths) with their weights."""
    adapters, base = _checked(adapters, base)
    out = _check_output(out, base)
    model, tokenizer = _load(base, dtype, trust_remote_code)
    stacked = load_stack(model, adapters)
    for adapter_name in [n for n in stacked.peft_config if n != STACKED]:
        stacked.delete_adapter(adapter_name)
    tokenizer = _adapter_tokenizer(adapters[0][0], tokenizer)
    recipe = {"adapters": [{"path": str(path.expanduser().resolve()), "weight": weight} for path, weight in adapters],
              "combination": "cat"}

    def write(staging: Path) -> None:
        stacked.save_pretrained(str(staging), selected_adapters=[STACKED], safe_serialization=True)
        nested = staging / STACKED  # peft saves a non-default adapter in a subfolder
        if nested.is_dir():
            for item in nested.iterdir():
                item.rename(staging / item.name)
            nested.rmdir()
        tokenizer.save_pretrained(str(staging))
        (staging / "stack.json").write_text(json.dumps(recipe, indent=2), encoding="utf-8")

    return write_new_folder(out, write)


def merge_adapter(adapter: Path, out: Path, base: str | None = None, dtype: str = "fp32",
                  trust_remote_code: bool = False) -> Path:
    """Save base + adapter as a full model folder (safetensors) with the adapter's tokenizer and template."""
    [(adapter, _)], base = _checked([(adapter, 1.0)], base)
    out = _check_output(out, base)
    model, tokenizer = _load(base, dtype, trust_remote_code)
    merged = _apply(model, adapter, "default").merge_and_unload()  # returns the model
    tokenizer = _adapter_tokenizer(adapter, tokenizer)

    def write(staging: Path) -> None:
        merged.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

    return write_new_folder(out, write)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64) -> str:
    """Greedy answer to one user prompt, formatted with the tokenizer's chat template; stops at EOS."""
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens {max_new_tokens}: give how many tokens to generate, at least 1 (e.g. 64).")
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = torch.tensor([bos_prefix(tokenizer, text) + tokenizer(text, add_special_tokens=False)["input_ids"]],
                       device=model.device)
    output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


def compare_answers(prompt: str, adapters: list[tuple[Path, float]], base: str | None = None,
                    max_new_tokens: int = 64, trust_remote_code: bool = False) -> dict[str, str]:
    """Greedy answers to one prompt from the base model and from it with the adapters (stacked at their
    weights), both formatted with the template the first adapter was trained with."""
    adapters, base = _checked(adapters, base)
    first = adapters[0][0]
    model, tokenizer = _load(base, "fp32", trust_remote_code)
    tokenizer = _adapter_tokenizer(first, tokenizer)
    answers = {"base": generate(model.eval(), tokenizer, prompt, max_new_tokens)}
    tuned = _apply(model, first, "default") if len(adapters) == 1 and adapters[0][1] == 1.0 else \
        load_stack(model, adapters)
    answers["adapter"] = generate(tuned.eval(), tokenizer, prompt, max_new_tokens)
    return answers
