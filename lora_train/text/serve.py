"""`python -m lora_train.text.serve`: a long-lived process that holds a causal LM for the LLM tab.

The WebUI process imports no torch, so the tab's load / preview / test actions are requests to
this worker. Protocol, one JSON object per line: requests on stdin `{"id": 1, "op": "load", ...}`,
answers on stdout `{"id": 1, "ok": true, "result": {...}, "loaded": ...}` or `{"id": 1, "ok": false,
"error": "message", "loaded": ...}`, where `loaded` describes the model held after the request (or
null). Library output goes to stderr, so stdout carries answers only. Ops:

    load      base_model, dtype, load_in_4bit, trust_remote_code   -> the model's description
    unload                                                          -> frees its memory
    preview   config (text config keys), rows                       -> the engine's preview: the first rows
              as the model sees them (learned / masked runs) and token statistics (tokenizer only)
    generate  prompt, adapters [[folder, weight], ...], template, max_new_tokens
                                                                    -> the answer without and with them
    park / unpark                                                   -> move the model off the GPU while a
                                                                       training job needs it, and back
    status, quit

Every step calls the engine's own functions (model loading, templates, encoding, stacking, generation).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from ..config.load import build_config
from ..core.errors import UserError
from .adapter import base_mismatches
from .model import classify_base_model, load_model, load_tokenizer, quantization_config, resolve_dtype
from .preview import preview_data
from .schema import TextConfig, check_text_config
from .templates import choose_template
from .tools import _adapter_tokenizer, generate, load_stack


@dataclass
class Loaded:
    """The model the worker holds, and the tokenizer's own chat template (fallbacks are set per request)."""

    base_model: str
    model: Any
    tokenizer: Any
    own_template: str | None
    device: torch.device
    dtype: torch.dtype
    quantized: bool
    load_seconds: float
    parked: bool = False

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        return {"base_model": self.base_model, "model_type": getattr(self.model.config, "model_type", "?"),
                "parameters": params, "device": "cpu" if self.parked else str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "quantized": self.quantized,
                "chat_template": bool(self.own_template), "load_seconds": self.load_seconds}


