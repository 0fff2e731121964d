"""The tab's actions without a browser: form -> job config, path confinement, presets, datasets, YAML."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lora_train.config.load import read_yaml
from lora_train.core.errors import UserError
from lora_train.core.naming import free_lora_path
from lora_train.webui.kit import form
from lora_train.webui.image_tab.controller import AUTOMATIC_VAE, TabController
from lora_train.webui.hosts.host import TabSettings
from lora_train.webui.hosts.standalone_host import StandaloneHost
from lora_train.webui.hosts.paths import PathPolicy, network_exposed, safe_name
from lora_train.webui.image_tab.presets import AUTO_PRESET, preset_form_values
from lora_train.webui.worker.runner import JobRunner, JobState
from lora_train.webui.image_tab.try_lora import DEFAULT_STEPS


def fake_checkpoint(path: Path, marker: str = "cond_stage_model.transformer.text_model.x") -> Path:
    """A .safetensors file whose header names one tensor (enough for the type sniffing)."""
    header = json.dumps({marker: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path


def images(folder: Path, count: int, size: int = 64, captions: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("RGB", (size, size), (40 * index % 255, 90, 160)).save(folder / f"{index:02d}.png")
        if captions:
            (folder / f"{index:02d}.txt").write_text(f"shape {index}")
    return folder


@pytest.fixture
def setup(tmp_path):
    models = tmp_path / "models"
    fake_checkpoint(models / "Stable-diffusion" / "sd1.safetensors")
    fake_checkpoint(models / "Stable-diffusion" / "xl.safetensors", "conditioner.embedders.1.model.x")
    settings = TabSettings(tmp_path / "loras", tmp_path / "runs")
    policy = PathPolicy(False, [models, tmp_path / "loras", tmp_path / "runs"])
    host = StandaloneHost(models, settings, policy)
    controller = TabController(host, JobRunner(), python_fallback="python")
    data = images(tmp_path / "data", 3)
    return controller, tmp_path, data


def form_inputs(controller: TabController, data: Path, **changes) -> tuple[dict, list]:
    inputs = dict(base_model="sd1.safetensors", vae=AUTOMATIC_VAE, train_data_dir=str(data), trigger_word="zq",
                  output_name="my lora")
    inputs.update({k: v for k, v in changes.items() if k in inputs})
    values = controller.initial_values()
    values.update({k: v for k, v in changes.items() if k not in inputs})
    return inputs, [form.to_widget(spec, values[spec.name]) for spec in controller.specs]


def test_the_form_becomes_the_config_the_cli_runs(setup):
    controller, tmp_path, data = setup
    inputs, fields = form_inputs(controller, data, output_name="../../evil/name", lora_rank=8,
                                 sample_prompts=["zq, a red circle", "zq, a square"])
    config = controller.job_config(inputs, fields)
    assert config.output_name == "name"
    assert Path(config.output_dir) == tmp_path / "runs" / "name"
    assert Path(config.lora_output_dir) == tmp_path / "loras"
    assert config.base_model.endswith("sd1.safetensors") and config.vae is None
    assert config.lora_rank == 8 and config.sample_prompts == ["zq, a red circle", "zq, a square"]
    assert config.target_modules is None and config.task_type == "image"
    message, text = controller.save_config(str(tmp_path / "runs" / "name.yaml"), inputs, fields)
    saved = read_yaml(tmp_path / "runs" / "name.yaml")
    assert "python -m lora_train train --config" in message and saved == yaml.safe_load(text)
    assert saved["lora_rank"] == 8 and "seed" not in saved  # only the keys that differ from the defaults
    assert controller.read_config(str(tmp_path / "runs" / "name.yaml"))["trigger_word"] == "zq"


def test_bad_values_get_the_cli_messages(setup):
    controller, tmp_path, data = setup
    inputs, fields = form_inputs(controller, data, learning_rate=-1.0)
    with pytest.raises(UserError, match="'learning_rate' is -1.0, out of range"):
        controller.job_config(inputs, fields)
    inputs, fields = form_inputs(controller, data, optimizer_args="{betas: [0.9")
    with pytest.raises(UserError, match="'optimizer_args' must be a mapping"):
        controller.job_config(inputs, fields)
    bad = tmp_path / "runs" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("lora_rnak: 8\n")
    with pytest.raises(UserError, match="Unknown key 'lora_rnak'.*Did you mean 'lora_rank'"):
        controller.read_config(str(bad))
    inputs, fields = form_inputs(controller, data)
    with pytest.raises(UserError, match="Nothing to resume"):
        controller.start(inputs, fields, resume=True)


def test_dataset_review_uses_the_trainers_messages(setup):
    controller, tmp_path, data = setup
    images(data, 1, size=32, captions=False)  # 00.png replaced by a small image without caption
    (data / "00.txt").unlink()
    inputs, fields = form_inputs(controller, data, resolution=64, enable_bucket=False)
    note, gallery = controller.scan(inputs, fields)
    assert "3 images (2 with a caption)" in note
    assert "no caption file" in note and "smaller than the training size" in note
    assert len(gallery) == 3 and gallery[1][1] == "01.png: shape 1"
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    inputs, fields = form_inputs(controller, empty)
    with pytest.raises(UserError, match="No images in"):
        controller.scan(inputs, fields)


def test_dataset_check_shows_the_doctors_findings(setup):
    controller, _, data = setup
    Image.open(data / "00.png").save(data / "00 copy.png")
    (data / "00 copy.txt").write_text("zq, shape 0")
    inputs, fields = form_inputs(controller, data, resolution=64)
    note, _ = controller.scan(inputs, fields)
    assert "00 copy.png, 00.png: the same picture or near-duplicates" in note
    assert "does not name the trigger word" in note


def test_presets_replace_each_other_and_follow_the_model_type(setup):
    controller, _, _ = setup
    low = preset_form_values("Low VRAM", "SD1")
    assert low["cache_text_encoder_outputs"] is True and low["batch_size"] == 1
    character = controller.preset("Character", "sd1.safetensors")
    assert character["gradient_checkpointing"] is False and character["train_text_encoder"] is True
    assert character["batch_size"] == 2 and character["resolution"] == 512
    assert controller.preset("Style", "xl.safetensors")["resolution"] == 1024


def test_the_auto_preset_proposes_from_the_forms_dataset_and_model(setup, monkeypatch):
    controller, tmp_path, small = setup
    monkeypatch.setattr("lora_train.webui.image_tab.controller.memory_for_training", lambda: 8 * 1024 ** 3)
    large = images(tmp_path / "large", 31, size=96)
    chosen = {}
    for name, data, model in (("small", small, "sd1.safetensors"), ("large", large, "sd1.safetensors"),
                              ("xl", large, "xl.safetensors")):
        inputs, fields = form_inputs(controller, data, base_model=model, lora_rank=64, flip_aug=True)
        chosen[name] = controller.chosen_preset(AUTO_PRESET, inputs, fields)
    (small, small_note), (large, large_note), (xl, xl_note) = chosen.values()
    assert small["repeats"] > large["repeats"] >= 1  # fewer images: more repeats for the same views
    assert "31 images:" in large_note and "3 images:" in small_note
    assert large["cache_latents"] is False and "flip_aug" in large_note  # reasoned with the form's flip_aug
    assert xl["resolution"] == 1024 and large["resolution"] == 512
    assert xl["lora_rank"] < large["lora_rank"] != 64  # 8 GB free: SDXL's smaller rank; the form's 64 replaced
    assert "8.0 GB free" in xl_note and "Edit any value before Start".lower() in xl_note.lower()
    values, note = controller.chosen_preset("Style", *form_inputs(controller, small))
    assert values["resolution"] == 512 and "Preset Style applied" in note


def test_paths_are_confined_only_when_exposed(tmp_path):
    inside = tmp_path / "allowed"
    (inside / "data").mkdir(parents=True)
    (inside / "escape").symlink_to(tmp_path)
    policy = PathPolicy(True, [inside], "Add a root.")
    assert policy.resolve(str(inside / "data"), "Dataset folder") == inside / "data"
    with pytest.raises(UserError, match="outside the folders this server may use.*Add a root"):
        policy.resolve(str(tmp_path / "elsewhere"), "Dataset folder")
    with pytest.raises(UserError, match="Dataset folder"):
        policy.resolve(str(inside / "escape" / "elsewhere"), "Dataset folder")
    with pytest.raises(UserError, match="outside"):
        policy.resolve(str(inside / ".." / "x"), "Config file")
    assert PathPolicy(False, [inside]).resolve("/etc", "x") == Path("/etc")
    assert network_exposed(True, False, None, False) and network_exposed(False, True, None, False)
    assert network_exposed(False, False, "0.0.0.0", False)
    assert not network_exposed(True, False, None, True) and not network_exposed(False, False, "127.0.0.1", False)
    assert [safe_name(n) for n in ("../x", "a/b\\c", "..", "ok name-1.2", "a:b*c")] == [
        "x", "c", "my_lora", "ok name-1.2", "a_b_c"]


def test_the_tab_follows_the_checkpoint_the_webui_loads_unless_the_user_chose_another(setup):
    from lora_train.webui.hosts.model_files import ModelInfo
    from lora_train.webui.image_tab.tab import TabView

    controller, _, _ = setup
    loaded: list[ModelInfo | None] = [None]
    controller.host.current_model = lambda: loaded[0]
    view = TabView(controller)
    view.built_model = {"loaded": None, "followed": "sd1.safetensors"}  # built before the WebUI loaded its model
    page: dict = {}  # the page's memory: gradio 3's periodic update gets no other value but the page-load one
    assert all(update == {"__type__": "update"} for update in view.follow_model(page))  # nothing changed

    loaded[0] = ModelInfo("xl.safetensors [abc]", "/m/xl.safetensors", "SDXL", "abc")
    note, choice = view.follow_model(page)
    assert "xl.safetensors [abc]" in note and "SDXL" in note and choice["value"] == "xl.safetensors [abc]"
    view.chosen_model("xl.safetensors [abc]", page)  # the dropdown's change event
    assert view.follow_model(page)[1] == {"__type__": "update"}  # followed once, not again every 2 s

    view.chosen_model("my pick.safetensors", page)  # the user chose: keep the choice
    loaded[0] = ModelInfo("other.safetensors", "/m/other.safetensors", "SD1")
    note, choice = view.follow_model(page)
    assert "other.safetensors" in note and "value" not in choice and page["model"]["followed"] == \
        "xl.safetensors [abc]"


def test_a_reused_name_gets_its_own_work_folder_named_like_the_lora_it_saves(setup, monkeypatch):
    controller, tmp_path, data = setup
    started = []
    monkeypatch.setattr(controller.runner, "start", lambda spec, hooks: started.append(spec))
    loras, runs = tmp_path / "loras", tmp_path / "runs"
    loras.mkdir()
    (loras / "my lora.safetensors").write_bytes(b"first run")
    (runs / "my lora").mkdir(parents=True)
    (runs / "my lora" / "job.yaml").write_text("first run's job")
    inputs, fields = form_inputs(controller, data)
    assert "my lora_v2" in controller.start(inputs, fields)
    spec = started[-1]
    assert spec.name == spec.config["output_name"] == "my lora_v2"
    assert spec.workspace == Path(spec.config["output_dir"]) == runs / "my lora_v2"
    assert free_lora_path(loras, spec.name) == loras / "my lora_v2.safetensors"  # where the engine saves it
    assert (runs / "my lora" / "job.yaml").read_text() == "first run's job"

    kept = runs / "my lora_v2" / "checkpoint-my lora_v2-4"  # that run stopped and kept its state
    kept.mkdir(parents=True)
    for name in ("training_state.pt", "lora_params.st"):
        (kept / name).write_bytes(b"state")
    controller.start(inputs, fields, resume=True)
    assert started[-1].workspace == runs / "my lora_v2" and started[-1].name == "my lora_v2"
    (runs / "stale").mkdir()  # a run that saved nothing still keeps its folder to itself
    assert controller.start(form_inputs(controller, data, output_name="stale")[0], fields) and \
        started[-1].workspace == runs / "stale_v2"


@dataclass
class RenderingHost(StandaloneHost):
    """The standalone host with a stand-in renderer that records each render and can be held mid-render."""

    can_render: bool = True
    renders: list = field(default_factory=list)
    hold: threading.Event | None = None

    def render(self, prompt, negative, seed, steps, width, height):
        self.renders.append((prompt, seed, steps, width, height))
        if self.hold is not None:
            self.hold.wait(10)
        return Image.new("RGB", (width, height))

    def render_progress(self):
        return (3, 10)

    def stop_render(self):
        if self.hold is not None:
            self.hold.set()


def finished_job(controller, tmp_path, **settings):
    state = JobState("zq_style", tmp_path, settings, status="done", ended=True,
                     lora_path=str(tmp_path / "zq_style.safetensors"))
    controller.runner.snapshot = lambda: state


def test_test_now_renders_the_trigger_word_at_the_training_resolution_with_few_steps(setup):
    _, tmp_path, _ = setup
    host = RenderingHost(None, TabSettings(tmp_path / "loras", tmp_path / "runs"), PathPolicy(False, []))
    controller = TabController(host, JobRunner())
    finished_job(controller, tmp_path, trigger_word="zq", resolution=64)
    trial = controller.test_now("", 7, 0.8)
    assert trial.wait(10) and "Rendered" in trial.outcome()
    assert host.renders == [("zq", 7, DEFAULT_STEPS, 64, 64), ("zq <lora:zq_style:0.8>", 7, DEFAULT_STEPS, 64, 64)]
    assert [caption for _, caption in trial.images] == ["without the LoRA", "with <lora:zq_style:0.8>"]
    assert DEFAULT_STEPS <= 12

    finished_job(controller, tmp_path, sample_resolution=96)  # no trigger word: the LoRA's name
    controller.test_now("", 7, 1, steps=4, size=130).wait(10)
    assert host.renders[-1] == ("zq_style <lora:zq_style:1>", 7, 4, 128, 128)  # the size the WebUI takes
    controller.test_now("", 7, 1).wait(10)
    assert host.renders[-1][3:] == (96, 96)  # the samples' size when the training set one
    with pytest.raises(UserError, match="Test steps must be 1 to 150"):
        controller.test_now("", 7, 1, steps=500)


def test_test_now_shows_progress_and_stops(setup):
    _, tmp_path, _ = setup
    host = RenderingHost(None, TabSettings(tmp_path / "loras", tmp_path / "runs"), PathPolicy(False, []),
                         hold=threading.Event())
    controller = TabController(host, JobRunner())
    finished_job(controller, tmp_path, trigger_word="zq", resolution=64)
    trial = controller.test_now("", 7, 0.8)
    assert not trial.wait(0.2)
    assert "Rendering 1/2 at 64×64, 10 steps, step 3/10" in trial.progress()
    with pytest.raises(UserError, match="A test render is running"):
        controller.test_now("", 7, 0.8)
    assert "Stopping" in controller.stop_test()
    assert trial.wait(10) and "stopped; 0 of 2" in trial.outcome()
    assert len(host.renders) == 1, "the second render never starts after a stop"


def test_the_config_file_path_follows_the_lora_name_until_edited(setup):
    from lora_train.webui.image_tab.tab import TabView

    controller, tmp_path, _ = setup
    view = TabView(controller)
    auto = controller.config_path("my_lora")
    assert auto == str(tmp_path / "runs" / "my_lora.yaml")
    path, auto = view.follow_name("zq style", auto, auto)
    assert path == auto == str(tmp_path / "runs" / "zq style.yaml")
    update, kept = view.follow_name("other", "/mine/config.yaml", auto)  # typed by hand: kept
    assert "value" not in update and kept == auto


def test_start_waits_for_the_worker_environment_and_the_tab_shows_its_progress(setup, monkeypatch):
    from lora_train.webui.image_tab.tab import TabView
    from lora_train.webui.worker.environment import WorkerEnv

    _, tmp_path, _ = setup
    monkeypatch.delenv("LORA_TRAIN_PYTHON", raising=False)
    monkeypatch.setenv("LORA_TRAIN_WORKER_VENV", str(tmp_path / "venv"))
    env = WorkerEnv.default()
    env.venv_dir.mkdir()
    env.builder_file.write_text(str(os.getpid()))  # a live set-up (this process stands in for it)
    env.log_file.write_text("lora_train: step 2 of 3: installing the trainer's packages\n"
                            "  $ pip install -r requirements.txt\n"
                            "  Downloading diffusers-0.42.1-py3-none-any.whl (3.1 MB)\n"
                            "    Can't uninstall 'PyYAML'. No files were found to uninstall.\n")
    host = StandaloneHost(None, TabSettings(tmp_path / "loras", tmp_path / "runs"), PathPolicy(False, []))
    view = TabView(TabController(host, JobRunner()))  # as in the WebUI: no fallback interpreter
    note, start, resume = view.worker_state()
    assert "Setting up the training environment" in note  # in words: the step and the package, not pip's lines
    assert "Now: step 2 of 3: installing the trainer&#x27;s packages (now: downloading diffusers 0.42.1)" in note
    assert "uninstall" not in note and "pip install" not in note and ".whl" not in note
    assert start["interactive"] is False and resume["interactive"] is False

    env.builder_file.unlink()
    env.error_file.write_text("lora_train: could not set up the worker environment: no network\n")
    note, start, _ = view.worker_state()
    assert "no network" in note and 'data-level="error"' in note and start["interactive"] is False

    env.error_file.unlink()
    env.python.parent.mkdir(parents=True)
    env.python.write_text("")
    env.stamp.write_text("{}")
    note, start, _ = view.worker_state()
    assert note == "" and start["interactive"] is True
    assert TabView(TabController(host, JobRunner(), python_fallback="python")).worker_state()[1]["interactive"]


class StandInRunner:
    """The latest job as the test sets it, in place of a worker."""

    def __init__(self):
        self.state: JobState | None = None

    def snapshot(self) -> JobState | None:
        return copy.deepcopy(self.state)


def test_the_periodic_update_sends_what_changed_and_the_start_note_gives_way_to_how_the_job_ended(setup):
    from lora_train.webui.kit import job_view
    from lora_train.webui.image_tab.tab import TabView

    controller, tmp_path, _ = setup
    controller.runner = runner = StandInRunner()
    view, page = TabView(controller), {}  # the page's memory: all the periodic update may trust under gradio 3
    nothing = [{"__type__": "update"}] * 8
    assert view.tick(page) == nothing
    with job_view.note_about_job(page, runner):  # what Start does
        runner.state = JobState("my_lora", tmp_path / "runs" / "my_lora", number=1, status="running", step=2,
                                total=10, version=3)
    progress, *_, note = view.tick(page)
    assert 'data-step="2"' in progress and note == nothing[0]  # "Started training my_lora..." still true
    assert view.tick(page) == nothing  # the same job, unchanged: nothing sent again

    lora = tmp_path / "loras" / "my_lora.safetensors"
    runner.state = JobState("my_lora", tmp_path / "runs" / "my_lora", number=1, status="interrupted", step=4,
                            total=10, version=9, ended=True, lora_path=str(lora),
                            summary="Stopped at step 4; the LoRA trained so far is saved. Resume continues from here.")
    progress, *_, tag, note = view.tick(page)
    assert 'data-status="interrupted"' in progress and tag == "<lora:my_lora:0.8>"
    assert "my_lora ended: Stopped at step 4; the LoRA trained so far is saved" in note  # no longer "Stopping..."
    assert view.tick(page) == nothing

    with pytest.raises(UserError), job_view.note_about_job(page, runner):  # a note about something else
        raise UserError("Dataset folder: no path given.")
    runner.state = dataclasses.replace(runner.state, version=10)
    assert view.tick(page)[-1] == nothing[0]  # the message stays


def test_after_a_restart_the_tab_offers_the_last_lora_and_the_form_of_its_job(setup):
    from lora_train.webui.image_tab import job_record
    from lora_train.webui.image_tab.controller import HostHooks
    from lora_train.webui.image_tab.tab import TabView

    controller, tmp_path, data = setup
    (tmp_path / "runs" / "my lora").mkdir(parents=True)  # an earlier run took the name: this one is _v2
    inputs, fields = form_inputs(controller, data, lora_rank=8, epochs=3)
    config = controller.job_config(inputs, fields, name="my lora_v2")
    workspace = Path(config.output_dir)
    workspace.mkdir()
    (workspace / "job.yaml").write_text(yaml.safe_dump(form.changed_values(config)))  # as the runner writes it
    lora = free_lora_path(tmp_path / "loras", "my lora_v2")
    lora.parent.mkdir()
    lora.write_bytes(b"weights")
    ended = JobState("my lora_v2", workspace, form.changed_values(config), 1, "interrupted", step=6, total=9,
                     lora_path=str(lora), summary="Stopped at step 6; the LoRA trained so far is saved.",
                     losses=[(1, 0.5), (2, 0.4)])
    assert HostHooks(controller.host).after_finish(ended).messages == []

    restarted = TabController(controller.host, JobRunner(), python_fallback="python")  # a new WebUI process
    assert restarted.runner.snapshot() is None
    restarted.runner.adopt(job_record.last_ended(tmp_path / "runs"))  # what build_tab does
    view = TabView(restarted)
    *_, result, tag, _ = view.tick({})
    assert "Partial LoRA saved (interrupted)" in result and str(lora) in result and tag == "<lora:my lora_v2:0.8>"

    shown = view.job_form()  # a page opened after the restart: the job's values, not the defaults
    managed = dict(zip(("base_model", "vae", "train_data_dir", "trigger_word", "output_name"), shown))
    assert {key: update["value"] for key, update in managed.items()} == {
        "base_model": "sd1.safetensors", "vae": AUTOMATIC_VAE, "train_data_dir": str(data), "trigger_word": "zq",
        "output_name": "my lora"}  # as typed, so Start takes the next version and Resume finds this run
    values = {spec.name: update["value"] for spec, update in zip(restarted.specs, shown[5:])}
    assert values["lora_rank"] == 8 and values["epochs"] == 3

    lora.unlink()  # a LoRA deleted since: nothing to offer
    assert job_record.last_ended(tmp_path / "runs") is None


def test_the_chart_draws_the_validation_loss_and_the_result_names_the_best_epoch(setup):
    from lora_train.webui.kit import job_view
    from lora_train.webui.image_tab.tab import TabView

    controller, tmp_path, _ = setup
    controller.runner = runner = StandInRunner()
    view, page = TabView(controller), {}
    assert {"val_split", "val_data_dir", "val_every_n_steps", "keep_best", "early_stop_patience"} <= {
        spec.name for spec in controller.specs if spec.group == "Validation" and spec.name not in form.BASIC_KEYS}
    state = JobState("my_lora", tmp_path / "runs" / "my_lora", number=1, status="running")
    lora = tmp_path / "loras" / "my_lora.safetensors"
    events = [{"type": "start", "step": 0, "total": 6}]
    for step, loss, val in ((1, 1.0, None), (2, 0.9, 0.8), (3, 0.8, None), (4, 0.7, 0.6), (5, 0.6, None),
                            (6, 0.5, 0.7)):
        events.append({"type": "step", "step": step, "total": 6, "loss": loss})
        if val is not None:
            events.append({"type": "eval", "step": step, "epoch": step // 2, "eval_loss": val})
    events.append({"type": "done", "step": 6, "total": 6, "path": str(lora), "best_epoch": 2, "best_step": 4,
                   "best_eval_loss": 0.6, "kept_best": True,
                   "message": f"Saved {lora}. Use it in a prompt with <lora:my_lora:0.8> Best validation loss "
                              "0.6000 at epoch 2 (step 4), my_lora-000002.safetensors; saved as the final LoRA "
                              "(keep_best)."})
    with job_view.note_about_job(page, runner):
        runner.state = state
    for event in events:
        JobRunner()._apply(state, event)
    state.ended, state.version = True, 2
    progress, chart, *_, note = view.tick(page)
    assert 'data-eval-points="3"' in chart and chart.count('class="lora-train-eval"') == 3
    assert "eval loss (circles) latest 0.7000, lowest 0.6000 at step 4" in chart
    assert "Best validation loss 0.6000 at epoch 2 (step 4)" in note and "keep_best" in note
