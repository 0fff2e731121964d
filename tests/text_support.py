"""Shared pieces of the text-engine tests: the seed alpaca data and tiny models saved once per session."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "llm" / "alpaca_tiny.jsonl"
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def seed_rows() -> list[dict]:
    return [json.loads(line) for line in SEED.read_text().splitlines() if line.strip()]


def corpus() -> list[str]:
    """Text the tiny tokenizers are trained on: the seed rows and the templates' words."""
    texts = [f"{r['instruction']} {r['input']} {r['output']}" for r in seed_rows()]
    return texts + ["### Instruction:\n### Response:\nUSER: ASSISTANT: system user assistant\n"] * 3


def build(folder: Path, arch: str = "llama", chat_template: str | None = None) -> Path:
    from lora_train.fixtures.tiny_llm import build_tiny_llm

    return build_tiny_llm(folder, corpus(), arch=arch, chat_template=chat_template)


def text_config(**values):
    """A validated TextConfig from keys (paths as given)."""
    from lora_train.config.load import build_config
    from lora_train.text.schema import TextConfig, check_text_config

    return build_config({"task_type": "text-generation", **values}, "the test", True, TextConfig, check_text_config)


def make_adapter(base: Path, folder: Path, rank: int, seed: int, targets: list[str]) -> Path:
    """An adapter with random (non-zero) up and down weights, saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(folder)
    return folder
