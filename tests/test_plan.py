"""`lora_train plan`: the auto preset differs by dataset size, family and free memory, keys the user set win,
the output is a config that loads, and bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from lora_train.cli import main
from lora_train.config import load_config


def dataset(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (64 + index % 7 * 8, 64), (index % 255, 90, 160)).save(folder / f"{index:03d}.png")
        (folder / f"{index:03d}.txt").write_text(f"zq, shape {index}")
    return folder


def plan(tmp_path: Path, capsys, base_model: Path, data: Path, *extra: str, **keys) -> tuple[int, str, str]:
    config = tmp_path / f"{data.name}.yaml"
    config.write_text(yaml.safe_dump({"base_model": str(base_model), "train_data_dir": str(data),
                                      "trigger_word": "zq", **keys}))
    code = main(["plan", "--config", str(config), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def proposed(text: str) -> dict:
    """The proposed keys of a plan (the lines after '# Proposed:'), by YAML."""
    block = text.split("# Proposed:\n", 1)[1].split("\n\n", 1)[0]
    return yaml.safe_load(block)


def test_three_dataset_sizes_give_different_steps(tmp_path, capsys, tiny_sd1_file):
    results = {}
    for count in (4, 31, 600):
        code, out, err = plan(tmp_path, capsys, tiny_sd1_file, dataset(tmp_path / f"d{count}", count))
        assert code == 0, err
        results[count] = proposed(out)
        assert "# Dataset doctor:" in out
    assert [results[n]["repeats"] for n in (4, 31, 600)] == [38, 5, 1]
    assert [results[n]["epochs"] for n in (4, 31, 600)] == [10, 10, 5]
    code, out, _ = plan(tmp_path, capsys, tiny_sd1_file, tmp_path / "d31")
    assert "31 images: 5 repeats" in out and "155 views per epoch x 10 epochs = 1,550 views: about 780 steps at " \
                                            "batch 2" in out


def test_two_families_give_different_proposals(tmp_path, capsys, tiny_sd1_file, tiny_sdxl_file):
    data = dataset(tmp_path / "data", 12)
    _, sd1, _ = plan(tmp_path, capsys, tiny_sd1_file, data)
    _, sdxl, _ = plan(tmp_path, capsys, tiny_sdxl_file, data)
    sd1, sdxl = proposed(sd1), proposed(sdxl)
    assert (sd1["resolution"], sd1["lora_rank"], sd1["train_text_encoder"]) == (512, 16, True)
    assert (sdxl["resolution"], sdxl["lora_rank"], sdxl["train_text_encoder"]) == (1024, 32, False)
    assert sd1["text_encoder_lr"] == 1e-5 and sdxl["cache_text_encoder_outputs"] is True
    assert sdxl["gradient_checkpointing"] is True and sd1["gradient_checkpointing"] is False


def test_little_free_memory_lowers_rank_and_batch(tmp_path, capsys, tiny_sdxl_file):
    data = dataset(tmp_path / "data", 12)
    code, out, _ = plan(tmp_path, capsys, tiny_sdxl_file, data, "--free-memory", "8")
    assert code == 0
    low = proposed(out)
    assert (low["lora_rank"], low["batch_size"], low["gradient_accumulation_steps"]) == (8, 1, 2)
    assert "8.0 GB free" in out


def test_keys_the_user_set_win_and_the_output_is_a_config(tmp_path, capsys, tiny_sdxl_file):
    data = dataset(tmp_path / "data", 12)
    code, out, _ = plan(tmp_path, capsys, tiny_sdxl_file, data, "--set", "epochs=3", lora_rank=4, batch_size=1,
                        flip_aug=True)
    assert code == 0
    ours = proposed(out)
    assert not {"lora_rank", "batch_size", "epochs", "flip_aug"} & set(ours)
    assert ours["cache_latents"] is False  # flip_aug needs the images each step
    assert "lora_alpha: 2.0" in out  # half the user's rank
    written = tmp_path / "planned.yaml"
    written.write_text(out)
    config = load_config(written)
    assert (config.lora_rank, config.batch_size, config.epochs, config.resolution) == (4, 1, 3, 1024)


@pytest.mark.parametrize("case", ["no folder", "empty folder", "not a config", "no config file"])
def test_bad_input_is_one_clear_line(tmp_path, capsys, tiny_sd1_file, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    if case == "not a config":
        config = tmp_path / "list.yaml"
        config.write_text("- a\n- b\n")
        code = main(["plan", "--config", str(config)])
        expected = "must hold `key: value` lines"
    elif case == "no config file":
        code = main(["plan", "--config", str(tmp_path / "missing.yaml")])
        expected = "does not exist"
    else:
        folder = tmp_path / "nowhere" if case == "no folder" else empty
        config = tmp_path / "x.yaml"
        config.write_text(yaml.safe_dump({"base_model": str(tiny_sd1_file), "train_data_dir": str(folder)}))
        code = main(["plan", "--config", str(config)])
        expected = "does not exist" if case == "no folder" else "No images in"
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: ") and expected in err and "Traceback" not in err


def test_a_family_without_sourced_rules_is_pointed_to_its_presets(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    flux = tmp_path / "flux1-dev.safetensors"  # BFL's names (the recogniser reads names only)
    names = ("img_in.weight", "guidance_in.in_layer.weight", "double_blocks.0.img_attn.qkv.weight",
             "double_blocks.0.txt_attn.qkv.weight", "single_blocks.0.linear1.weight", "final_layer.linear.weight")
    save_file({name: torch.zeros(2, 2) for name in names}, str(flux))
    code, out, err = plan(tmp_path, capsys, flux, dataset(tmp_path / "data", 4))
    assert code == 2 and out == ""
    assert "no sourced rules for Flux.1-dev" in err and "flux_24gb" in err and "Traceback" not in err
