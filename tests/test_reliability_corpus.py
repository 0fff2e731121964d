"""The whole bad-input corpus (tests/corpus.py), each case through the entry point a user meets:
a clear message naming the file or key (never a traceback), or the documented skip with its warning.

Config and dataset cases go through `load_config` / `build_image_data`; job cases through the
`train` command in this process (so a simulated full disk can apply); the cases marked `cli`, and
a folder holding every bad image file at once, through `python -m lora_train train` itself."""

from __future__ import annotations

import re
import signal

import pytest
import torch

from corpus import CASES, IMAGE_FILES, TRIGGER, case_config, settings_for, warnings_about, write_config
from lora_train import cli
from lora_train.config import load_config
from lora_train.core.errors import UserError
from lora_train.train.image_data import build_image_data
from reliability_support import assert_clean_error, run_cli, run_cli_in_process

ENTRY = {"config": load_config, "data": lambda path: build_image_data(load_config(path))}


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


@pytest.fixture
def signal_handlers():
    """The train command turns Ctrl+C into a stop request; give pytest its own handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_case_gets_its_message(case, tiny_sd1_file, tmp_path, monkeypatch, capsys, signal_handlers):
    config = case_config(case, tmp_path, tiny_sd1_file)
    if case.fault:
        case.fault(monkeypatch, tmp_path)
    if case.stage == "job":
        assert_clean_error(run_cli_in_process(config, capsys), case.message)
    elif case.error:
        with pytest.raises(UserError) as error:
            ENTRY[case.stage](config)
        assert re.search(case.message, str(error.value)), str(error.value)
    else:
        warnings = ENTRY[case.stage](config).warnings
        assert len(warnings) == 1 and re.search(case.message, warnings[0]), warnings


@pytest.mark.parametrize("image", IMAGE_FILES, ids=lambda image: image.name)
def test_each_bad_image_file_is_skipped_or_used_as_documented(image, tiny_sd1_file, tmp_path):
    settings = settings_for(tmp_path, tiny_sd1_file)
    image.write(tmp_path / "data" / image.name)

    data = build_image_data(load_config(write_config(tmp_path / "job.yaml", settings)))

    about = warnings_about(data.warnings, image.name)
    assert len(data.warnings) == len(about) == (image.warning is not None), data.warnings
    if image.warning:
        assert re.search(image.warning, about[0]), about[0]
    used = [i for i, record in enumerate(data.index.records) if record.path.name == image.name]
    assert len(used) == image.used
    for i in used:
        pixels = data.dataset[i]["pixel_values"]
        assert pixels.shape == (3, 64, 64) and torch.isfinite(pixels).all()


@pytest.mark.slow
@pytest.mark.parametrize("case", [case for case in CASES if case.cli], ids=lambda case: case.name)
def test_through_the_command_line(case, tiny_sd1_file, tmp_path):
    assert_clean_error(run_cli(case_config(case, tmp_path, tiny_sd1_file), tmp_path), case.message)


@pytest.mark.slow
def test_a_folder_of_every_bad_image_file_trains_with_each_warning(tiny_sd1_file, tmp_path):
    settings = settings_for(tmp_path, tiny_sd1_file)
    for image in IMAGE_FILES:
        image.write(tmp_path / "data" / image.name)

    outcome = run_cli(write_config(tmp_path / "job.yaml", settings), tmp_path)

    assert outcome.code == 0 and outcome.events[-1]["type"] == "done", outcome.events[-1]
    assert "Traceback" not in outcome.stderr
    warnings = [e["message"] for e in outcome.events if e["type"] == "log" and e["level"] == "warning"]
    for image in IMAGE_FILES:
        about = warnings_about(warnings, image.name)
        assert bool(about) == (image.warning is not None), (image.name, warnings)
        assert all(re.search(image.warning, problem) for problem in about), about
    start = next(e for e in outcome.events if e["type"] == "start")
    assert start["message"].startswith(f"{2 + sum(image.used for image in IMAGE_FILES)} images,")


def yaml_with(folder, base_model, line: str):
    return write_config(folder / "job.yaml", {"base_model": str(base_model), "train_data_dir": str(folder)}, line)


@pytest.mark.parametrize("value, expected", [("no", "no"), ("off", "no"), ('"fp16"', "fp16")])
def test_yaml_reads_an_unquoted_no_as_the_choice_it_spells(value, expected, tiny_sd1_file, tmp_path):
    assert load_config(yaml_with(tmp_path, tiny_sd1_file, f"mixed_precision: {value}\n")).mixed_precision == expected


def test_a_yaml_boolean_that_spells_no_choice_says_to_quote_it(tiny_sd1_file, tmp_path):
    config = yaml_with(tmp_path, tiny_sd1_file, "log_with: off\n")
    with pytest.raises(UserError, match="'log_with' must be text, got False: YAML reads an unquoted yes, no, on or "
                                        "off as true or false, so put the value in quotes"):
        load_config(config)


def test_missing_captions_fall_back_to_the_trigger_word(tiny_sd1_file, tmp_path):
    no_caption = next(image for image in IMAGE_FILES if image.name == "no_caption.png")
    no_caption.write(tmp_path / "data" / no_caption.name)
    data = build_image_data(load_config(write_config(tmp_path / "job.yaml", settings_for(tmp_path, tiny_sd1_file))))
    index = next(i for i, record in enumerate(data.index.records) if record.path.name == no_caption.name)
    assert data.dataset[index]["caption"] == TRIGGER


def test_an_events_file_that_cannot_be_written_is_one_line(tmp_path, capsys):
    code = cli.main(["train", "--config", str(tmp_path / "job.yaml"), "--events-file", str(tmp_path / "no" / "e.jsonl")])
    assert code == 2
    assert capsys.readouterr().err == (f"error: cannot write the events file {tmp_path / 'no' / 'e.jsonl'} "
                                       "(No such file or directory): check the path.\n")
