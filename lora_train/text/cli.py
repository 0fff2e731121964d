"""`python -m lora_train llm ...`: train a text LoRA, list a model's layers, stack or merge adapters.

    llm --config x.yaml [--set key=value]     train (task_type text-generation; same as `train`)
    llm --list-modules MODEL                  the linear layers target_modules can name
    llm stack A[:W] B[:W] --out DIR           the weighted sum of adapters as one adapter
    llm merge ADAPTER --out DIR               base model + adapter as a full model folder
    llm preview --config x.yaml [--set k=v]   the first rows as the model sees them, token statistics
    llm generate A[:W].. --prompt TEXT        the answer without and with the adapter(s)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from ..config.load import add_override_option
from ..core.errors import UserError

DTYPE_CHOICES = ("fp32", "fp16", "bf16")


def add_llm_parser(sub, add_job_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = sub.add_parser("llm", help="train a text LoRA on a causal language model; list layers, stack, merge",
                            description="Text (LLM) LoRAs. `llm --config x.yaml` trains (keys: the Text generation "
                                        "section of docs/config.md); the tools below work on saved adapters.")
    add_job_arguments(parser)
    parser.add_argument("--list-modules", metavar="MODEL", help="print the linear layers of a model folder, .gguf "
                                                                "file or hub id (the target_modules candidates)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the model's own Python code (--list-modules and the tools)")
    tools = parser.add_subparsers(dest="llm_tool", metavar="TOOL")
    stack = tools.add_parser("stack", help="stack adapters with weights into one adapter folder")
    stack.add_argument("adapters", nargs="+", metavar="ADAPTER[:WEIGHT]", help="adapter folders, weight 1 if not given")
    merge = tools.add_parser("merge", help="merge an adapter into its base model, saved as a new model folder")
    merge.add_argument("adapter", help="the adapter folder")
    for tool in (stack, merge):
        tool.add_argument("--out", required=True, help="the new folder (never an existing one, never the base)")
        tool.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32", help="precision of the loaded model")
    preview = tools.add_parser("preview", help="show the first rows with the template applied and the learned "
                                               "part marked, and token-length statistics")
    preview.add_argument("--config", "-c", required=True, help="the text config (base_model and data are read)")
    preview.add_argument("--rows", type=int, default=3, help="how many rows to show")
    add_override_option(preview)
    generate = tools.add_parser("generate", help="answer one prompt with the base model and with the adapter(s)")
    generate.add_argument("adapters", nargs="+", metavar="ADAPTER[:WEIGHT]", help="adapter folders (stacked)")
    generate.add_argument("--prompt", required=True, help="the user message")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    for tool in (stack, merge, generate):
        tool.add_argument("--base", help="base model (default: the one the adapter was trained on)")
    for tool in (stack, merge, preview, generate):
        tool.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
        tool.add_argument("--json", action="store_true", help="print JSON")


def run_llm(args, train: Callable[..., int]) -> int:
    """Dispatch `llm`; `train(args, overrides)` is the CLI's training runner. UserErrors go to the caller."""
    if args.llm_tool in ("stack", "merge"):
        from .tools import merge_adapter, stack_adapters

        path = stack_adapters([_weighted(item) for item in args.adapters], Path(args.out), args.base, args.dtype,
                              args.trust_remote_code) if args.llm_tool == "stack" else \
            merge_adapter(Path(args.adapter), Path(args.out), args.base, args.dtype, args.trust_remote_code)
        print(json.dumps({"path": str(path)}) if args.json else path)
        return 0
    if args.llm_tool == "preview":
        from ..config import load_config, parse_overrides
        from .preview import format_preview, preview_data

        forced = {"task_type": "text-generation", **({"trust_remote_code": True} if args.trust_remote_code else {})}
        config = load_config(args.config, {**parse_overrides(args.overrides), **forced})
        preview = preview_data(config, args.rows)
        print(json.dumps(dataclasses.asdict(preview), ensure_ascii=False) if args.json else format_preview(preview))
        return 0
    if args.llm_tool == "generate":
        from .tools import compare_answers

        answers = compare_answers(args.prompt, [_weighted(item) for item in args.adapters], args.base,
                                  args.max_new_tokens, args.trust_remote_code)
        print(json.dumps(answers, ensure_ascii=False) if args.json else
              f"base model:\n{answers['base']}\n\nwith the adapter(s):\n{answers['adapter']}")
        return 0
    if args.list_modules:
        print(list_modules(args.list_modules, args.trust_remote_code))
        return 0
    if not args.config:
        raise UserError("Give a config with --config x.yaml (see configs/llm_alpaca.yaml), or --list-modules MODEL, "
                        "or a tool: llm stack / llm merge.")
    from ..config.load import read_yaml

    task = read_yaml(args.config).get("task_type", "text-generation")
    if task != "text-generation":
        raise UserError(f"{args.config} has task_type {task}: `llm` trains text LoRAs only. Use `train --config` "
                        "for it.")
    return train(args, {"task_type": "text-generation"})


def _weighted(item: str) -> tuple[Path, float]:
    path, sep, weight = item.rpartition(":")
    if sep and not Path(item).exists():
        try:
            return Path(path), float(weight)
        except ValueError:
            raise UserError(f"{item}: write an adapter as FOLDER or FOLDER:WEIGHT (e.g. my_lora:0.7).") from None
    return Path(item), 1.0


def list_modules(model_path: str, trust_remote_code: bool = False) -> str:
    """The `--list-modules` report of a model (built without its weights)."""
    from .model import classify_base_model, load_model_skeleton
    from .targets import describe_modules

    return describe_modules(load_model_skeleton(classify_base_model(model_path), trust_remote_code))
