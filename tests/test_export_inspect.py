"""`inspect_lora` describes a saved file: family, module counts, rank / alpha, LoCon, DoRA, trigger words."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_export_support import trained

from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.kohya.state import kohya_state_dict
from lora_train.kohya.metadata import TrainingRun, build_metadata
from lora_train.core.card import sidecar, write_sidecar
from lora_train.kohya.write import save_lora
from lora_train.cli import main
from lora_train.tools.inspect import format_report, inspect_lora
from text_support import make_adapter


def _save(tmp_path, arch, spec):
    model = trained(arch, spec)
    header = build_metadata(spec, TrainingRun(
        output_name="cats", base_model="base.safetensors", family=arch, resolution=512, started_at=1.0, finished_at=2.0, steps=10,
        num_epochs=1, num_train_images=3, learning_rate=1e-4, trigger_words="kitty",
        tag_frequency={"1_cats": {"cat": 3, "sofa": 1}}))
    return save_lora(tmp_path / "cats.safetensors", kohya_state_dict(arch, model.unet, model.text_encoders), header)


def test_sdxl_locon_file(tmp_path):
    path = _save(tmp_path, "sdxl", LoraSpec(rank=4, alpha=2.0, conv_rank=2, conv_alpha=1.0))
    write_sidecar(path, sidecar(sd_version="SDXL", activation_text="kitty, cat ears"))
    report = inspect_lora(path)
    assert report["architecture"] == "sdxl" and report["base_model"] == "SDXL"
    assert report["modules"] == {"unet": 177, "te1": 12, "te2": 18} and report["other_modules"] == 0
    assert report["ranks"] == [2, 4] and report["alphas"] == [1.0, 2.0]
    # 12 ResNet blocks x (conv1, conv2) + 1 downsampler + 1 upsampler
    assert report["conv_layers"] == 26 and report["dora_layers"] == 0
    assert report["dtypes"] == ["float16", "float32"]
    assert report["trigger_words"] == ["kitty", "kitty, cat ears"]
    assert report["top_tags"] == [["cat", 3], ["sofa", 1]]
    assert report["hash_matches"] is True
    assert report["metadata"]["ss_network_dim"] == "4" and report["metadata"]["ss_output_name"] == "cats"
    json.dumps(report)  # what `inspect --json` prints
    text = format_report(report)
    assert "Base model:    SDXL" in text and "UNet 177, text encoder 1 12, text encoder 2 18" in text
    assert "LoCon convs:   26" in text and "Trigger words: kitty | kitty, cat ears" in text


def test_sd1_dora_file(tmp_path):
    report = inspect_lora(_save(tmp_path, "sd1", LoraSpec(rank=8, alpha=8.0, use_dora=True)))
    assert report["architecture"] == "sd1" and report["modules"] == {"unet": 72, "te": 12}
    assert report["dora_layers"] == 84 and report["conv_layers"] == 0
    assert "DoRA:          yes (84 layers)" in format_report(report)


def test_not_a_lora(tmp_path):
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(2)}, str(tmp_path / "ckpt.safetensors"))
    with pytest.raises(UserError, match="holds no LoRA modules"):
        inspect_lora(tmp_path / "ckpt.safetensors")


@pytest.mark.parametrize("name, content, seems", [
    ("job.yaml", b"base_model: x\n", "but a text file: give a .safetensors LoRA"),
    ("empty.pt", b"", "but an empty file (0 bytes): the copy or download did not finish"),
    ("notes.safetensors", b"my favourite prompts\n", "but a text file"),
])
def test_a_file_that_is_no_tensor_file_says_what_it_seems_to_be(tmp_path, capsys, name, content, seems):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    out = capsys.readouterr()
    assert f"{path} is not a LoRA file {seems}" in out.err and "Traceback" not in out.err


def test_other_trainers_files_and_per_block_ranks(tmp_path):
    """A LyCORIS LoCon header and diffusers / PEFT keys are read; ranks and alphas are given per block."""
    path = _save(tmp_path, "sd1", LoraSpec(rank=4, alpha=2.0, conv_rank=2, conv_alpha=1.0))
    tensors = load_file(path)
    save_file(tensors, str(tmp_path / "lycoris.safetensors"), {"ss_network_module": "lycoris.kohya"})
    report = inspect_lora(tmp_path / "lycoris.safetensors")
    blocks = {row["block"]: row for row in report["blocks"]}
    assert report["format"] == "LyCORIS" and blocks["BASE"]["modules"] == 12
    assert blocks["IN01"]["ranks"] == [2, 4] and blocks["IN01"]["alphas"] == [1.0, 2.0]
    assert blocks["IN03"]["ranks"] == [2]  # the downsampler conv
    assert "Per block:" in format_report(report) and "IN01" in format_report(report)

    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    peft = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight":
            tensors[f"{name}.lora_down.weight"],
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight":
            tensors[f"{name}.lora_up.weight"]}
    save_file(peft, str(tmp_path / "peft.safetensors"))
    report = inspect_lora(tmp_path / "peft.safetensors")
    assert report["format"] == "diffusers / PEFT" and report["modules"] == {"unet": 1}
    assert report["blocks"] == [{"block": "IN01", "modules": 1, "ranks": [4], "alphas": [4.0]}]


def test_reading_a_header_imports_no_peft_nor_bitsandbytes(tmp_path):
    """`inspect` reads a header: it must not pay for (nor print the notices of) the training libraries."""
    path = _save(tmp_path, "sd1", LoraSpec(rank=4, alpha=4.0))
    probe = ("import sys\nfrom lora_train.cli import main\ncode = main(['inspect', sys.argv[1]])\n"
             "print(sorted(name for name in ('peft', 'bitsandbytes', 'diffusers', 'transformers', 'accelerate') "
             "if name in sys.modules), code)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[] 0"
    assert "Base model:    SD 1" in done.stdout and "bitsandbytes" not in done.stderr


def test_a_peft_adapter_folder_and_its_weights_file_are_described_as_an_llm_adapter(tmp_path, tiny_llm, capsys):
    base = tiny_llm("llama")
    adapter = make_adapter(base, tmp_path / "llm", 4, 1, ["q_proj", "v_proj"])
    for path in (adapter, adapter / "adapter_model.safetensors"):
        report = inspect_lora(path)
        assert report["format"] == "PEFT adapter" and report["base_model"] == str(base)
        assert report["ranks"] == [4] and report["alpha"] == 8 and report["layers"] == {"q_proj": 2, "v_proj": 2}
        assert main(["inspect", str(path)]) == 0
        text = capsys.readouterr().out
        assert "text generation" in text and "UNet" not in text and "Alpha:         8" in text


def test_a_folder_that_is_no_adapter_says_what_it_is(tmp_path, tiny_llm, tiny_sd1_diffusers):
    for folder, what in ((tiny_llm("llama"), "a model folder (config.json)"),
                         (tiny_sd1_diffusers, "a diffusers model folder"), (tmp_path, "a folder with no LoRA file")):
        with pytest.raises(UserError, match=re.escape(f"{folder} is {what}")):
            inspect_lora(folder)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "one.safetensors"))
    with pytest.raises(UserError, match=r"a folder of 1 .safetensors file\(s\) \(one.safetensors\): give one of them"):
        inspect_lora(tmp_path)
