"""Natural-language captions from a transformers image-text model folder (BLIP, BLIP-2, GIT, LLaVA-style
such as JoyCaption, Qwen2/2.5-VL, SmolVLM, PaliGemma, Idefics3, converted Florence-2).

The model loads with `AutoModelForImageTextToText` + `AutoProcessor`, never with remote code (a
folder whose config asks for it is refused with advice). The prompt may hold `{trigger}`, `{tags}`
(the WD tagger's tags, as taggui does) and `{name}` (the file name). Chat models get the prompt
through the processor's chat template; BLIP-style models take it as the caption's beginning, which
is kept, while decoder-only models' echoed prompt is cut off. fp16/bf16 on a GPU, fp32 on the CPU unless told.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lora_train.caption.model_source import ModelFiles
from lora_train.core.errors import UserError

VLM_FILES = ModelFiles(required=("config.json", "model.safetensors|model.safetensors.index.json",
                                 "processor_config.json|preprocessor_config.json",
                                 "tokenizer.json|tokenizer.model|vocab.json|vocab.txt|spiece.model"),
                       download=("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"))
PREFIX_MODELS = {"blip", "blip-2", "git"}  # the prompt is the caption's first words
_DTYPES = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class VlmOptions:
    prompt: str = ""
    max_new_tokens: int = 60
    dtype: str = "auto"


@dataclass(frozen=True)
class PromptContext:
    trigger: str
    tags: str
    name: str


def fill_prompt(template: str, context: PromptContext) -> str:
    """The prompt with {trigger}, {tags} and {name} filled in (other braces are left alone)."""
    return template.replace("{trigger}", context.trigger).replace("{tags}", context.tags).replace("{name}", context.name)


class VlmCaptioner:
    """A loaded image-text model: `captions(images, contexts)` gives one caption per image."""

    def __init__(self, folder: Path, options: VlmOptions, device: str):
        config = _config(folder)
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.options = options
        self.device = _device(device, torch)
        dtype = _dtype(options.dtype, self.device, torch)
        try:
            self.processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise _not_loadable(folder, exc) from None
            raise UserError(f"{folder} holds a {config.get('model_type', 'transformers')} model, which transformers "
                            "cannot caption images with (no image-to-text class for it). Give an image-text model "
                            "folder: BLIP, BLIP-2, Florence-2, LLaVA, Qwen2.5-VL ...") from None
        except (OSError, KeyError) as exc:
            raise _not_loadable(folder, exc) from None
        self.model.to(self.device).eval()
        # decoder-only models echo the prompt before the caption; encoder-decoders (Florence-2) do not
        self.echoes_prompt = not getattr(self.model.config, "is_encoder_decoder", False) and \
            config.get("model_type", "") not in PREFIX_MODELS
        self.chat = bool(getattr(self.processor, "chat_template", None))
        tokenizer = getattr(self.processor, "tokenizer", None)
        if self.echoes_prompt and tokenizer is not None:
            tokenizer.padding_side = "left"  # batched prompts of different lengths must end where generation starts

    def captions(self, images: list[Image.Image], contexts: list[PromptContext]) -> list[str]:
        import torch

        prompts = [self._prompt(fill_prompt(self.options.prompt, c)) for c in contexts]
        if any(prompts):
            inputs = self.processor(images=images, text=prompts, return_tensors="pt", padding=True)
        else:
            inputs = self.processor(images=images, return_tensors="pt")
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        if "input_ids" in inputs and self.echoes_prompt:
            output = output[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(output, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def _prompt(self, text: str) -> str:
        if not self.chat:
            return text
        message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False)


def _not_loadable(folder: Path, exc: Exception) -> UserError:
    return UserError(f"{folder} does not load as a transformers image-to-text model with its processor "
                     f"({str(exc).splitlines()[0][:200]}). Give a folder with config.json, the weights and "
                     "the processor/tokenizer files.")


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} is not a transformers model folder (no config.json). Give the folder that holds "
                        "config.json, the weights and the processor files.")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("auto_map"):
        raise UserError(f"{folder} needs remote code (its config.json has auto_map), which lora_train never runs. "
                        "Use a checkpoint that transformers supports natively (for Florence-2: the converted "
                        "florence-community checkpoints).")
    return config


def _device(device: str, torch) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu or auto.")
    return device


def _dtype(name: str, device: str, torch):
    if name not in _DTYPES:
        raise UserError(f"dtype {name!r} is not one of {', '.join(_DTYPES)}.")
    if name == "auto":
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
