"""Tools on text adapters: stack several with weights into one adapter, merge one into a full model.

Stacking uses peft's `add_weighted_adapter` with `cat` (rank = sum of ranks: the exact weighted sum
of the adapters' updates, whatever their ranks). peft returns silently when the new name exists, which
would hand back a stale adapter: the name is checked first. Merging bakes the adapter into the base
weights (`merge_and_unload`) and saves a full model folder as safetensors, never over the base model.
Both outputs appear complete or not at all and never replace an existing folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.atomic import write_new_folder
from ..core.errors import UserError
from .adapter import TEMPLATE_FILE, read_training_config
from .encode import bos_prefix
from .model import DTYPES, classify_base_model, load_model, load_tokenizer
from .templates import choose_template

STACKED = "stacked"


def adapter_base(adapter: Path, base: str | None) -> str:
    """The base model to load: the one given, else the one the adapter was trained on."""
    if base:
        return base
    trained_on = read_training_config(adapter).get("base_model")
    if not trained_on:
        try:
            trained_on = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        except (OSError, ValueError, KeyError):
            trained_on = None
    if not trained_on:
        raise UserError(f"{adapter} does not say which base model it was trained on: give it with --base.")
    return trained_on


def _check_adapter(path: Path) -> Path:
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"{path} is not a PEFT adapter folder (no adapter_config.json). Give a folder saved by "
                        "`lora_train llm` or peft.")
    return path


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


def load_stack(model, adapters: list[tuple[Path, float]], name: str = STACKED):
    """A PeftModel holding each adapter and their weighted sum as `name` (active)."""
    from peft import PeftModel

    paths = [_check_adapter(Path(path)) for path, _ in adapters]
    peft_model = PeftModel.from_pretrained(model, str(paths[0]), adapter_name="a0")
    for index, path in enumerate(paths[1:], start=1):
        peft_model.load_adapter(str(path), adapter_name=f"a{index}")
    if name in peft_model.peft_config:  # add_weighted_adapter would return silently, keeping the old one
        raise UserError(f"An adapter named {name!r} is already loaded: its result would be stale. Use another name.")
    peft_model.add_weighted_adapter([f"a{i}" for i in range(len(paths))], [w for _, w in adapters], name,
                                    combination_type="cat")
    if name not in peft_model.peft_config:
        raise UserError(f"peft did not create the stacked adapter {name!r}.")
    peft_model.set_adapter(name)
    return peft_model


def stack_adapters(adapters: list[tuple[Path, float]], out: Path, base: str | None = None, dtype: str = "fp32",
                   trust_remote_code: bool = False) -> Path:
    """Save the weighted sum of the adapters as one PEFT adapter folder `out`."""
    base = adapter_base(Path(adapters[0][0]), base)
    out = _check_output(out, base)
    model, tokenizer = _load(base, dtype, trust_remote_code)
    stacked = load_stack(model, adapters)
    for adapter_name in [n for n in stacked.peft_config if n != STACKED]:
        stacked.delete_adapter(adapter_name)
    tokenizer = _adapter_tokenizer(Path(adapters[0][0]), tokenizer)

    def write(staging: Path) -> None:
        stacked.save_pretrained(str(staging), selected_adapters=[STACKED], safe_serialization=True)
        nested = staging / STACKED  # peft saves a non-default adapter in a subfolder
        if nested.is_dir():
            for item in nested.iterdir():
                item.rename(staging / item.name)
            nested.rmdir()
        tokenizer.save_pretrained(str(staging))
        (staging / "stack.json").write_text(json.dumps(
            {"adapters": [{"path": str(p), "weight": w} for p, w in adapters], "combination": "cat"}, indent=2))

    return write_new_folder(out, write)


def merge_adapter(adapter: Path, out: Path, base: str | None = None, dtype: str = "fp32",
                  trust_remote_code: bool = False) -> Path:
    """Save base + adapter as a full model folder (safetensors) with the adapter's tokenizer and template."""
    from peft import PeftModel

    adapter = _check_adapter(Path(adapter))
    base = adapter_base(adapter, base)
    out = _check_output(out, base)
    model, tokenizer = _load(base, dtype, trust_remote_code)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()  # returns the model
    tokenizer = _adapter_tokenizer(adapter, tokenizer)

    def write(staging: Path) -> None:
        merged.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

    return write_new_folder(out, write)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64) -> str:
    """Greedy answer to one user prompt, formatted with the tokenizer's chat template; stops at EOS."""
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
    from peft import PeftModel

    first = _check_adapter(Path(adapters[0][0]))
    base = adapter_base(first, base)
    model, tokenizer = _load(base, "fp32", trust_remote_code)
    tokenizer = _adapter_tokenizer(first, tokenizer)
    answers = {"base": generate(model.eval(), tokenizer, prompt, max_new_tokens)}
    if len(adapters) == 1 and adapters[0][1] == 1.0:
        tuned = PeftModel.from_pretrained(model, str(first))
    else:
        tuned = load_stack(model, adapters)
    answers["adapter"] = generate(tuned.eval(), tokenizer, prompt, max_new_tokens)
    return answers
