"""Text LoRA training end to end on tiny models: the seed Q/A set is learned through `train --config` (answer
loss far below the base model's, a memorised answer generated and ended with EOS, the adapter reloads in plain
peft with the trained weights); resume continues the same loss curve; a stopped run saves a usable adapter,
never over another run's, and its resumed run finishes it under the same name; a killed save leaves no half
adapter; a tiny GGUF file trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lora_train.core.events import Fanout
from lora_train.text.encode import IGNORE, encode_conversation
from lora_train.text.rows import to_conversation
from lora_train.text.tools import generate
from lora_train.train.job import run_job
from lora_train.train.stop import StopRequest
from text_support import ROOT, SEED, seed_rows, text_config

FAST = {"learning_rate": 0.01, "scheduler": "constant", "lora_dropout": 0.0, "log_with": "none", "batch_size": 4}


@pytest.fixture(autouse=True)
def own_lock(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


@torch.no_grad()
def answer_loss(model, tokenizer) -> float:
    """Mean loss per answer token over the seed rows."""
    total, count = 0.0, 0
    for row in seed_rows():
        example = encode_conversation(tokenizer, to_conversation(row))
        labels = torch.tensor([example.labels])
        n = int((labels[:, 1:] != IGNORE).sum())
        total += model(input_ids=torch.tensor([example.input_ids]), labels=labels).loss.item() * n
        count += n
    return total / count


def train(tmp_path, base, stop=None, events=None, **keys):
    config = text_config(base_model=str(base), metadata_path=str(SEED), output_dir=str(tmp_path / "out"),
                         **{**FAST, **keys})
    return run_job(config, Fanout(*([events] if events else [])),
                   StopRequest() if stop is None else stop)


@pytest.mark.slow
def test_tiny_llama_learns_the_seed_set_through_train_config(tmp_path, tiny_llm):
    base = tiny_llm("llama")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"task_type": "text-generation", "base_model": str(base),
                                      "metadata_path": str(SEED), "output_dir": str(tmp_path / "out"),
                                      "epochs": 14, "save_steps": 42, **FAST, "learning_rate": 0.02}))
    result = subprocess.run([sys.executable, "-m", "lora_train", "train", "--config", str(config), "--events",
                             "jsonl"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "LORA_TRAIN_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr + result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines()]
    adapter = tmp_path / "out" / "my_llm_lora"
    assert events[-1]["type"] == "done" and events[-1]["path"] == str(adapter)
    assert {"adapter_model.safetensors", "adapter_config.json", "template.json", "training_config.yaml",
            "tokenizer.json"} <= {p.name for p in adapter.iterdir()}
    assert (tmp_path / "out" / "train.log").is_file()
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert set(adapter_config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                     "down_proj"}

    tokenizer = AutoTokenizer.from_pretrained(adapter)  # carries the template it was trained with
    assert json.loads((adapter / "template.json").read_text())["name"] == "alpaca"
    model = AutoModelForCausalLM.from_pretrained(base)
    before = answer_loss(model, tokenizer)
    tuned = PeftModel.from_pretrained(model, adapter).eval()
    after = answer_loss(tuned, tokenizer)
    assert after < 0.15 * before, (before, after)

    row = seed_rows()[1]
    answer = generate(tuned, tokenizer, row["instruction"], max_new_tokens=40)
    assert answer.strip() == row["output"]  # memorised, then stopped at EOS (else it would run on)

    # The file holds exactly the trained weights: those of the final checkpoint give the same logits.
    state = load_file(tmp_path / "out" / "checkpoint-my_llm_lora-42" / "lora_params.st")
    rebuilt = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    with torch.no_grad():
        for name, param in rebuilt.named_parameters():
            if "lora_" in name:
                param.copy_(state[f"model.{name}"])
        ids = torch.tensor([encode_conversation(tokenizer, to_conversation(row)).input_ids])
        assert torch.equal(tuned(input_ids=ids).logits, rebuilt(input_ids=ids).logits)


def losses_of(events: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["type"] == "step"}


@pytest.mark.slow
def test_resume_continues_the_same_loss_curve_and_a_stop_saves_a_usable_adapter(tmp_path, tiny_llm):
    base = tiny_llm("llama")
    keys = {"max_train_steps": 6, "lora_dropout": 0.1, "val_size": 2, "save_steps": 100}
    straight: list[dict] = []
    train(tmp_path / "a", base, events=straight.append, **keys)

    stop, first = StopRequest(), []

    def stop_at_three(event):
        first.append(event)
        if event["type"] == "step" and event["step"] == 3:
            stop.signalled = True

    theirs = tmp_path / "b" / "out" / "my_llm_lora"  # an adapter of that name that another run saved
    theirs.mkdir(parents=True)
    (theirs / "adapter_config.json").write_text("{}")
    stopped = train(tmp_path / "b", base, stop=stop, events=stop_at_three, **keys)
    assert first[-1]["type"] == "done" and first[-1]["interrupted"] is True, first[-3:]
    assert stopped.name == "my_llm_lora_v2" and (tmp_path / "b" / "out" / "checkpoint-my_llm_lora-3").is_dir()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), stopped)  # usable

    second: list[dict] = []
    resumed = train(tmp_path / "b", base, events=second.append, resume_from_checkpoint="latest", **keys)
    assert resumed == stopped, "a resumed run finishes under the name it started with, over its own partial adapter"
    assert sorted(p.name for p in theirs.iterdir()) == ["adapter_config.json"], "another run's adapter is kept"
    start = next(e for e in second if e["type"] == "start")  # the curve so far, for the tab's chart
    assert [tuple(point) for point in start["losses"]] == list(losses_of(first).items())
    assert [tuple(point) for point in start.get("eval_losses", [])] == [
        (e["step"], e["eval_loss"]) for e in first if e["type"] == "eval"]
    curve = {**losses_of(first), **losses_of(second)}
    assert sorted(curve) == list(range(1, 7))
    assert curve == pytest.approx(losses_of(straight), abs=1e-5)
    evals = [e for e in second if e["type"] == "eval"]
    assert evals and evals[-1]["perplexity"] == pytest.approx(2.718281828 ** evals[-1]["eval_loss"], rel=1e-3)


def test_a_killed_save_leaves_no_half_adapter_and_the_next_run_cleans_up(tmp_path, tiny_llm, monkeypatch):
    import lora_train.text.adapter as adapter_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the weights, before the last file

    monkeypatch.setattr(adapter_module.yaml, "safe_dump", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, tiny_llm("llama"), max_train_steps=1)
    out = tmp_path / "out"
    assert not [p.name for p in out.iterdir() if "my_llm_lora" in p.name]
    monkeypatch.undo()
    (out / ".my_llm_lora.k1ll3d00.tmp").mkdir()  # what a SIGKILL during the save leaves
    (out / ".my_llm_lora.k1ll3d00.tmp" / "adapter_model.safetensors").write_bytes(b"half")
    events: list[dict] = []
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    saved = train(tmp_path, tiny_llm("llama"), events=events.append, max_train_steps=1)
    assert any("partial save" in e.get("message", "") for e in events)
    assert sorted(p.name for p in out.iterdir() if "my_llm_lora" in p.name) == [saved.name] == ["my_llm_lora"]


@pytest.mark.slow
def test_a_tiny_gguf_file_loads_and_trains(tmp_path, tiny_llm):
    from lora_train.fixtures.tiny_llm import write_tiny_gguf

    gguf = write_tiny_gguf(tiny_llm("llama"), tmp_path / "tiny-q.gguf")
    events: list[dict] = []
    adapter = train(tmp_path, gguf, events=events.append, epochs=4)
    losses = list(losses_of(events).values())
    assert losses[-1] < losses[0] * 0.8, losses
    assert (adapter / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((adapter / "training_config.yaml").read_text())["base_model"] == str(gguf)


def test_llm_command_trains_a_config_without_task_type(tmp_path, tiny_llm, capsys):
    from lora_train.cli import main

    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"base_model": str(tiny_llm("gpt2")), "metadata_path": str(SEED),
                                      "output_dir": str(tmp_path / "out"), "log_with": "none"}))
    assert main(["llm", "--config", str(config), "--set", "max_train_steps=1", "--events", "jsonl"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["type"] == "done" and done["path"] == str(tmp_path / "out" / "my_llm_lora")
    assert json.loads((tmp_path / "out" / "my_llm_lora" / "adapter_config.json").read_text())["fan_in_fan_out"]


def test_a_bf16_base_trains_with_fp32_lora_weights(tmp_path, tiny_llm):
    events: list[dict] = []
    adapter = train(tmp_path, tiny_llm("gpt_neox"), events=events.append, dtype="bf16", max_train_steps=2,
                    target_modules=["query_key_value"])
    assert any("bfloat16" in e.get("message", "") for e in events)
    tensors = load_file(adapter / "adapter_model.safetensors")
    assert tensors and all(t.dtype == torch.float32 for t in tensors.values())
    assert all("query_key_value" in name for name in tensors)


def test_each_step_reports_the_learning_rate_it_used(tmp_path, tiny_llm):
    events = []
    train(tmp_path, tiny_llm("llama"), events=events.append, max_train_steps=2, scheduler="cosine", learning_rate=1e-3)
    assert [event["lr"] for event in events if event["type"] == "step"] == pytest.approx([1e-3, 5e-4])
