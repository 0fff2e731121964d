"""The tab builds, and its page config serialises, under A1111 1.10's gradio 3.41.2, Forge's 4.40 and ours.

Each pinned gradio lives in its own venv (gradio_venvs.py: `.venv-gradio3` / `.venv-gradio4`, made on
first use; the test is skipped, saying why, only when pip cannot reach a package index). The same probe runs in both interpreters: it builds the tabs (Train LoRA
and LLM LoRA) for the standalone host and for a WebUI-like host (test renders and prompt insertion
shown), and reports the components and events, and that no training library (torch, diffusers...) was imported into the UI's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gradio_venvs import pinned_gradio_python

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import gradio as gr
    from lora_train.webui.hosts.host import TabSettings
    from lora_train.webui.hosts.standalone_host import StandaloneHost
    from lora_train.webui.hosts.paths import PathPolicy
    from lora_train.webui.llm_tab.tab import build_llm_tab
    from lora_train.webui.image_tab.tab import build_tab

    class WebUILike(StandaloneHost):
        can_render = True
        inserts_prompts = True

    tmp = Path(sys.argv[1])
    report = {"version": gr.__version__}
    for host_class in (StandaloneHost, WebUILike):
        host = host_class(None, TabSettings(tmp / "loras", tmp / "runs"), PathPolicy())
        blocks = build_tab(host)
        config = blocks.get_config_file()
        report[host_class.__name__] = {
            "ids": sorted(b.elem_id for b in blocks.blocks.values() if getattr(b, "elem_id", None)),
            "events": len(blocks.fns),
            "config_components": len(config["components"]),
        }
        llm = build_llm_tab(host)
        llm.get_config_file()
        report[host_class.__name__]["llm_ids"] = sorted(b.elem_id for b in llm.blocks.values()
                                                        if getattr(b, "elem_id", None))
    report["heavy_imports"] = sorted({name.split(".")[0] for name in sys.modules} & {
        "torch", "diffusers", "transformers", "accelerate", "peft", "safetensors", "bitsandbytes"})
    print(json.dumps(report))
''')


def _probe(python: Path | str, tmp_path: Path) -> dict:
    # A named trainer interpreter: else building the tab starts the worker venv's set-up in the background, a
    # detached pip install (torch included, under a gradio venv without it) into the checkout's .venv-worker
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", LORA_TRAIN_PYTHON=sys.executable)
    result = subprocess.run([str(python), "-c", PROBE, str(tmp_path)], capture_output=True, text=True, env=env,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check(report: dict) -> None:
    assert report["heavy_imports"] == [], "the WebUI process must not import the training libraries"
    standalone, webui = report["StandaloneHost"], report["WebUILike"]
    for ids in (standalone["ids"], webui["ids"]):
        for elem_id in ("lora_train_base_model", "lora_train_data_dir", "lora_train_start", "lora_train_stop",
                        "lora_train_resume", "lora_train_progress", "lora_train_chart", "lora_train_samples",
                        "lora_train_log", "lora_train_result", "lora_train_insert", "lora_train_test",
                        "lora_train_lora_rank", "lora_train_optimizer", "lora_train_sample_prompts",
                        "lora_train_caption_run", "lora_train_caption_gallery", "lora_train_caption_restore"):
            assert elem_id in ids, f"{elem_id} missing under gradio {report['version']}"
    for ids in (standalone["llm_ids"], webui["llm_ids"]):
        for elem_id in ("lora_train_llm_model_choice", "lora_train_llm_load", "lora_train_llm_preview_html",
                        "lora_train_llm_start", "lora_train_llm_chart", "lora_train_llm_answer_base",
                        "lora_train_llm_answer_adapted", "lora_train_llm_cutoff_len", "lora_train_llm_lora_rank"):
            assert elem_id in ids, f"{elem_id} missing under gradio {report['version']}"
        assert not set(ids) & set(standalone["ids"]), "the two tabs share element ids"
    assert webui["events"] == standalone["events"] >= 12
    assert webui["config_components"] >= 100


def test_builds_under_the_current_gradio(tmp_path):
    report = _probe(sys.executable, tmp_path)
    assert int(report["version"].split(".")[0]) >= 4
    _check(report)


@pytest.mark.slow
@pytest.mark.parametrize(("venv", "version"), [("gradio3", "3.41.2"), ("gradio4", "4.40.0")],
                         ids=["a1111-1.10", "forge"])
def test_builds_under_the_webuis_gradio(tmp_path, venv, version):
    report = _probe(pinned_gradio_python(venv), tmp_path)
    assert report["version"] == version
    _check(report)
