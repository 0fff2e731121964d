"""The browser tests of what behaves apart under A1111 1.10's gradio 3.41.2, again with the server under that
gradio (`.venv-gradio3`, LORA_TRAIN_UI_PYTHON): the caption restore of a chosen backup while the 1 s update
runs, and Interrupt then Resume finishing the same LoRA. One pytest run of those tests, with their output on
failure; the rest of the browser tests run under 3.41 the same way by hand (docs/webui.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_venvs import pinned_gradio_python

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
UNDER_GRADIO3 = ["test_caption_browser.py::test_the_chosen_backup_is_the_one_restored",
                 "test_tab_browser.py::test_resume_after_interrupt_finishes_the_same_lora_with_one_card_and_the_whole_chart"]


def test_caption_restore_and_resume_under_gradio_3(playwright_api, tmp_path):
    env = dict(os.environ, LORA_TRAIN_UI_PYTHON=str(pinned_gradio_python("gradio3")))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                             str(tmp_path / "runs"), *(str(HERE / test) for test in UNDER_GRADIO3)],
                            capture_output=True, text=True, env=env, cwd=HERE.parents[1], timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and f"{len(UNDER_GRADIO3)} passed" in output, output[-6000:]
