"""A model folder's own tokenizer, in every format transformers saves, with vocabularies that are not CLIP's:
loaded for SD1, SD2 and SDXL (both tokenizers), trained on end to end, and a clear error when it does not fit."""

import json
import shutil

import pytest
from safetensors.torch import load_file

from lora_train.core.errors import UserError
from lora_train.fixtures.checkpoints import build_tiny_checkpoint
from lora_train.models.load import load_base_model
from lora_train.models.clip_tokenizer import write_clip_tokenizer_files
from lora_train.train.conditioning import tokenize
from train_support import train

# arch -> vocabulary size of each text encoder (none of them CLIP's 49,408)
VOCABS = {"sd1": (1000,), "sd2": (1700,), "sdxl": (1200, 900)}


@pytest.fixture(scope="module")
def odd_vocab_models(tmp_path_factory):
    """`odd_vocab_models(arch, files)`: tiny models whose tokenizers are saved as `files` (json: tokenizer.json
    only, as current transformers' save_pretrained writes; vocab: vocab.json + merges.txt; both)."""
    root = tmp_path_factory.mktemp("odd-vocab")
    return lambda arch, files: build_tiny_checkpoint(root / f"{arch}-{files}", arch, vocab_sizes=VOCABS[arch],
                                                     tokenizer_files=files)


def test_fixture_saves_tokenizers_as_current_transformers_does(odd_vocab_models):
    paths = odd_vocab_models("sdxl", "json")
    for folder in (paths.diffusers / "tokenizer", paths.diffusers / "tokenizer_2", *paths.text_encoders):
        names = {file.name for file in folder.iterdir()}
        assert "tokenizer.json" in names and not names & {"vocab.json", "merges.txt"}, folder
    assert {file.name for file in odd_vocab_models("sd1", "vocab").diffusers.joinpath("tokenizer").iterdir()} >= \
        {"vocab.json", "merges.txt"}


@pytest.mark.parametrize("files", ["json", "vocab", "both"])
@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_folder_tokenizers_are_loaded_in_every_saved_format(odd_vocab_models, arch, files):
    paths = odd_vocab_models(arch, files)
    for base in (load_base_model(paths.diffusers), load_base_model(paths.single_file)):
        assert [len(tokenizer) for tokenizer in base.tokenizers] == list(VOCABS[arch])
        for tokenizer, encoder in zip(base.tokenizers, base.text_encoders):
            ids = tokenizer("a photo of a cat").input_ids
            assert ids[0] == encoder.config.bos_token_id and ids[-1] == encoder.config.eos_token_id


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_training_on_a_folder_saved_by_current_transformers(odd_vocab_models, tmp_path, arch):
    paths = odd_vocab_models(arch, "json")
    lora, events = train(paths.diffusers, tmp_path / "out", max_train_steps=3,
                         train_text_encoder=True)
    steps = [event for event in events if event["type"] == "step"]
    assert len(steps) == 3 and all(step["loss"] == step["loss"] for step in steps)
    prefixes = {key.split("_text_model")[0] for key in load_file(lora) if key.startswith("lora_te")}
    assert prefixes == ({"lora_te1", "lora_te2"} if arch == "sdxl" else {"lora_te"})


@pytest.mark.parametrize("form", ["diffusers", "single_file"])
def test_tokenizer_larger_than_the_embedding_table_is_refused_before_training(odd_vocab_models, tmp_path, form):
    source = odd_vocab_models("sdxl", "json")
    folder = tmp_path / "model"
    shutil.copytree(source.diffusers, folder / "diffusers")
    tokenizer_2 = folder / "diffusers" / "tokenizer_2"
    shutil.rmtree(tokenizer_2)
    write_clip_tokenizer_files(tokenizer_2, pad_token="!", files="json")  # CLIP's 49,408 ids, encoder has 900
    base_model = folder / "diffusers"
    if form == "single_file":  # a checkpoint whose yaml names text-encoder folders without any tokenizer
        for file in (source.single_file, source.yaml):
            shutil.copy(file, folder)
        encoder_2 = source.text_encoders[1]
        (folder / source.yaml.name).write_text(source.yaml.read_text().replace(str(encoder_2), str(folder / "te2")))
        shutil.copytree(encoder_2, folder / "te2", ignore=shutil.ignore_patterns("tokenizer*"))
        base_model, tokenizer_2 = folder / source.single_file.name, folder / "te2"
    with pytest.raises(UserError) as error:
        train(base_model, tmp_path / "out", max_train_steps=1)
    message = str(error.value)
    assert "49408" in message and "900" in message and str(tokenizer_2) in message


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_a_tokenizer_saved_without_model_max_length_gets_the_text_encoders_window(tiny_checkpoints, tmp_path, arch):
    """What `CLIPTokenizer(...).save_pretrained` writes when no model_max_length was set: transformers then reads
    10**30, which tokenizing with padding to that length cannot convert (OverflowError)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoints(arch).diffusers, folder)
    for config in folder.glob("tokenizer*/tokenizer_config.json"):
        values = json.loads(config.read_text())
        values.pop("model_max_length")
        config.write_text(json.dumps(values))
    base = load_base_model(folder)
    for tokenizer, encoder, ids in zip(base.tokenizers, base.text_encoders, tokenize(base.tokenizers, ["a cat"])):
        assert tokenizer.model_max_length == encoder.config.max_position_embeddings == ids.shape[1]
