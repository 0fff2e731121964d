"""Conversations and raw text -> token ids and labels, with the loss on the responses only.

The response mask is computed by prefix difference: the prompt rendered alone (with the generation
prompt) must be a prefix of the prompt + response, and the difference is the response. Each part is
tokenized on its own, so the prompt's tokens are exactly what inference feeds the model. Labels are
set per part, never by comparing with the pad id: the EOS that ends a response is always learned,
also when pad == eos (a response whose text holds no EOS gets one appended).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .templates import render

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeReport:
    truncated: int = 0  # rows longer than cutoff_len, cut
    dropped: list[str] = field(default_factory=list)  # why rows could not be used


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def bos_prefix(tokenizer, text: str) -> list[int]:
    """[bos] when the tokenizer adds a BOS of its own and the rendered text does not already start with it."""
    bos = tokenizer.bos_token_id
    if bos is None or (tokenizer.bos_token and text.startswith(tokenizer.bos_token)):
        return []
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if probe and probe[0] == bos else []


def encode_conversation(tokenizer, turns: list[dict[str, str]], train_on_inputs: bool = False) -> Encoded:
    """Ids and labels of one conversation; every assistant turn is learned. ValueError if none can be."""
    eos = tokenizer.eos_token_id
    parts: list[tuple[str, bool]] = []  # (text, learned)
    done = ""
    for index, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        try:
            prompt = render(tokenizer, turns[:index], add_generation_prompt=True)
            full = render(tokenizer, turns[:index + 1])
        except Exception as exc:  # a model's template may refuse an order of roles
            raise ValueError(f"the chat template cannot render this conversation ({exc})") from None
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently once the answer is added, so the "
                             "answer cannot be told apart; use `template:` to pick a fallback format")
        parts += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    ids: list[int] = bos_prefix(tokenizer, done)
    labels = [IGNORE] * len(ids)
    for text, learned in parts:
        tokens = _tokens(tokenizer, text)
        if learned and eos is not None and eos not in tokens:
            tokens.append(eos)
        ids += tokens
        labels += tokens if (learned or train_on_inputs) else [IGNORE] * len(tokens)
    if all(label == IGNORE for label in labels):
        raise ValueError("the answer is empty once rendered")
    return Encoded(ids, labels)


def encode_document(tokenizer, text: str, cutoff_len: int, overlap: int) -> list[Encoded]:
    """A raw text as windows of cutoff_len tokens; a window's first `overlap` tokens repeat the previous
    window's end as context and are not learned again."""
    ids = bos_prefix(tokenizer, text) + _tokens(tokenizer, text)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    windows, stride = [], cutoff_len - overlap
    for start in range(0, max(len(ids) - overlap, 1), stride):
        chunk = ids[start:start + cutoff_len]
        context = overlap if start else 0
        labels = [IGNORE] * min(context, len(chunk)) + chunk[context:]
        if any(label != IGNORE for label in labels):
            windows.append(Encoded(chunk, labels))
    return windows


def truncate(example: Encoded, cutoff_len: int) -> Encoded:
    return Encoded(example.input_ids[:cutoff_len], example.labels[:cutoff_len])


def encode_all(tokenizer, conversations: list[list[dict[str, str]]], documents: list[str], cutoff_len: int,
               overlap: int, train_on_inputs: bool) -> tuple[list[Encoded], EncodeReport]:
    """Every row encoded and cut to cutoff_len; rows that cannot be used are reported, not raised."""
    report, examples = EncodeReport(), []
    for number, turns in enumerate(conversations, start=1):
        try:
            example = encode_conversation(tokenizer, turns, train_on_inputs)
        except ValueError as exc:
            report.dropped.append(f"row {number}: {exc}")
            continue
        if len(example) > cutoff_len:
            report.truncated += 1
            example = truncate(example, cutoff_len)
            if all(label == IGNORE for label in example.labels):
                report.dropped.append(f"row {number}: its prompt alone is longer than cutoff_len ({cutoff_len})")
                continue
        examples.append(example)
    for text in documents:
        examples += encode_document(tokenizer, text, cutoff_len, overlap)
    return examples, report


def pack(examples: list[Encoded], cutoff_len: int) -> list[Encoded]:
    """Rows joined in order into sequences of at most cutoff_len tokens (a row is never split)."""
    packed: list[Encoded] = []
    current = Encoded([], [])
    for example in examples:
        if current.input_ids and len(current) + len(example) > cutoff_len:
            packed.append(current)
            current = Encoded([], [])
        current = Encoded(current.input_ids + example.input_ids, current.labels + example.labels)
    if current.input_ids:
        packed.append(current)
    return packed
