"""What the "LLM LoRA" tab asks of the worker: a training job, a data preview, answers with and without
adapters. Each runs `<worker python> -m lora_train llm ...` in a subprocess (the model lives there, never in
the WebUI process, which imports no torch or transformers); results come back as JSON.

Adapters go to their own folder (`LLM-LoRA` beside the image LoRA folder, e.g. models/LLM-LoRA), never into
models/Lora, whose card list would show them as broken image LoRAs.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config.load import build_config
from ..core.errors import UserError
from ..text.schema import TextConfig, check_text_config
from .runner import JobSpec
from .worker_env import EXTENSION_ROOT

ADAPTER_FOLDER = "LLM-LoRA"
TOOL_TIMEOUT_S = 1800


def adapters_dir(lora_dir: Path) -> Path:
    return Path(lora_dir).parent / ADAPTER_FOLDER


@dataclass
class LlmWorker:
    """Runs `llm` tools with the worker interpreter."""

    python: str
    work_dir: Path

    def _run(self, args: list[str]) -> Any:
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([str(EXTENSION_ROOT), env.get("PYTHONPATH", "")]).strip(os.pathsep)
        try:
            done = subprocess.run([self.python, "-m", "lora_train", "llm", *args, "--json"], capture_output=True,
                                  text=True, encoding="utf-8", errors="replace", env=env, timeout=TOOL_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"The worker ({self.python}) could not run: {exc}.") from None
        if done.returncode:
            errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
            raise UserError(errors[-1].removeprefix("error: ") if errors else
                            f"The worker failed (exit code {done.returncode}): {done.stderr.strip()[-500:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def preview(self, config: dict[str, Any], rows: int = 3) -> dict[str, Any]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / "llm_preview.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return self._run(["preview", "--config", str(path), "--rows", str(rows)])

    def compare(self, prompt: str, adapters: list[str], base: str | None) -> dict[str, str]:
        if not adapters:
            raise UserError("Train an adapter first, or give adapter folders (one per line, FOLDER or FOLDER:WEIGHT).")
        return self._run(["generate", *adapters, "--prompt", prompt, *(["--base", base] if base else [])])


def job_config(values: dict[str, Any], lora_dir: Path) -> dict[str, Any]:
    """The tab's values as a checked text config whose adapter goes to the LLM-LoRA folder."""
    config = {"task_type": "text-generation", "output_dir": str(adapters_dir(lora_dir)),
              **{key: value for key, value in values.items() if value not in (None, "")}}
    build_config(config, "the LLM LoRA tab", True, TextConfig, check_text_config)  # refuse bad values now
    return config


def job_spec(python: str, config: dict[str, Any], work_dir: Path) -> JobSpec:
    return JobSpec(python, config, Path(work_dir) / f"llm-{config.get('output_name', 'my_llm_lora')}",
                   config.get("output_name", "my_llm_lora"), [str(EXTENSION_ROOT)])


def preview_html(preview: dict[str, Any]) -> str:
    """The rows as the model sees them; the learned part highlighted."""
    head = (f"Template: <b>{html.escape(preview['template'])}</b> · {preview['train_rows']} training / "
            f"{preview['val_rows']} eval sequences · tokens min {preview['tokens_min']}, mean "
            f"{preview['tokens_mean']}, max {preview['tokens_max']} · <mark>learned</mark>")
    notes = "".join(f'<div class="lora-train-message lora-train-warning">{html.escape(n)}</div>'
                    for n in preview["notes"])
    rows = "".join('<pre class="lora-train-llm-row">' + "".join(
        f"<mark>{html.escape(text)}</mark>" if learned else html.escape(text) for text, learned in row) + "</pre>"
        for row in preview["rows"])
    return f'<div class="lora-train-llm-preview"><div>{head}</div>{notes}{rows}</div>'


def eval_text(points: list[tuple[int, float, float]]) -> str:
    """The eval losses so far, one line."""
    return " · ".join(f"step {step}: eval loss {loss:.4f} (perplexity {ppl:.2f})" for step, loss, ppl in points)
