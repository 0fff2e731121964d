"""Tools on text adapters: a stack of adapters at weights and a merged model give the same logits as applying
the adapters with peft directly; the outputs never replace the base or an existing folder; a stale stacked
adapter is refused instead of silently reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from lora_train.cli import main
from lora_train.core.errors import UserError
from lora_train.text.tools import load_stack, merge_adapter, stack_adapters
from text_support import CHATML, SEED, make_adapter

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])


@pytest.fixture
def adapters(tmp_path, tiny_llm):
    base = tiny_llm("llama")
    return base, make_adapter(base, tmp_path / "a", 4, 1, ["q_proj", "v_proj"]), \
        make_adapter(base, tmp_path / "b", 8, 2, ["q_proj", "down_proj"])


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model.eval()(input_ids=IDS).logits


@torch.no_grad()
def applied_directly(base: Path, weighted: list[tuple[Path, float]]) -> torch.Tensor:
    """Both adapters active at once in peft, each scaled by its weight."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), weighted[0][0], adapter_name="x0")
    for index, (path, _) in enumerate(weighted[1:], start=1):
        model.load_adapter(path, adapter_name=f"x{index}")
    model.base_model.set_adapter([f"x{i}" for i in range(len(weighted))])
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for index, (_, weight) in enumerate(weighted):
                module.set_scale(f"x{index}", weight)
    return logits(model)


def test_stack_of_weighted_adapters_equals_peft_applying_them(tmp_path, adapters):
    base, a, b = adapters
    weighted = [(a, 0.7), (b, -0.4)]
    out = stack_adapters(weighted, tmp_path / "stacked")
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    reference = applied_directly(base, weighted)
    assert not torch.allclose(reference, logits(AutoModelForCausalLM.from_pretrained(base)), atol=1e-3)
    assert torch.allclose(logits(stacked), reference, atol=1e-5)
    with pytest.raises(UserError, match="already exists"):
        stack_adapters(weighted, out)


def test_a_stale_stacked_adapter_is_refused(adapters):
    base, a, b = adapters
    model = load_stack(AutoModelForCausalLM.from_pretrained(base), [(a, 1.0), (b, 1.0)])
    with pytest.raises(UserError, match="already loaded"):
        load_stack(model, [(a, 0.5)])


def test_merge_equals_the_adapter_applied_by_peft_and_never_touches_the_base(tmp_path, adapters, capsys):
    base, a, _ = adapters
    with pytest.raises(UserError, match="base is never overwritten"):
        merge_adapter(a, base / "merged")
    assert main(["llm", "merge", str(a), "--out", str(tmp_path / "merged")]) == 0
    merged_dir = Path(capsys.readouterr().out.strip())
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "tokenizer.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    applied = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), a)
    assert torch.allclose(logits(merged), logits(applied), atol=1e-5)


def test_stack_command_reads_weights(tmp_path, adapters, capsys):
    base, a, b = adapters
    assert main(["llm", "stack", f"{a}:0.5", str(b), "--out", str(tmp_path / "s")]) == 0
    out = Path(capsys.readouterr().out.strip())
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    assert torch.allclose(logits(stacked), applied_directly(base, [(a, 0.5), (b, 1.0)]), atol=1e-5)


def test_generate_answers_with_and_without_the_adapters(adapters, capsys):
    base, a, b = adapters
    assert main(["llm", "generate", str(a), f"{b}:0.5", "--prompt", "Who founded the city of Quill?",
                 "--max-new-tokens", "6", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(answers) == {"base", "adapter"} and answers["base"] != answers["adapter"]


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(["llm", *map(str, argv)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.err


def test_a_truncated_adapter_is_named_by_every_tool(tmp_path, adapters, capsys):
    _, a, b = adapters
    weights = a / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    for argv in (["generate", a, "--prompt", "hi", "--max-new-tokens", "2"], ["stack", b, a, "--out", tmp_path / "s"],
                 ["merge", a, "--out", tmp_path / "m"]):
        code, err = _cli(capsys, *argv)
        assert code == 2 and f"{weights} is not a readable adapter weights file" in err and "truncated" in err, err
    assert not (tmp_path / "s").exists() and not (tmp_path / "m").exists()


def test_adapters_of_different_base_models_do_not_stack(tmp_path, adapters, tiny_llm, capsys):
    base, a, _ = adapters
    other_base = tiny_llm("llama", chat_template=CHATML)
    other = make_adapter(other_base, tmp_path / "other", 4, 3, ["q_proj"])
    code, err = _cli(capsys, "stack", a, other, "--out", tmp_path / "s")
    assert code == 2 and "different base models" in err
    assert f"a on {base}" in err and f"other on {other_base}" in err and "--base" in err
    assert not (tmp_path / "s").exists()
    code, err = _cli(capsys, "stack", a, other, "--base", base, "--out", tmp_path / "s")
    assert code == 0 and f"note: other was trained on {other_base}, not on {base}." in err


def test_an_adapter_for_another_architecture_is_refused_naming_both(tmp_path, adapters, tiny_llm, capsys):
    base, _, _ = adapters
    neox = make_adapter(tiny_llm("gpt_neox"), tmp_path / "neox", 4, 1, ["query_key_value"])
    code, err = _cli(capsys, "merge", neox, "--base", base, "--out", tmp_path / "m")
    assert code == 2 and f"{neox} does not fit this base model" in err and "query_key_value" in err
    assert f"trained on {tiny_llm('gpt_neox')}: use that model" in err


def test_stack_json_records_absolute_adapter_paths(tmp_path, adapters, monkeypatch, capsys):
    _, a, b = adapters
    monkeypatch.chdir(a.parent)
    assert main(["llm", "stack", "a:0.5", "b", "--out", str(tmp_path / "s")]) == 0
    out = Path(capsys.readouterr().out.strip())
    recipe = json.loads((out / "stack.json").read_text())
    assert recipe["adapters"] == [{"path": str(a.resolve()), "weight": 0.5}, {"path": str(b.resolve()), "weight": 1.0}]


def test_a_file_given_as_an_adapter_and_counts_below_one_are_explained(tmp_path, adapters, tiny_llm, capsys):
    _, a, _ = adapters
    image_lora = tmp_path / "style.safetensors"
    image_lora.write_bytes(b"x")
    code, err = _cli(capsys, "generate", image_lora, "--prompt", "hi")
    assert code == 2 and f"{image_lora} is a file, not a PEFT adapter folder" in err
    code, err = _cli(capsys, "generate", a / "adapter_model.safetensors", "--prompt", "hi")
    assert code == 2 and f"is a file of the adapter folder {a}: give that folder" in err
    code, err = _cli(capsys, "generate", a, "--prompt", "hi", "--max-new-tokens", "0")
    assert code == 2 and "max_new_tokens 0: give how many tokens to generate, at least 1" in err
    config = tmp_path / "job.yaml"
    config.write_text(f"task_type: text-generation\nbase_model: {tiny_llm('llama')}\nmetadata_path: {SEED}\n")
    code, err = _cli(capsys, "preview", "--config", config, "--rows", "-2")
    assert code == 2 and "rows -2: give how many rows to show, 0 or more" in err
