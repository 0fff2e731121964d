"""Image-text captioners in process: a chat model (tiny LLaVA) gets its prompt through the chat template, the echoed
prompt is cut off, and batching prompts of different lengths gives the same captions as one at a time."""

from __future__ import annotations

import pytest
from PIL import Image

from lora_train.caption.model_source import resolve_model
from lora_train.caption.vlm import VLM_FILES, PromptContext, VlmCaptioner, VlmOptions, fill_prompt
from lora_train.core.errors import UserError
from lora_train.fixtures.captioners import LLAVA_WORDS, build_blip, build_llava


def test_prompt_placeholders():
    context = PromptContext(trigger="zkw", tags="red, ^_^", name="img_01")
    assert fill_prompt("{trigger} in {name}: {tags} {other}", context) == "zkw in img_01: red, ^_^ {other}"


@pytest.mark.slow
def test_chat_model_captions_without_the_prompt_and_batching_changes_nothing(tmp_path):
    model = VlmCaptioner(build_llava(tmp_path / "llava"), VlmOptions("describe this image of {name}", 6), "cpu")
    assert model.chat and model.echoes_prompt
    images = [Image.new("RGB", (20, 20), (200, 30, 30)), Image.new("RGB", (24, 16), (20, 30, 230))]
    contexts = [PromptContext("", "", "red"), PromptContext("", "", "a photo of blue")]  # 1 and 4 prompt words
    together = model.captions(images, contexts)
    alone = [model.captions([image], [context])[0] for image, context in zip(images, contexts)]
    assert together == alone
    for caption in together:  # the prompt (10+ tokens) is cut off: only the new tokens remain
        assert "describe this image of" not in caption and len(caption.split()) <= 6
        assert set(caption.split()) <= set(LLAVA_WORDS)


def test_offline_message_names_the_processor_and_tokenizer_files_and_a_copied_folder_is_found(tmp_path):
    """The message lists every file a VLM needs to load (the processor and tokenizer too); a folder copied by
    hand as transformers saves it is then used without a download."""
    captioners = tmp_path / "captioners"
    with pytest.raises(UserError) as error:
        resolve_model("someone/tiny-blip", VLM_FILES, captioners, lambda event: None)
    message = str(error.value)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer.model", str(captioners / "someone--tiny-blip")):
        assert name in message, message
    target = build_blip(captioners / "someone--tiny-blip")
    (target / "processor_config.json").unlink()
    lacks = r"lacks processor_config.json or preprocessor_config.json \(offline: nothing was downloaded\)"
    with pytest.raises(UserError, match=lacks):
        resolve_model("someone/tiny-blip", VLM_FILES, captioners, lambda event: None)
    build_blip(target)
    assert resolve_model("someone/tiny-blip", VLM_FILES, captioners, lambda event: None) == target


def test_a_text_only_model_folder_is_named_for_what_it_is(tiny_llm):
    folder = tiny_llm("llama")
    with pytest.raises(UserError, match=rf"{folder} holds a llama model, which transformers cannot caption images with"):
        VlmCaptioner(folder, VlmOptions(), "cpu")
