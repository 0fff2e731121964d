"""The YAML config: defaults, overrides, and refusals that name the key and what is allowed."""

from pathlib import Path

import pytest

from lora_train.config import TrainConfig, load_config, parse_overrides
from lora_train.config.reference import reference_markdown
from lora_train.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def paths(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")
    data = tmp_path / "images"
    data.mkdir()
    return {"base_model": str(model), "train_data_dir": str(data)}


def write(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_and_beginner_defaults(tmp_path, paths):
    cfg = load_config(write(tmp_path, f"base_model: {paths['base_model']}\ntrain_data_dir: {paths['train_data_dir']}\n"
                                      "learning_rate: 2e-4\nsample_prompts: [a cat]\n"))
    assert cfg.learning_rate == pytest.approx(2e-4)  # YAML reads 2e-4 as text; it must still be a number
    assert cfg.sample_prompts == ["a cat"]
    assert (cfg.lora_rank, cfg.lora_alpha, cfg.optimizer, cfg.scheduler) == (16, 8.0, "adamw8bit", "cosine")
    assert 4 <= cfg.lora_rank <= 32 and 1e-4 <= cfg.learning_rate <= 3e-4 and 5 <= cfg.epochs <= 20


def test_overrides_win_over_the_file_and_are_typed(tmp_path, paths):
    path = write(tmp_path, f"base_model: {paths['base_model']}\ntrain_data_dir: {paths['train_data_dir']}\n"
                           "lora_rank: 32\n")
    cfg = load_config(path, parse_overrides(["lora_rank=8", "flip_aug=true", "target_modules=to_q,to_v",
                                             "optimizer_args={betas: [0.9, 0.99]}"]))
    assert cfg.lora_rank == 8 and cfg.flip_aug is True
    assert cfg.target_modules == ["to_q", "to_v"]
    assert cfg.optimizer_args == {"betas": [0.9, 0.99]}


@pytest.mark.parametrize("text, expected", [
    ("learning_rat: 1e-4", "Unknown key 'learning_rat' in .*Did you mean 'learning_rate'"),
    ("lora_rank: sixteen", "'lora_rank' must be a whole number, got 'sixteen'"),
    ("lora_rank: 0", "'lora_rank' is 0, out of range: it must be between 1 and 1024"),
    ("learning_rate: -0.001", "'learning_rate' is -0.001, out of range"),
    ("optimizer: adam8bit", "'optimizer' cannot be 'adam8bit': allowed values are adamw8bit, .*Did you mean 'adamw8bit'"),
    ("flip_aug: maybe", "'flip_aug' must be true or false"),
    ("unet_targets: [attention, convs]", "'unet_targets' cannot be 'convs': allowed values are attention"),
    ("vae: /no/such/vae.safetensors", "'vae': /no/such/vae.safetensors does not exist"),
    ("output_name: ../escape", "'output_name' '../escape' cannot be used as a file name"),
    ("resolution: 500", "'resolution' is 500: it must be a multiple of 8"),
    ("train_unet: false\ntrain_text_encoder: false", "nothing would be trained"),
    ("lora_rank: [1, 2", "not valid YAML at line 3"),
])
def test_bad_values_are_refused_with_the_key_and_what_is_allowed(tmp_path, paths, text, expected):
    body = f"base_model: {paths['base_model']}\ntrain_data_dir: {paths['train_data_dir']}\n{text}\n"
    with pytest.raises(UserError, match=expected):
        load_config(write(tmp_path, body))


def test_missing_required_path_and_missing_file(tmp_path, paths):
    with pytest.raises(UserError, match="'train_data_dir' is required"):
        load_config(write(tmp_path, f"base_model: {paths['base_model']}\n"))
    with pytest.raises(UserError, match="'base_model': .*nope.safetensors does not exist"):
        load_config(write(tmp_path, f"base_model: {tmp_path}/nope.safetensors\n"
                                    f"train_data_dir: {paths['train_data_dir']}\n"))
    with pytest.raises(UserError, match="Config file .*absent.yaml does not exist"):
        load_config(tmp_path / "absent.yaml")
    vae_folder = tmp_path / "vae"
    vae_folder.mkdir()
    (vae_folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    with pytest.raises(UserError, match=r"'vae': .*vae is a folder; a file is needed here\. It holds "
                                        r"diffusion_pytorch_model\.safetensors: give one of them"):
        load_config(overrides={**paths, "vae": str(vae_folder)})
    with pytest.raises(UserError, match="'train_data_dir': .* is a file; a folder is needed"):
        load_config(overrides={"base_model": paths["base_model"], "train_data_dir": paths["base_model"]})


def test_a_key_set_twice_is_refused_naming_it_and_both_lines(tmp_path, paths):
    body = (f"base_model: {paths['base_model']}\ntrain_data_dir: {paths['train_data_dir']}\nlearning_rate: 1e-4\n"
            "lora_rank: 8\nlearning_rate: 1e-2\n")
    with pytest.raises(UserError, match=r"sets 'learning_rate' twice \(lines 3 and 5\): only one value can apply"):
        load_config(write(tmp_path, body))
    nested = f"base_model: {paths['base_model']}\ntrain_data_dir: {paths['train_data_dir']}\nsample_prompts:\n" \
             "  - {prompt: a, prompt: b}\n"
    with pytest.raises(UserError, match=r"sets 'prompt' twice \(lines 4 and 4\)"):
        load_config(write(tmp_path, nested))


def test_a_set_without_equals_is_explained():
    with pytest.raises(UserError, match="write it as key=value"):
        parse_overrides(["lora_rank"])


def test_docs_config_md_is_generated_from_the_schema():
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8").strip() == reference_markdown().strip(), \
        "docs/config.md is stale: run `python -m lora_train config --markdown > docs/config.md`"
    for key in TrainConfig.keys():
        assert f"`{key}`" in reference_markdown()


def test_example_configs_are_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path, check_paths=False)
