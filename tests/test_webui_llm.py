"""The LLM tab's actions without a browser or a model: the form -> the text config the CLI runs, the
models list, presets, the adapter list of the test box, publishing into the LLM adapter folder, the GPU
hand-over around a job, the eval loss on the chart, and the model worker client's messages."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lora_train.config import load_config
from lora_train.core.errors import UserError
from lora_train.core.ownership import RUN_ID_KEY
from lora_train.text.schema import TextConfig
from lora_train.webui.kit import form, markup
from lora_train.webui.hosts.host import TabSettings
from lora_train.webui.hosts.standalone_host import StandaloneHost
from lora_train.webui.llm_tab.controller import LLMController, LLMJobHooks, parse_adapters, publish_adapter
from lora_train.webui.llm_tab.presets import CHOICES, preset_values
from lora_train.webui.worker.model_worker import ModelWorker
from lora_train.webui.hosts.paths import PathPolicy
from lora_train.webui.worker.runner import JobRunner, JobState

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "llm" / "alpaca_tiny.jsonl"


class FakeWorker:
    """Records requests; `loaded` as the real client keeps it."""

    def __init__(self, loaded: bool, fails: bool = False, answers: dict | None = None):
        self.loaded = {"base_model": "m"} if loaded else None
        self.fails = fails
        self.answers = answers or {}  # what "generate" answers
        self.requests: list[str] = []

    def request(self, op: str, **args):
        self.requests.append(op)
        if op == "load":
            if self.fails:
                raise UserError("not a model")
            self.loaded = {"base_model": args["base_model"], "model_type": "llama", "parameters": 1_500_000,
                           "dtype": "float32", "quantized": False, "device": "cpu", "chat_template": False,
                           "load_seconds": 0.2}
        elif op == "unload":
            self.loaded = None
        elif op == "generate":
            return {**self.answers, "seconds": 0.1}
        return {"moved": True}


class RecordingHost(StandaloneHost):
    def __init__(self, *args):
        super().__init__(*args)
        self.calls: list[str] = []

    def release_model(self):
        self.calls.append("release")
        return "moved out"

    def restore_model(self):
        self.calls.append("restore")
        return None


@pytest.fixture
def setup(tmp_path):
    llm_models = tmp_path / "models" / "LLM"
    (llm_models / "tiny").mkdir(parents=True)
    (llm_models / "tiny" / "config.json").write_text("{}")
    (llm_models / "q4.gguf").write_bytes(b"GGUF")
    (llm_models / "quantized").mkdir()
    (llm_models / "quantized" / "model-q8.gguf").write_bytes(b"GGUF")
    (llm_models / "notes").mkdir()  # no config.json: not a model
    settings = TabSettings(tmp_path / "loras", tmp_path / "runs", llm_models_dir=llm_models,
                           llm_lora_dir=tmp_path / "LLM-LoRA")
    host = RecordingHost(tmp_path / "models", settings, PathPolicy())
    controller = LLMController(host, JobRunner(), FakeWorker(False), python_fallback=sys.executable)
    return controller, tmp_path


def fields(controller: LLMController, **changes) -> list:
    values = {spec.name: spec.default for spec in controller.specs}
    values.update(changes)
    return [form.to_widget(spec, values[spec.name]) for spec in controller.specs]


def test_the_models_folder_lists_model_folders_and_gguf_files(setup):
    controller, tmp_path = setup
    assert controller.model_choices() == ["q4.gguf", "quantized/model-q8.gguf", "tiny"]
    assert controller.base_model("tiny", "") == tmp_path / "models" / "LLM" / "tiny"
    assert controller.base_model("tiny", str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"  # the path box wins
    with pytest.raises(UserError, match="Choose a base model"):
        controller.base_model(None, "")


def test_the_form_becomes_the_text_config_the_cli_runs(setup):
    controller, tmp_path = setup
    config = controller.job_config("tiny", "", str(SEED), "my llm/../x", fields(controller, lora_rank=4, val_size=2))
    assert isinstance(config, TextConfig) and config.lora_rank == 4 and config.val_size == 2
    assert config.metadata_path == str(SEED) and config.train_data_dir is None
    assert config.output_name == "x" and Path(config.output_dir) == tmp_path / "runs" / "llm" / "x"
    job = tmp_path / "job.yaml"
    job.write_text(form.dump_yaml({"task_type": "text-generation", **form.changed_values(config)}))
    assert load_config(job) == config  # `train --config job.yaml` runs exactly this (a text job)
    folder = controller.job_config("tiny", "", str(SEED.parent), "n", fields(controller))
    assert folder.train_data_dir == str(SEED.parent) and folder.metadata_path is None
    with pytest.raises(UserError, match="does not exist"):
        controller.job_config("tiny", "", str(tmp_path / "missing.jsonl"), "n", fields(controller))
    with pytest.raises(UserError, match="cutoff_len"):
        controller.job_config("tiny", "", str(SEED), "n", fields(controller, cutoff_len=2))


def test_every_preset_is_a_valid_config_and_replaces_the_previous_one(setup):
    controller, _ = setup
    for name in CHOICES:
        values = preset_values(name)
        controller.job_config("tiny", "", str(SEED), "n", fields(controller, **values))
    low_then_balanced = {**preset_values("Low VRAM (QLoRA 4-bit)"), **preset_values("Balanced")}
    assert low_then_balanced["load_in_4bit"] is False and low_then_balanced["batch_size"] == 4


def test_adapter_lines_and_their_folders(setup):
    controller, tmp_path = setup
    assert parse_adapters("a:0.5\n\n b \n/x/c:d:2\nC:\\models\\e") == [
        ("a", 0.5), ("b", 1.0), ("/x/c:d", 2.0), ("C:\\models\\e", 1.0)]
    adapter = tmp_path / "LLM-LoRA" / "mine"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    assert controller.adapter_choices() == ["mine"]
    assert controller.adapter_path("mine") == adapter
    with pytest.raises(UserError, match="Load a base model first"):
        controller.test("hi", "mine", fields(controller), 8)


def test_the_answers_show_control_characters_as_escapes(setup):
    controller, tmp_path = setup
    (tmp_path / "LLM-LoRA" / "mine").mkdir(parents=True)
    (tmp_path / "LLM-LoRA" / "mine" / "adapter_config.json").write_text("{}")
    controller.worker = FakeWorker(True, answers={"without": "a\x00b\x1b[31mred\r\nnext\tcol \u00e9\U0001f600",
                                                  "with": "\x07bell\x7f\x85"})
    without, adapted, note = controller.test("hi", "mine", fields(controller), 8)
    assert without == "a\\x00b\\x1b[31mred\nnext\tcol \u00e9\U0001f600"  # newlines, tabs and letters stay
    assert adapted == "\\x07bell\\x7f\\x85"
    assert "Greedy answers in 0.1 s; with mine x1." in note


def test_a_finished_job_publishes_its_adapter_and_hands_the_gpu_back(setup):
    controller, tmp_path = setup
    trained = tmp_path / "runs" / "llm" / "mine" / "mine"
    trained.mkdir(parents=True)
    (trained / "adapter_config.json").write_text("{}")
    (trained / "adapter_model.safetensors").write_bytes(b"weights")
    state = JobState("mine", trained.parent, status="done", lora_path=str(trained))

    hooks = LLMJobHooks(controller.host, FakeWorker(loaded=True))
    before = hooks.before_start(state)
    assert [text for text, _ in before.messages][1].startswith("The test model was moved to the CPU")
    first = hooks.after_finish(state)
    assert first.lora_path == str(tmp_path / "LLM-LoRA" / "mine")
    assert (Path(first.lora_path) / "adapter_model.safetensors").read_bytes() == b"weights"
    assert hooks.worker.requests == ["park", "unpark"]
    assert controller.host.calls == ["release", "restore"]  # the host keeps its model out while holders remain

    idle = LLMJobHooks(controller.host, FakeWorker(loaded=False))
    second = idle.after_finish(state)
    assert second.lora_path == str(tmp_path / "LLM-LoRA" / "mine_v2")  # never over an existing adapter
    assert controller.host.calls == ["release", "restore", "restore"] and idle.worker.requests == []
    assert not (tmp_path / "loras").exists()  # nothing goes to the image Lora folder

    failed = JobState("mine", trained.parent, status="failed", lora_path=None)
    assert idle.after_finish(failed).lora_path is None


def test_a_loaded_model_keeps_the_hosts_checkpoint_out_of_vram_until_unloaded(setup):
    controller, tmp_path = setup
    note = controller.load("tiny", "", fields(controller))
    assert controller.host.holders == {"llm"} and controller.host.calls == ["release"]
    assert "Loaded:" in note and "1.5M parameters" in note and "moved out of VRAM" in note
    controller.unload()
    assert controller.host.holders == set() and controller.host.calls == ["release", "restore"]
    controller.worker = FakeWorker(False, fails=True)
    with pytest.raises(UserError, match="not a model"):
        controller.load("tiny", "", fields(controller))
    assert controller.host.holders == set() and controller.host.calls[-2:] == ["release", "restore"]


def test_publishing_never_overwrites_an_adapter(tmp_path):
    source = tmp_path / "a"
    source.mkdir()
    (source / "f").write_text("1")
    paths = [publish_adapter(source, tmp_path / "out") for _ in range(3)]
    assert [p.name for p in paths] == ["a", "a_v2", "a_v3"]


def adapter(folder: Path, run_id: str, content: str) -> Path:
    """An adapter folder whose weights' header records the run that saved it, as the engine writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros(1, np.float32)}, str(folder / "adapter_model.safetensors"),
              metadata={"format": "pt", RUN_ID_KEY: run_id})
    (folder / "adapter_config.json").write_text(content)
    return folder


