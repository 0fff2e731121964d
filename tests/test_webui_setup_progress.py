"""The worker set-up's progress as the tab shows it: the step in words and the package pip is on, never pip's own
lines (which stay in the log)."""

from __future__ import annotations

from lora_train.webui.worker.setup_progress import progress_text, step_line

PIP_LOG = [  # what pip printed into the set-up's log on a WebUI whose venv has its own PyYAML
    step_line(1, 3, "creating the worker environment in /x/.venv-worker"),
    step_line(2, 3, "installing the trainer's packages (the WebUI's torch is reused)"),
    "  $ pip install -r /x/.venv-worker/requirements.txt -c /x/.venv-worker/constraints.txt",
    "  Requirement already satisfied: torch==2.14.1 in /webui/venv/lib/python3.10/site-packages",
    "  Collecting diffusers==0.42.1 (from -r /x/.venv-worker/requirements.txt (line 1))",
    "    Downloading diffusers-0.42.1-py3-none-any.whl.metadata (20 kB)",
    "  Downloading diffusers-0.42.1-py3-none-any.whl (3.1 MB)",
    "  Installing collected packages: PyYAML, safetensors, diffusers, transformers, peft",
    "    Attempting uninstall: PyYAML",
    "      Found existing installation: PyYAML 6.0.1",
    "      Can't uninstall 'PyYAML'. No files were found to uninstall.",
    "  Successfully installed PyYAML-6.0.3 diffusers-0.42.1 peft-0.21.2 safetensors-0.8.0 transformers-5.23.0",
    step_line(3, 3, "installing kohya-ss without their dependencies"),
]


def test_the_note_says_the_step_and_the_package_never_pips_lines():
    shown = [progress_text(PIP_LOG[:end]) for end in range(len(PIP_LOG) + 1)]
    assert shown[0] == "starting"
    assert shown[3] == "step 2 of 3: installing the trainer's packages (the WebUI's torch is reused)"
    assert shown[5] == shown[3] + " (now: looking up diffusers)"
    assert shown[7] == shown[3] + " (now: downloading diffusers 0.42.1)"
    assert shown[11] == shown[3] + " (now: installing PyYAML, safetensors, diffusers and 2 more)"
    assert shown[12] == shown[3] + " (now: installed)"
    assert shown[13] == "step 3 of 3: installing kohya-ss without their dependencies"
    for text in shown:
        assert not any(word in text for word in ("uninstall", "Requirement", "Collecting", "pip install", "$"))


def test_after_the_last_step_the_set_ups_own_words_show():
    assert progress_text(PIP_LOG + ["lora_train: worker environment ready (/x/.venv-worker/bin/python)."]) == \
        "worker environment ready (/x/.venv-worker/bin/python)."
