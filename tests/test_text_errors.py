"""Wrong inputs to a text run end in one clear message (an `error` event, exit code 2), never a traceback:
GGML files, a .bin that is no model, a folder without config.json, a hub id offline, broken JSONL lines,
no usable row, quantization on a CPU, a model that needs its own code, unknown keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lora_train.cli import main
from lora_train.core.errors import UserError
from lora_train.text.rows import read_rows
from text_support import SEED


@pytest.fixture(autouse=True)
def own_lock(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def run(tmp_path, capsys, command="train", **keys) -> tuple[int, dict]:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"task_type": "text-generation", "metadata_path": str(SEED),
                                      "output_dir": str(tmp_path / "out"), "epochs": 1, **keys}))
    code = main([command, "--config", str(config), "--events", "jsonl"])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, json.loads(out.out.strip().splitlines()[-1])


def refused(tmp_path, capsys, *words, **keys) -> str:
    code, event = run(tmp_path, capsys, **keys)
    assert code == 2 and event["type"] == "error", event
    for word in words:
        assert word in event["message"], event["message"]
    return event["message"]


@pytest.mark.parametrize("magic", [b"lmgg", b"tjgg", b"ggml", b"fmgg"])
def test_legacy_ggml_file_says_it_cannot_be_trained(tmp_path, capsys, magic):
    model = tmp_path / "ggml-model-q4_0.bin"
    model.write_bytes(magic + b"\0" * 64)
    refused(tmp_path, capsys, "legacy GGML", "GGUF", "model folder", base_model=str(model))


def test_a_bin_that_is_no_model_and_a_folder_without_config(tmp_path, capsys):
    junk = tmp_path / "pytorch_model.bin"
    junk.write_bytes(b"PK\3\4 not a model")
    refused(tmp_path, capsys, "not a model", "config.json", base_model=str(junk))
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(tmp_path, capsys, "no config.json", base_model=str(empty))


def test_a_hub_id_offline_says_so(tmp_path, capsys):
    refused(tmp_path, capsys, "offline", "hf download", base_model="SomeOrg/some-model-that-is-not-here")


def test_remote_code_is_refused_unless_allowed(tmp_path, capsys, tiny_llm):
    model = tmp_path / "custom"
    shutil.copytree(tiny_llm("llama"), model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="mycustomlm", auto_map={"AutoConfig": "configuration_my.MyConfig"})
    (model / "config.json").write_text(json.dumps(config))
    refused(tmp_path, capsys, "trust_remote_code: true", base_model=str(model))


def test_quantization_on_cpu_is_a_clear_message(tmp_path, capsys, tiny_llm):
    refused(tmp_path, capsys, "needs an NVIDIA GPU", "load_in_4bit", base_model=str(tiny_llm("llama")),
            load_in_4bit=True)


def test_broken_jsonl_lines_are_reported_with_file_and_line(tmp_path):
    data = tmp_path / "data.jsonl"
    lines = SEED.read_text().splitlines()
    data.write_text("\n".join([lines[0], "{not json", lines[1], '{"instruction": "x"}', '["a list"]']) + "\n")
    rows = read_rows([data])
    assert len(rows.conversations) == 2
    assert [p.split(": ")[0] for p in rows.problems] == [f"{data}:2", f"{data}:4", f"{data}:5"]
    assert "not valid JSON" in rows.problems[0] and "needs a non-empty `instruction` and `output`" in rows.problems[1]


def test_no_usable_row_refuses_the_run(tmp_path, capsys, tiny_llm):
    data = tmp_path / "bad.jsonl"
    data.write_text('{broken\n{"question": "q", "answer": "a"}\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    message = refused(tmp_path, capsys, "No usable training row", f"{data}:1", f"{data}:2", "no assistant answer",
                      base_model=str(tiny_llm("llama")), metadata_path=str(data))
    assert "instruction" in message  # says which formats work
    assert not (tmp_path / "out" / "my_llm_lora").exists()


def test_unknown_or_image_keys_name_the_key(tmp_path, capsys, tiny_llm):
    refused(tmp_path, capsys, "Unknown key 'resolution'", "text-generation", base_model=str(tiny_llm("llama")),
            resolution=512)
    refused(tmp_path, capsys, "'template' cannot be 'llama9'", base_model=str(tiny_llm("llama")), template="llama9")


def test_llm_command_refuses_an_image_config(tmp_path, capsys):
    config = tmp_path / "image.yaml"
    config.write_text("task_type: image\nbase_model: x.safetensors\n")
    assert main(["llm", "--config", str(config)]) == 2
    assert "llm` trains text LoRAs only" in capsys.readouterr().err


def test_a_json_file_that_is_not_a_list(tmp_path):
    data = tmp_path / "data.json"
    data.write_text('{"instruction": "a", "output": "b"}')
    with pytest.raises(UserError, match="must hold a list of rows"):
        read_rows([Path(data)])


def test_a_gguf_of_an_architecture_transformers_cannot_read_names_it(tmp_path, capsys, tiny_llm):
    from lora_train.fixtures.tiny_llm import write_tiny_gguf

    gguf = write_tiny_gguf(tiny_llm("llama"), tmp_path / "odd.gguf", architecture="zorblaxlm")
    refused(tmp_path, capsys, "zorblaxlm", "Hugging Face model folder", base_model=str(gguf))


def _preview(tmp_path, capsys, **keys) -> tuple[int, str, str]:
    config = tmp_path / "preview.yaml"
    config.write_text(yaml.safe_dump({"task_type": "text-generation", "output_dir": str(tmp_path / "out"), **keys}))
    code = main(["llm", "preview", "--config", str(config), "--rows", "1", "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def test_text_overlap_is_checked_against_cutoff_len_on_txt_data_only(tmp_path, capsys, tiny_llm):
    base = str(tiny_llm("llama"))
    code, out, err = _preview(tmp_path, capsys, base_model=base, metadata_path=str(SEED), cutoff_len=64)
    assert code == 0 and json.loads(out)["rows"], err
    book = tmp_path / "book.txt"
    book.write_text("Quill is a city by the sea. " * 40)
    code, _, err = _preview(tmp_path, capsys, base_model=base, metadata_path=str(book), cutoff_len=64)
    assert code == 2 and f"'text_overlap' (128) must be smaller than 'cutoff_len' (64) for the .txt data in {book}" \
        in err
    code, out, err = _preview(tmp_path, capsys, base_model=base, metadata_path=str(book), cutoff_len=64,
                              text_overlap=16)
    assert code == 0 and json.loads(out)["train_rows"] > 1, err


def test_text_data_is_decoded_as_captions_are_never_with_characters_replaced(tmp_path):
    book = tmp_path / "book.txt"
    book.write_bytes("A café in Quill.\n".encode("cp1252"))
    rows_utf16 = tmp_path / "rows.jsonl"
    rows_utf16.write_text(SEED.read_text(encoding="utf-8"), encoding="utf-16")  # with its byte-order mark
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"instruction": "Où?", "output": "À Quill."}\n'.encode("cp1252"))
    rows = read_rows([book, rows_utf16, latin])
    assert rows.documents == ["A café in Quill.\n"]
    assert len(rows.conversations) == len(SEED.read_text().splitlines()) + 1 and not rows.problems
    assert rows.conversations[-1][0]["content"] == "Où?"
    assert rows.warnings == [f"{book}: not UTF-8, read as Windows-1252: re-save it as UTF-8 if some characters "
                             "look wrong", f"{latin}: not UTF-8, read as Windows-1252: re-save it as UTF-8 if some "
                             "characters look wrong"]


def test_a_batch_larger_than_the_data_is_a_note(tmp_path, capsys, tiny_llm):
    code, out, _ = _preview(tmp_path, capsys, base_model=str(tiny_llm("llama")), metadata_path=str(SEED), batch_size=64)
    assert code == 0
    assert "batch_size 64 is more than the 12 training sequence(s): each step trains on all 12 at once." in \
        " ".join(json.loads(out)["notes"])
