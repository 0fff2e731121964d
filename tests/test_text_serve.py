"""The LLM tab's model worker (`python -m lora_train.text.serve`): its JSON-lines protocol on a tiny Llama.

What the tab depends on: a loaded model answers a prompt; with an adapter the answer is the one peft gives
with that adapter, and the base answer afterwards is the base model's again; the preview shows the rows
as the trainer encodes them (masked prompt, learned answer with its EOS) with token statistics; every
problem is an `ok: false` message, and the worker keeps answering after it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_train.text.serve import Worker, serve
from text_support import SEED, seed_rows

ROOT = Path(__file__).resolve().parents[1]
QUESTION = seed_rows()[0]["instruction"]


def random_adapter(base: Path, targets: list[str], folder: Path) -> Path:
    """A PEFT adapter with non-zero weights on `base` (saved as peft saves one)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False,
                                                  task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter(tiny_llm, tmp_path_factory) -> Path:
    return random_adapter(tiny_llm("llama"), ["q_proj", "v_proj", "down_proj"],
                          tmp_path_factory.mktemp("adapter") / "random_lora")


def ask(worker: Worker, op: str, **args) -> dict:
    answer = worker.respond({"id": 7, "op": op, **args})
    assert answer["id"] == 7
    assert answer["ok"], answer.get("error")
    return answer["result"]


def refusal(worker: Worker, op: str, **args) -> str:
    answer = worker.respond({"id": 1, "op": op, **args})
    assert answer["ok"] is False
    assert "Traceback" not in answer["error"]
    return answer["error"]


@pytest.mark.slow
def test_generate_without_and_with_an_adapter_matches_peft(tiny_llm, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lora_train.text.model import classify_base_model, load_tokenizer
    from lora_train.text.templates import choose_template
    from lora_train.text.tools import generate

    base = str(tiny_llm("llama"))
    worker = Worker()
    described = ask(worker, "load", base_model=base, dtype="fp32")
    assert described["model_type"] == "llama" and described["device"] == "cpu" and described["parameters"] > 0
    first = ask(worker, "generate", prompt=QUESTION, max_new_tokens=12)
    assert "with" not in first
    both = ask(worker, "generate", prompt=QUESTION, adapters=[[str(adapter), 1.0]], max_new_tokens=12)

    tokenizer = load_tokenizer(classify_base_model(base))
    choose_template("auto", tokenizer)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    assert both["with"] == generate(reference, tokenizer, QUESTION, 12)
    plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    assert both["without"] == first["without"] == generate(plain, tokenizer, QUESTION, 12)
    assert both["with"] != both["without"]
    again = ask(worker, "generate", prompt=QUESTION, max_new_tokens=12)
    assert again["without"] == first["without"]  # the adapter's layers were removed again

    stacked = ask(worker, "generate", prompt=QUESTION, adapters=[[str(adapter), 0.5], [str(adapter), 0.5]],
                  max_new_tokens=12)
    assert stacked["with"] == both["with"]  # half + half of the same adapter is the adapter
    assert ask(worker, "unload")["unloaded"] == base
    assert "Load a base model first" in refusal(worker, "generate", prompt=QUESTION)


def test_preview_shows_masked_prompts_learned_answers_and_statistics(tiny_llm, tmp_path):
    worker = Worker()
    config = {"base_model": str(tiny_llm("llama")), "metadata_path": str(SEED), "cutoff_len": 256, "val_size": 2,
              "text_overlap": 0, "output_dir": str(tmp_path)}
    result = ask(worker, "preview", config=config, rows=2)
    assert result["template"] == "alpaca" and len(result["rows"]) == 2  # the tiny model has no chat template
    first = result["rows"][0]
    prompt = "".join(text for text, learned in first if not learned)
    answer = "".join(text for text, learned in first if learned)
    assert "### Instruction:" in prompt and "### Response:" in prompt
    assert answer.endswith("</s>\n\n") and answer[:-6] not in prompt  # the answer and its EOS are learned
    assert (result["train_rows"], result["val_rows"]) == (len(seed_rows()) - 2, 2)
    assert result["tokens_min"] <= result["tokens_mean"] <= result["tokens_max"] and not result["notes"]
    cut = ask(worker, "preview", config={**config, "cutoff_len": result["tokens_max"] - 2})
    assert cut["tokens_max"] == result["tokens_max"] - 2 and "cutoff_len" in " ".join(cut["notes"])
    assert "cutoff_len" in refusal(worker, "preview", config={**config, "cutoff_len": 2})


@pytest.mark.slow
def test_problems_are_messages_and_the_worker_goes_on(tiny_llm, adapter, tmp_path):
    worker = Worker()
    (tmp_path / "old.bin").write_bytes(b"ggjt" + bytes(64))
    assert "legacy GGML" in refusal(worker, "load", base_model=str(tmp_path / "old.bin"))
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    assert "No usable training row" in refusal(worker, "preview", config={
        "base_model": str(tiny_llm("llama")), "metadata_path": str(tmp_path / "broken.jsonl"),
        "output_dir": str(tmp_path)})
    assert "Unknown request" in refusal(worker, "fly")
    ask(worker, "load", base_model=str(tiny_llm("llama")), dtype="fp32")
    wrong = worker.respond({"id": 3, "op": "load", "base_model": str(tmp_path / "old.bin")})
    assert wrong["ok"] is False and wrong["loaded"]["model_type"] == "llama"  # a wrong path keeps the model
    assert "not a PEFT adapter folder" in refusal(worker, "generate", prompt="hi", adapters=[[str(tmp_path), 1]])
    assert ask(worker, "status")["loaded"]["model_type"] == "llama"
    other = random_adapter(tiny_llm("gpt_neox"), ["query_key_value"], tmp_path / "neox_lora")
    error = refusal(worker, "generate", prompt="hi", adapters=[[str(adapter), 1], [str(other), 1]])
    assert "half-changed" in error and ask(worker, "status")["loaded"] is None  # never a silently changed base


@pytest.mark.slow
def test_json_lines_over_pipes(tiny_llm):
    """The real process: answers on stdout only (library output goes to stderr), one per request, in order."""
    requests = [{"id": 1, "op": "load", "base_model": str(tiny_llm("llama")), "dtype": "fp32"},
                {"id": 2, "op": "generate", "prompt": QUESTION, "max_new_tokens": 4},
                {"id": 3, "op": "load", "base_model": "/nowhere/model"}, {"id": 4, "op": "quit"}]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "lora_train.text.serve"], input="\n".join(map(json.dumps, requests))
                          + "\n", capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert [a["id"] for a in answers] == [1, 2, 3, 4]
    assert [a["ok"] for a in answers] == [True, True, False, True]
    assert isinstance(answers[1]["result"]["without"], str)
    assert "does not exist" in answers[2]["error"]


def test_a_line_that_is_not_json_gets_an_answer():
    out = io.StringIO()
    serve(io.StringIO("hello\n" + json.dumps({"id": 2, "op": "status"}) + "\n"), out)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["ok"] is False and "Not a JSON request" in first["error"]
    assert second == {"id": 2, "ok": True, "result": {"loaded": None, "seconds": second["result"]["seconds"]},
                      "loaded": None}
