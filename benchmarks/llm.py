"""Text LoRA speed and memory: lora_train against a plain transformers Trainer + peft, side by side.

Both train the same LoRA (every linear layer, same rank, learning rate, batch size, epochs) on the same
model and the same encoded rows (the seed alpaca set, repeated), each in its own process, and report
tokens/s (training tokens, padding excluded, over the wall time from model load to saved adapter),
peak process RSS and, on a GPU, peak VRAM.

    .venv/bin/python benchmarks/llm.py                          # a tiny Llama built in code (CPU: ~1 min)
    .venv/bin/python benchmarks/llm.py --size small --epochs 2  # 8 layers x 1024 wide, random weights (GPU)
    .venv/bin/python benchmarks/llm.py --model /path/to/model  # a real model folder
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(ROOT))
SEED = ROOT / "examples" / "llm" / "alpaca_tiny.jsonl"
SETTINGS = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 1e-3, "scheduler": "constant",
            "optimizer": "adamw", "batch_size": 4, "cutoff_len": 256, "log_with": "none", "seed": 0}


def build_model(folder: Path, size: str) -> Path:
    """A Llama-style model with random weights and a tokenizer trained on the seed rows."""
    import torch
    from transformers import AutoModelForCausalLM

    from lora_train.fixtures.tiny_llm import tiny_config, train_tokenizer

    rows = [json.loads(line) for line in SEED.read_text().splitlines() if line.strip()]
    tokenizer = train_tokenizer([f"{r['instruction']} {r['input']} {r['output']}" for r in rows] +
                                ["### Instruction:\n### Response:\n"] * 3)
    config = tiny_config("llama", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    if size == "small":
        config.update({"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
                       "num_attention_heads": 16, "num_key_value_heads": 16, "initializer_range": 0.02})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def data_file(folder: Path, repeat: int) -> Path:
    path = folder / "data.jsonl"
    path.write_text(SEED.read_text() * repeat)
    return path


def encoded_rows(model: str, data: Path):
    """The rows as both runs train on them: lora_train's template and response-only labels."""
    from lora_train.text.encode import encode_all
    from lora_train.text.model import classify_base_model, load_tokenizer
    from lora_train.text.rows import read_rows
    from lora_train.text.templates import choose_template

    tokenizer = load_tokenizer(classify_base_model(model))
    choose_template("auto", tokenizer)
    rows = read_rows([data])
    return tokenizer, encode_all(tokenizer, rows.conversations, [], SETTINGS["cutoff_len"], 0, False)[0]


def run_ours(model: str, data: Path, out: Path, epochs: int) -> None:
    from lora_train.core.events import Fanout
    from lora_train.text.schema import TextConfig
    from lora_train.train.job import run_job
    from lora_train.train.stop import StopRequest

    os.environ["LORA_TRAIN_LOCK_DIR"] = str(out)
    run_job(TextConfig(base_model=model, metadata_path=str(data), output_dir=str(out), epochs=epochs, **SETTINGS),
            Fanout(), StopRequest())


def run_trainer(model: str, data: Path, out: Path, epochs: int) -> None:
    """What LLaMA-Factory's sft stage comes down to: Trainer + peft over pre-encoded rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from lora_train.text.data import collate
    from lora_train.text.targets import choose_targets

    tokenizer, rows = encoded_rows(model, data)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if torch.cuda.is_available()
                                                else torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=SETTINGS["lora_rank"], lora_alpha=SETTINGS["lora_alpha"],
                                                 lora_dropout=0.0, target_modules=choose_targets(base, None).names,
                                                 task_type="CAUSAL_LM"))
    arguments = TrainingArguments(output_dir=str(out), per_device_train_batch_size=SETTINGS["batch_size"],
                                  num_train_epochs=epochs, learning_rate=SETTINGS["learning_rate"],
                                  lr_scheduler_type="constant", optim="adamw_torch", save_strategy="no",
                                  report_to=[], logging_strategy="no", remove_unused_columns=False,
                                  use_cpu=not torch.cuda.is_available(), seed=SETTINGS["seed"],
                                  disable_tqdm=True)
    Trainer(model=peft_model, args=arguments, train_dataset=rows,
            data_collator=lambda batch: collate(batch, tokenizer.pad_token_id)).train()
    peft_model.save_pretrained(out / "adapter")


def worker(kind: str, model: str, data: Path, out: Path, epochs: int) -> None:
    import torch

    tokens = sum(len(row) for row in encoded_rows(model, data)[1]) * epochs
    started = time.perf_counter()
    (run_ours if kind == "ours" else run_trainer)(model, data, out, epochs)
    seconds = time.perf_counter() - started
    vram = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"tokens": tokens, "seconds": seconds, "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_vram_mb": vram}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: build one of --size)")
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=4, help="copies of the 12 seed rows")
    parser.add_argument("--worker", choices=("ours", "trainer"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, Path(args.data), Path(args.out), args.epochs)
        return
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        model = args.model or str(build_model(temp / "model", args.size))
        data = data_file(temp, args.repeat)
        print(f"model {model}, {args.repeat * 12} rows, {args.epochs} epochs, batch {SETTINGS['batch_size']}")
        print(f"{'run':<22}{'tokens/s':>10}{'seconds':>10}{'peak RSS MB':>13}{'peak VRAM MB':>14}")
        for kind, label in (("ours", "lora_train"), ("trainer", "Trainer + peft")):
            result = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", model, "--data",
                                     str(data), "--out", str(temp / kind), "--epochs", str(args.epochs)],
                                    capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if result.returncode:
                print(f"{label}: failed\n{result.stderr[-2000:]}")
                continue
            numbers = json.loads(result.stdout.strip().splitlines()[-1])
            vram = f"{numbers['peak_vram_mb']:.0f}" if numbers["peak_vram_mb"] is not None else "-"
            print(f"{label:<22}{numbers['tokens'] / numbers['seconds']:>10.0f}{numbers['seconds']:>10.1f}"
                  f"{numbers['peak_rss_mb']:>13.0f}{vram:>14}")


if __name__ == "__main__":
    main()
