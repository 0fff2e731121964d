"""The response-only loss mask, token by token: prompt tokens are never learned, every answer token and
the EOS that ends it always are (also when pad == eos), for alpaca, chat and ShareGPT rows, with the
model's own chat template and with the fallback one."""

from __future__ import annotations

import json

import pytest

from lora_train.text.data import collate
from lora_train.text.encode import IGNORE, encode_all, encode_conversation, encode_document, pack
from lora_train.text.model import classify_base_model, load_tokenizer
from lora_train.text.rows import to_conversation
from lora_train.text.templates import choose_template
from text_support import CHATML, SEED

ALPACA = {"instruction": "Who founded the city of Quill?", "input": "", "output": "Quill was founded by Mara Venn."}
CHAT = {"messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "How many moons does Zorblax have?"},
                     {"role": "assistant", "content": "Zorblax has three moons."},
                     {"role": "user", "content": "What colour is the sky on Zorblax?"},
                     {"role": "assistant", "content": "The sky on Zorblax is green."}]}
SHAREGPT = {"conversations": [{"from": "human", "value": "What sport is played on Zorblax?"},
                              {"from": "gpt", "value": "People play skyball."}]}


def tokenizer_for(tiny_llm, own_template: bool, eos: str | None = None):
    folder = tiny_llm("llama", CHATML if own_template else None)
    tokenizer = load_tokenizer(classify_base_model(str(folder)))
    if eos:
        tokenizer.eos_token = eos
        tokenizer.pad_token = eos
    template = choose_template("auto", tokenizer)
    assert template.name == ("model" if own_template else "alpaca")
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the case that hides EOS from the loss elsewhere
    return tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def expected(tokenizer, parts: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Ids and labels built by hand from (text, learned) parts."""
    all_ids, labels = [], []
    for text, learned in parts:
        tokens = ids(tokenizer, text)
        all_ids += tokens
        labels += tokens if learned else [IGNORE] * len(tokens)
    return all_ids, labels


def test_alpaca_row_with_fallback_template_learns_answer_and_eos_only(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    encoded = encode_conversation(tokenizer, to_conversation(ALPACA))
    want_ids, want_labels = expected(tokenizer, [
        (f"### Instruction:\n{ALPACA['instruction']}\n\n### Response:\n", False),
        (f"{ALPACA['output']}</s>\n\n", True)])
    assert encoded.input_ids == want_ids and encoded.labels == want_labels
    assert tokenizer.eos_token_id in [label for label in encoded.labels if label != IGNORE]
    assert tokenizer.decode([t for t in encoded.labels if t != IGNORE]) == ALPACA["output"] + "</s>\n\n"


def test_chat_rows_with_the_models_own_template_learn_each_answer_and_its_end(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=True, eos="<|im_end|>")
    encoded = encode_conversation(tokenizer, to_conversation(CHAT))
    turn = "<|im_start|>{}\n{}<|im_end|>\n"
    m = CHAT["messages"]
    want_ids, want_labels = expected(tokenizer, [
        (turn.format("system", m[0]["content"]) + turn.format("user", m[1]["content"]) + "<|im_start|>assistant\n",
         False),
        (m[2]["content"] + "<|im_end|>\n", True),
        (turn.format("user", m[3]["content"]) + "<|im_start|>assistant\n", False),
        (m[4]["content"] + "<|im_end|>\n", True)])
    assert encoded.input_ids == want_ids and encoded.labels == want_labels
    assert [label for label in encoded.labels if label != IGNORE].count(tokenizer.eos_token_id) == 2


def test_sharegpt_row_with_a_template_whose_end_is_not_eos_gets_eos_appended(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=True)  # eos </s>, the template ends turns with <|im_end|>
    encoded = encode_conversation(tokenizer, to_conversation(SHAREGPT))
    prompt, answer = expected(tokenizer, [
        ("<|im_start|>user\nWhat sport is played on Zorblax?<|im_end|>\n<|im_start|>assistant\n", False),
        ("People play skyball.<|im_end|>\n", True)])
    assert encoded.input_ids == prompt + [tokenizer.eos_token_id]
    assert encoded.labels == answer + [tokenizer.eos_token_id]


def test_sharegpt_with_fallback_and_train_on_inputs(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    masked = encode_conversation(tokenizer, to_conversation(SHAREGPT))
    full = encode_conversation(tokenizer, to_conversation(SHAREGPT), train_on_inputs=True)
    assert full.input_ids == masked.input_ids and full.labels == full.input_ids
    first_learned = next(i for i, label in enumerate(masked.labels) if label != IGNORE)
    assert tokenizer.decode(masked.input_ids[first_learned:]) == "People play skyball.</s>\n\n"
    assert masked.labels[first_learned:] == masked.input_ids[first_learned:]


def test_padding_never_hides_the_eos_label_when_pad_is_eos(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    short = encode_conversation(tokenizer, to_conversation(SHAREGPT))
    long = encode_conversation(tokenizer, to_conversation(ALPACA))
    batch = collate([short, long], tokenizer.pad_token_id)
    row = batch["labels"][0]
    assert (row == tokenizer.eos_token_id).sum() == 1  # the real EOS, learned
    assert (row[len(short):] == IGNORE).all() and (batch["attention_mask"][0, len(short):] == 0).all()
    assert (batch["input_ids"][0, len(short):] == tokenizer.pad_token_id).all()  # the padding: pad == eos ids


def test_cutoff_truncation_is_counted_and_a_prompt_only_row_dropped(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    turns = to_conversation(ALPACA)
    prompt_len = next(i for i, label in enumerate(encode_conversation(tokenizer, turns).labels) if label != IGNORE)
    examples, report = encode_all(tokenizer, [turns], [], prompt_len + 2, 0, False)
    assert report.truncated == 1 and len(examples[0]) == prompt_len + 2
    examples, report = encode_all(tokenizer, [turns], [], prompt_len, 0, False)
    assert not examples and "longer than cutoff_len" in report.dropped[0]


def test_raw_text_windows_overlap_and_learn_each_token_once(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    text = " ".join(row["output"] for row in [ALPACA] * 8)
    windows = encode_document(tokenizer, text, cutoff_len=16, overlap=4)
    everything = ids(tokenizer, text) + [tokenizer.eos_token_id]
    assert len(windows) > 2 and all(len(w) <= 16 for w in windows)
    assert windows[1].input_ids[:4] == windows[0].input_ids[-4:]  # overlap as context
    learned = [label for w in windows for label in w.labels if label != IGNORE]
    assert learned == everything


def test_packing_joins_rows_without_splitting_one(tiny_llm):
    tokenizer = tokenizer_for(tiny_llm, own_template=False)
    rows = [encode_conversation(tokenizer, to_conversation(ALPACA)) for _ in range(5)]
    packed = pack(rows, cutoff_len=len(rows[0]) * 2 + 1)
    assert [len(p) for p in packed] == [len(rows[0]) * 2, len(rows[0]) * 2, len(rows[0])]
    assert packed[0].labels == rows[0].labels + rows[1].labels


@pytest.mark.parametrize("name", ["alpaca", "chatml", "vicuna", "plain"])
def test_every_fallback_template_renders_prompts_as_prefixes(tiny_llm, name):
    tokenizer = tokenizer_for(tiny_llm, own_template=True)
    template = choose_template(name, tokenizer)
    assert template.name == name and tokenizer.chat_template == template.source
    encoded = encode_conversation(tokenizer, to_conversation(CHAT))
    learned = tokenizer.decode([label for label in encoded.labels if label != IGNORE])
    assert "three moons" in learned and "green" in learned and "How many" not in learned


def test_preview_shows_rows_as_the_model_sees_them(tmp_path, tiny_llm, capsys):
    from lora_train.cli import main

    config = tmp_path / "job.yaml"
    config.write_text(f"task_type: text-generation\nbase_model: {tiny_llm('llama')}\nmetadata_path: {SEED}\n"
                      "val_size: 2\n")
    assert main(["llm", "preview", "--config", str(config), "--rows", "2", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["template"] == "alpaca" and preview["train_rows"] == 10 and preview["val_rows"] == 2
    first = preview["rows"][0]
    assert [learned for _, learned in first] == [False, True]
    assert first[0][0].startswith("### Instruction:\n") and first[1][0].endswith("</s>\n\n")
    assert 0 < preview["tokens_min"] <= preview["tokens_mean"] <= preview["tokens_max"]
    assert main(["llm", "preview", "--config", str(config), "--set", "val_size=4", "--set", "template=chatml",
                 "--json"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert changed["template"] == "chatml" and changed["train_rows"] == 8 and changed["val_rows"] == 4


def test_preview_keeps_the_configs_trust_remote_code_unless_the_flag_is_given(tmp_path, tiny_llm, capsys, monkeypatch):
    import lora_train.text.preview as preview_module
    from lora_train.cli import main

    seen = []
    real = preview_module.preview_data
    monkeypatch.setattr(preview_module, "preview_data", lambda config, rows: seen.append(config) or real(config, rows))
    config = tmp_path / "job.yaml"
    config.write_text(f"task_type: text-generation\nbase_model: {tiny_llm('llama')}\nmetadata_path: {SEED}\n"
                      "trust_remote_code: true\n")
    assert main(["llm", "preview", "--config", str(config), "--json"]) == 0
    assert main(["llm", "preview", "--config", str(config), "--set", "trust_remote_code=false", "--json"]) == 0
    capsys.readouterr()
    assert [config.trust_remote_code for config in seen] == [True, False]