def test_a_resumed_runs_adapter_replaces_the_copy_of_its_own_partial_adapter_only(tmp_path):
    published = tmp_path / "LLM-LoRA"
    theirs = adapter(published / "artist_llm", "another run", "theirs")
    trained = adapter(tmp_path / "runs" / "llm" / "artist_llm" / "artist_llm", "run 1", "partial")
    assert publish_adapter(trained, published) == published / "artist_llm_v2"  # stopped: the partial adapter
    adapter(trained, "run 1", "finished")  # the same run, resumed, saved over its partial adapter
    assert publish_adapter(trained, published) == published / "artist_llm_v2"
    assert (published / "artist_llm_v2" / "adapter_config.json").read_text() == "finished"
    assert (theirs / "adapter_config.json").read_text() == "theirs"
    assert sorted(path.name for path in published.iterdir()) == ["artist_llm", "artist_llm_v2"]


def test_a_reused_name_gets_its_own_work_folder_named_like_the_adapter_it_saves(setup, monkeypatch):
    controller, tmp_path = setup
    started = []
    monkeypatch.setattr(controller.runner, "start", lambda spec, hooks: started.append(spec))
    adapter(tmp_path / "LLM-LoRA" / "artist_llm", "first run", "{}")  # the first run's published adapter
    first_run = tmp_path / "runs" / "llm" / "artist_llm"
    first_run.mkdir(parents=True)
    (first_run / "job.yaml").write_text("first run's job")
    note = controller.start("tiny", "", str(SEED), "artist_llm", fields(controller))
    spec = started[-1]
    assert "Started training artist_llm_v2" in note
    assert spec.name == spec.config["output_name"] == "artist_llm_v2"
    assert spec.workspace == Path(spec.config["output_dir"]) == tmp_path / "runs" / "llm" / "artist_llm_v2"
    assert (first_run / "job.yaml").read_text() == "first run's job"

    with pytest.raises(UserError, match=r"no checkpoint-artist_llm-<step> folder of the job 'artist_llm'"):
        controller.start("tiny", "", str(SEED), "artist_llm", fields(controller), resume=True)
    kept = spec.workspace / "checkpoint-artist_llm_v2-3"  # the second run stopped and kept its state
    kept.mkdir(parents=True)
    for name in ("training_state.pt", "lora_params.st"):
        (kept / name).write_bytes(b"state")
    assert "Resuming training artist_llm_v2" in controller.start("tiny", "", str(SEED), "artist_llm",
                                                                 fields(controller), resume=True)
    assert started[-1].workspace == spec.workspace and started[-1].config["resume_from_checkpoint"] == "latest"


