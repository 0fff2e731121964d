"""Image-text captioners in process: a chat model (tiny LLaVA) gets its prompt through the chat template, the echoed
prompt is cut off, and batching prompts of different lengths gives the same captions as one at a time."""

from __future__ import annotations

import pytest
from PIL import Image

from lora_train.caption.vlm import PromptContext, VlmCaptioner, VlmOptions, fill_prompt
from lora_train.fixtures.captioners import LLAVA_WORDS, build_llava


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
