"""The tiny checkpoint files: deterministic, reused when unchanged, laid out as users' real files are."""

import filecmp

import torch
import yaml
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from lora_train.fixtures.__main__ import main
from lora_train.fixtures import checkpoints
from lora_train.fixtures.checkpoints import build_tiny_checkpoint


def relative_files(paths):
    root = paths.manifest.parent
    return {file.relative_to(root) for file in paths.files()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    arch = "sdxl"  # both CLIP layouts
    first = build_tiny_checkpoint(tmp_path / "a", arch, seed=3, ckpt=True)
    second = build_tiny_checkpoint(tmp_path / "b", arch, seed=3, ckpt=True)
    names = relative_files(first)
    assert names == relative_files(second) and len(names) > 10
    for name in names - {first.yaml.relative_to(tmp_path / "a")}:
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    # the yaml differs only in where it says the text-encoder folders are
    assert first.yaml.read_text().replace(str(tmp_path / "a"), "X") == \
        second.yaml.read_text().replace(str(tmp_path / "b"), "X")
    other = build_tiny_checkpoint(tmp_path / "c", arch, seed=4)
    assert not filecmp.cmp(first.single_file, other.single_file, shallow=False)


def test_existing_unchanged_files_are_reused_and_changed_ones_rebuilt(tmp_path, monkeypatch):
    paths = build_tiny_checkpoint(tmp_path, "sd1")
    stamp = paths.single_file.stat().st_mtime_ns
    assert build_tiny_checkpoint(tmp_path, "sd1") == paths
    assert paths.single_file.stat().st_mtime_ns == stamp
    original = paths.single_file.read_bytes()
    paths.single_file.write_bytes(original[:1000])
    build_tiny_checkpoint(tmp_path, "sd1")
    assert paths.single_file.read_bytes() == original
    stamp = paths.single_file.stat().st_mtime_ns
    monkeypatch.setattr(checkpoints, "_writer_version", lambda: "a newer writer")
    build_tiny_checkpoint(tmp_path, "sd1")
    assert paths.single_file.stat().st_mtime_ns != stamp


def test_single_file_has_the_original_key_layout(tiny_checkpoints):
    sd1 = load_file(tiny_checkpoints("sd1").single_file)
    assert sd1["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape == (32, 32)
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in sd1  # downsampler
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in sd1  # upsampler after a plain level
    assert sd1["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4  # ldm's 1x1 conv attention
    assert "first_stage_model.encoder.down.0.block.0.nin_shortcut.weight" not in sd1
    assert "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight" in sd1
    assert "alphas_cumprod" in sd1 and "cond_stage_model.transformer.text_model.embeddings.position_ids" in sd1

    sd2 = load_file(tiny_checkpoints("sd2").single_file)
    assert sd2["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (96, 32)
    assert "cond_stage_model.model.transformer.resblocks.3.mlp.c_proj.weight" in sd2  # the unused 4th block
    assert {"cond_stage_model.model.text_projection", "cond_stage_model.model.logit_scale",
            "cond_stage_model.model.positional_embedding", "cond_stage_model.model.ln_final.weight"} <= sd2.keys()

    sdxl = load_file(tiny_checkpoints("sdxl").single_file)
    assert "model.diffusion_model.label_emb.0.0.weight" in sdxl
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in sdxl  # upsampler after attention
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in sdxl
    assert sdxl["conditioner.embedders.1.model.text_projection"].shape == (32, 32)


def test_ckpt_holds_the_same_tensors(tiny_checkpoints):
    paths = tiny_checkpoints("sd1")
    pickled = torch.load(paths.ckpt, weights_only=True)["state_dict"]
    stored = load_file(paths.single_file)
    assert pickled.keys() == stored.keys()
    assert all(torch.equal(pickled[key], stored[key]) for key in stored)


def test_yaml_follows_the_webui_configs_and_names_loadable_text_encoder_folders(tiny_checkpoints):
    paths = tiny_checkpoints("sd1")
    params = yaml.safe_load(paths.yaml.read_text())["model"]["params"]
    assert params["unet_config"]["target"] == "ldm.modules.diffusionmodules.openaimodel.UNetModel"
    unet = params["unet_config"]["params"]
    assert (unet["num_heads"], unet["model_channels"], unet["image_size"]) == (4, 32, 8)  # ldm requires image_size
    assert params["first_stage_config"]["params"]["ddconfig"]["ch_mult"] == [1, 1, 1, 1]
    assert params["cond_stage_config"]["target"] == "ldm.modules.encoders.modules.FrozenCLIPEmbedder"
    version = params["cond_stage_config"]["params"]["version"]
    assert version == str(paths.text_encoders[0])
    # what the WebUI's FrozenCLIPEmbedder does with `version`, offline (its transformers 4.30 reads the
    # slow tokenizer's vocab.json + merges.txt, and weights named text_model.*)
    assert {"vocab.json", "merges.txt", "config.json"} <= {f.name for f in paths.text_encoders[0].iterdir()}
    assert "text_model.final_layer_norm.weight" in load_file(paths.text_encoders[0] / "model.safetensors")
    tokenizer = CLIPTokenizer.from_pretrained(version, local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(version, local_files_only=True)
    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]
    stored = load_file(paths.single_file)
    assert torch.equal(encoder.state_dict()["encoder.layers.0.self_attn.q_proj.weight"],
                       stored["cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"])

    assert CLIPTokenizer.from_pretrained(tiny_checkpoints("sd2").text_encoders[0]).pad_token == "!"  # as SD2's
    sd2v = yaml.safe_load(tiny_checkpoints("sd2-v").yaml.read_text())["model"]["params"]
    assert sd2v["parameterization"] == "v" and sd2v["unet_config"]["params"]["use_linear_in_transformer"]
    sdxl = yaml.safe_load(tiny_checkpoints("sdxl").yaml.read_text())["model"]
    assert sdxl["target"] == "sgm.models.diffusion.DiffusionEngine"
    embedders = sdxl["params"]["conditioner_config"]["params"]["emb_models"]
    assert [e["target"].rsplit(".", 1)[1] for e in embedders] == \
        ["FrozenCLIPEmbedder", "FrozenOpenCLIPEmbedder2"] + ["ConcatTimestepEmbedderND"] * 3


def test_command_line_writes_the_asked_archs(tmp_path, capsys):
    main(["--out", str(tmp_path), "--arch", "sd1", "--seed", "1"])
    assert (tmp_path / "tiny-sd1.safetensors").is_file() and (tmp_path / "tiny-sd1-diffusers" / "model_index.json").is_file()
    assert not (tmp_path / "tiny-sdxl.safetensors").exists()
    assert "tiny-sd1.safetensors" in capsys.readouterr().out