def test_the_loss_chart_shows_the_eval_loss(setup):
    runner = JobRunner()
    state = JobState("x", Path("."))
    for event in ({"type": "step", "step": 1, "loss": 2.0}, {"type": "step", "step": 2, "loss": 1.0},
                  {"type": "eval", "step": 2, "epoch": 1, "eval_loss": 1.5, "perplexity": 4.48}):
        runner._apply(state, event)
    assert state.eval_losses == [(2, 1.5)]
    chart = markup.loss_chart(state.losses, state.eval_losses)
    assert chart.count("<circle") == 1 and 'data-eval-points="1"' in chart and "eval loss" in chart
    assert "<circle" not in markup.loss_chart(state.losses)


def test_a_worker_that_dies_is_a_message(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho 'ImportError: no module named torch' >&2\nexit 3\n")
    script.chmod(0o755)
    worker = ModelWorker(lambda: str(script), [], lambda: tmp_path / "worker.log")
    with pytest.raises(UserError, match="exit code 3") as caught:
        worker.request("status")
    assert "no module named torch" in str(caught.value) and worker.loaded is None
    assert f"All it wrote is in {tmp_path / 'worker.log'}" in str(caught.value)
    missing = ModelWorker(lambda: str(tmp_path / "nope"), [], lambda: None)
    with pytest.raises(UserError, match="Could not start the model worker"):
        missing.request("status")


NOISY_WORKER = """\
import json, sys, warnings
warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
print("a library wrote to stdout", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    print(json.dumps({"id": request["id"], "ok": True, "result": {"op": request["op"]}}), flush=True)
"""


def test_the_model_workers_library_noise_goes_to_its_log_not_the_console(tmp_path, capfd):
    (tmp_path / "noisy.py").write_text(NOISY_WORKER)
    python = tmp_path / "python"  # started as `python -m lora_train.text.serve`: runs the noisy worker instead
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'noisy.py'}\n")
    python.chmod(0o755)
    log = tmp_path / "runs" / "llm" / "model-worker.log"
    worker = ModelWorker(lambda: str(python), [], lambda: log)
    try:
        assert worker.request("status") == {"op": "status"}
    finally:
        worker.close()
    worker._stderr_reader.join(10)
    assert "is_gradient_checkpointing" not in capfd.readouterr().err
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in log.read_text()
    assert "a library wrote to stdout" in log.read_text()


@pytest.mark.slow
def test_the_client_talks_to_the_real_worker():
    worker = ModelWorker(lambda: sys.executable, [str(ROOT)], lambda: None)
    try:
        assert worker.request("status")["loaded"] is None
        with pytest.raises(UserError, match="Unknown request"):
            worker.request("fly")
        with pytest.raises(UserError, match="does not exist"):
            worker.request("load", base_model=str(ROOT / "no-such-model"))
        assert worker.alive() and worker.loaded is None
    finally:
        worker.close()
    assert not worker.alive()
