"""Shared test set-up: no model hub, ever; tiny models built in code."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- tiny base-model files (lora_train.fixtures), built once per test session -------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """`tiny_checkpoints(arch)` -> TinyCheckpoint (arch: sd1 | sd2 | sd2-v | sdxl): the tiny model's files
    (single file + yaml, .ckpt, text-encoder folders, diffusers folder) in one session folder, built on
    first use. Treat them as read-only: copy before changing."""
    from lora_train.fixtures.checkpoints import build_tiny_checkpoint

    folder = tmp_path_factory.mktemp("tiny-models")
    return lambda arch: build_tiny_checkpoint(folder, arch, seed=0, ckpt=True)


def _tiny_path(arch: str, part: str, doc: str):
    def fixture(tiny_checkpoints):
        return getattr(tiny_checkpoints(arch), part)

    fixture.__doc__ = doc
    return pytest.fixture(scope="session")(fixture)


tiny_sd1_file = _tiny_path("sd1", "single_file", "tiny-sd1.safetensors (ldm layout, tiny-sd1.yaml beside it).")
tiny_sd1_ckpt = _tiny_path("sd1", "ckpt", 'tiny-sd1.ckpt: the same weights as a pickle {"state_dict": ...}.')
tiny_sd1_diffusers = _tiny_path("sd1", "diffusers", "tiny-sd1-diffusers/: the same model as a diffusers folder.")
tiny_sd2_file = _tiny_path("sd2", "single_file", "tiny-sd2.safetensors: SD2 layout (OpenCLIP), epsilon.")
tiny_sd2v_file = _tiny_path("sd2-v", "single_file",
                            "tiny-sd2-v.safetensors: SD2 layout, v-prediction (`parameterization: v` in its yaml).")
tiny_sdxl_file = _tiny_path("sdxl", "single_file",
                            "tiny-sdxl.safetensors: SDXL layout (CLIP-L + OpenCLIP-bigG style, size conditioning).")
tiny_sdxl_diffusers = _tiny_path("sdxl", "diffusers", "tiny-sdxl-diffusers/: the tiny SDXL as a diffusers folder.")


@pytest.fixture
def copy_tiny_checkpoint(tmp_path, tiny_checkpoints):
    """`copy_tiny_checkpoint(arch, edit_yaml=None, edit_tensors=None, yaml=True)` -> path of a copy of a tiny
    single-file checkpoint (with its yaml unless `yaml=False`) in a fresh folder, after `edit_yaml(dict)` and
    `edit_tensors(dict)` changed the copy's yaml and tensors in place."""
    import shutil
    from itertools import count

    import yaml as pyyaml
    from safetensors.torch import load_file, save_file

    copies = count()

    def copy(arch, edit_yaml=None, edit_tensors=None, yaml=True):
        files = tiny_checkpoints(arch)
        folder = tmp_path / f"copy-{next(copies)}"
        folder.mkdir()
        target = folder / files.single_file.name
        shutil.copy(files.single_file, target)
        if edit_tensors:
            tensors = load_file(target)
            edit_tensors(tensors)
            save_file(tensors, str(target))
        if yaml:
            config = pyyaml.safe_load(files.yaml.read_text())
            if edit_yaml:
                edit_yaml(config)
            target.with_suffix(".yaml").write_text(pyyaml.safe_dump(config))
        return target

    return copy


# --- tiny causal language models (lora_train.fixtures.tiny_llm), built once per test session ------
@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """`tiny_llm(arch="llama", chat_template=None)` -> folder of a tiny saved model (llama | gpt_neox | gpt2) with
    a tokenizer trained locally on the seed alpaca rows (tokenizer.json, no pad token). Read-only."""
    from text_support import build

    folder, built = tmp_path_factory.mktemp("tiny-llms"), {}

    def get(arch="llama", chat_template=None):
        key = (arch, chat_template)
        if key not in built:
            built[key] = build(folder / f"{arch}-{len(built)}", arch, chat_template)
        return built[key]

    return get


# --- tiny Flux-family models (lora_train.fixtures.flux_files), built once per test session -------
@pytest.fixture(scope="session")
def tiny_flux_files(tmp_path_factory):
    """`tiny_flux_files(family)` -> TinyFluxFiles (family: flux-dev | flux-schnell | chroma): the diffusers folder,
    the BFL transformer (bare, prefixed, all-in-one) and ae / clip_l / t5xxl beside it, one folder per family,
    built on first use. Read-only: copy before changing."""
    from lora_train.fixtures.flux_files import build_tiny_flux_files

    folder, built = tmp_path_factory.mktemp("tiny-flux"), {}

    def get(family):
        if family not in built:
            built[family] = build_tiny_flux_files(folder / family, family)
        return built[family]

    return get