class Worker:
    """The state between requests: at most one loaded model."""

    def __init__(self) -> None:
        self.loaded: Loaded | None = None

    def respond(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one request; problems become `ok: false` with a message, never a crash."""
        number, op = request.get("id"), request.get("op")
        args = {key: value for key, value in request.items() if key not in ("id", "op")}
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        started = time.monotonic()
        try:
            if handler is None:
                raise UserError(f"Unknown request {op!r}.")
            result = handler(**args)
            answer = {"ok": True, "result": {**result, "seconds": round(time.monotonic() - started, 3)}}
        except UserError as exc:
            answer = {"ok": False, "error": str(exc)}
        except torch.cuda.OutOfMemoryError:
            answer = {"ok": False, "error": "The GPU ran out of memory. Unload the model, or load it in 4-bit or a "
                                            "smaller dtype, or choose a smaller model."}
        except Exception as exc:  # a bug: one line for the tab, the traceback on stderr (the console)
            traceback.print_exc()
            answer = {"ok": False, "error": f"Unexpected problem in the model worker ({type(exc).__name__}: {exc}); "
                                            "details in the console."}
        # every answer says what is loaded now: a load that failed half-way may have dropped the old model
        return {"id": number, **answer, "loaded": self.loaded.describe() if self.loaded else None}

    # --- the model ------------------------------------------------------------------------
    def op_load(self, base_model: str, dtype: str = "auto", load_in_4bit: bool = False,
                trust_remote_code: bool = False) -> dict[str, Any]:
        started = time.monotonic()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = resolve_dtype(dtype, device)
        source = classify_base_model(base_model)  # a wrong path or file keeps the model that is loaded
        tokenizer = load_tokenizer(source, trust_remote_code)
        quantization = quantization_config(load_in_4bit, False, torch_dtype, device)
        self.op_unload()
        model = load_model(source, torch_dtype, quantization, trust_remote_code, device)
        if quantization is None:
            model.to(device)
        model.eval()
        own = getattr(tokenizer, "chat_template", None) or None
        self.loaded = Loaded(base_model, model, tokenizer, own, device, torch_dtype, quantization is not None,
                             round(time.monotonic() - started, 2))
        return self.loaded.describe()

    def op_unload(self) -> dict[str, Any]:
        was = self.loaded.base_model if self.loaded else None
        self.loaded = None
        _free_memory()
        return {"unloaded": was}

    def op_park(self) -> dict[str, Any]:
        """Move the model to the CPU so that a training job has the GPU (a quantized one is unloaded)."""
        if self.loaded is None or self.loaded.device.type == "cpu" or self.loaded.parked:
            return {"moved": False}
        if self.loaded.quantized:
            return {"moved": False, **self.op_unload()}
        self.loaded.model.to("cpu")
        self.loaded.parked = True
        _free_memory()
        return {"moved": True}

    def op_unpark(self) -> dict[str, Any]:
        if self.loaded is None or not self.loaded.parked:
            return {"moved": False}
        self.loaded.model.to(self.loaded.device)
        self.loaded.parked = False
        return {"moved": True}

    def op_status(self) -> dict[str, Any]:
        return {"loaded": self.loaded.describe() if self.loaded else None}

    def op_quit(self) -> dict[str, Any]:
        return {}

    # --- data and tests -------------------------------------------------------------------
    def op_preview(self, config: dict[str, Any], rows: int = 3) -> dict[str, Any]:
        """The engine's preview of a text config (its base model's tokenizer and its data)."""
        values = {**config, "task_type": "text-generation"}
        checked = build_config(values, "the preview's settings", True, TextConfig, check_text_config)
        return dataclasses.asdict(preview_data(checked, int(rows)))

    def op_generate(self, prompt: str, adapters: list[list[Any]] | None = None, template: str = "auto",
                    max_new_tokens: int = 64) -> dict[str, Any]:
        if self.loaded is None:
            raise UserError("Load a base model first (section 1).")
        if self.loaded.parked:
            raise UserError("The model is moved out of the GPU while a training job runs; test when it ends.")
        if not (prompt or "").strip():
            raise UserError("Type a prompt to test.")
        stack = [(Path(path), float(weight)) for path, weight in adapters or []]
        tokenizer = self.loaded.tokenizer
        tokenizer.chat_template = self.loaded.own_template  # not a fallback an earlier request set
        if stack:  # the prompt format the (first) adapter was trained with, for both answers
            tokenizer = _adapter_tokenizer(stack[0][0], tokenizer)
        else:
            choose_template(template, tokenizer)
        loaded, count = self.loaded, int(max_new_tokens)
        result: dict[str, Any] = {"without": generate(loaded.model, tokenizer, prompt, count)}
        if stack:
            try:
                peft_model = load_stack(loaded.model, stack)
            except Exception as exc:
                if any(type(module).__module__.startswith("peft.") for module in loaded.model.modules()):
                    self.op_unload()  # half-applied adapters: the base answers would be wrong from now on
                    raise UserError(f"The adapters could not be applied ({exc}). The model was left half-changed, "
                                    "so it was unloaded: load it again, with adapters trained on this base "
                                    "model.") from None
                raise
            try:
                result["with"] = generate(peft_model, tokenizer, prompt, count)
            finally:
                loaded.model = peft_model.unload()  # the base model again, without the LoRA layers
            result["notes"] = base_mismatches([path for path, _ in stack], loaded.base_model)
        return result


def _free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer requests line by line until `quit` or the end of input."""
    worker = Worker()
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            answer = {"id": None, "ok": False, "error": f"Not a JSON request: {line.strip()[:200]}"}
        else:
            answer = worker.respond(request)
        answers.write(json.dumps(answer, ensure_ascii=False) + "\n")
        answers.flush()
        if isinstance(request, dict) and request.get("op") == "quit":
            return


def main() -> int:
    from ..cli import quiet_libraries

    quiet_libraries()
    answers, sys.stdout = sys.stdout, sys.stderr  # libraries that print must not break the protocol
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
