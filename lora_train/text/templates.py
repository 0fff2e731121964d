"""Prompt formats: the model's own chat template, or a named fallback written as a chat template too.

Every format is a Jinja chat template, so training, the saved adapter (its tokenizer carries the
template) and inference all render conversations with `apply_chat_template`. A fallback ends
each answer with the EOS token, so a model trained on it learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACKS = {
    "alpaca": (
        "{% for m in messages %}"
        "{% if m.role == 'system' %}{{ m.content }}\n\n"
        "{% elif m.role == 'user' %}### Instruction:\n{{ m.content }}\n\n"
        "{% else %}### Response:\n{{ m.content }}{{ eos_token }}\n\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}### Response:\n{% endif %}"),
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "{% if m.role == 'assistant' %}{{ eos_token }}{% else %}<|im_end|>{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "vicuna": (
        "{% for m in messages %}"
        "{% if m.role == 'system' %}{{ m.content }} "
        "{% elif m.role == 'user' %}USER: {{ m.content }} "
        "{% else %}ASSISTANT: {{ m.content }}{{ eos_token }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
    "plain": (
        "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}{{ eos_token }}"
        "{% else %}{{ m.content }}\n{% endif %}{% endfor %}"),
}


@dataclass
class Template:
    name: str  # "model" for the model's own, else a FALLBACKS key
    source: str  # the Jinja text


def choose_template(requested: str, tokenizer) -> Template:
    """`auto`: the tokenizer's own chat template, else alpaca; a name: that fallback. Sets it on the tokenizer."""
    own = getattr(tokenizer, "chat_template", None)
    if requested == "auto" and isinstance(own, str) and own.strip():
        return Template("model", own)
    name = "alpaca" if requested == "auto" else requested
    tokenizer.chat_template = FALLBACKS[name]
    return Template(name, FALLBACKS[name])


def render(tokenizer, turns: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The conversation as text, through the tokenizer's chat template."""
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=add_generation_prompt)
