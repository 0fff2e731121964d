"""The three captioning methods behind one call: a batch of images in, one caption each out.

`tagger` (WD tagger booru tags), `vlm` (a transformers image-text model; with `{tags}` in its
prompt a tagger runs first), `clip` (top phrases of a vocabulary). Each method's model is resolved
by `model_source` (local path or hub repo id); without `--model` the first suggested model is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lora_train.caption.clip_ranker import CLIP_FILES, ClipOptions
from lora_train.caption.images import LoadedImage
from lora_train.caption.model_source import ModelFiles, resolve_model
from lora_train.caption.tagger import TAGGER_FILES
from lora_train.caption.tags import TagOptions
from lora_train.caption.vlm import VLM_FILES, PromptContext, VlmOptions
from lora_train.core.errors import UserError
from lora_train.core.events import EventSink

METHODS = ("tagger", "vlm", "clip")
# Hub models offered by the tab (licences in docs/captioning.md); the first of each is the default.
SUGGESTED_MODELS = {"tagger": ["SmilingWolf/wd-vit-tagger-v3", "SmilingWolf/wd-swinv2-tagger-v3",
                               "SmilingWolf/wd-convnext-tagger-v3", "SmilingWolf/wd-eva02-large-tagger-v3"],
                    "vlm": ["Salesforce/blip-image-captioning-large", "Salesforce/blip2-opt-2.7b",
                            "florence-community/Florence-2-large", "Qwen/Qwen2.5-VL-7B-Instruct"],
                    "clip": ["laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
                             "laion/CoCa-ViT-L-14-laion2B-s13B-b90k"]}
DEFAULT_MODELS = {method: models[0] for method, models in SUGGESTED_MODELS.items()}
FILES: dict[str, ModelFiles] = {"tagger": TAGGER_FILES, "vlm": VLM_FILES, "clip": CLIP_FILES}

Captioner = Callable[[list[LoadedImage]], list[str]]


@dataclass(frozen=True)
class MethodOptions:
    """Which method and model, and each method's settings."""

    method: str = "tagger"
    model: str = ""
    tagger_model: str = ""  # the tagger for `{tags}` in a vlm prompt
    captioners_dir: Path = Path("captioners")
    device: str = "auto"
    trigger_word: str = ""
    tags: TagOptions = field(default_factory=TagOptions)
    vlm: VlmOptions = field(default_factory=VlmOptions)
    clip: ClipOptions = field(default_factory=ClipOptions)


def build_captioner(options: MethodOptions, emit: EventSink) -> Captioner:
    """The loaded model of `options.method` as a function of a batch of images."""
    if options.method not in METHODS:
        raise UserError(f"Caption method {options.method!r} is not one of {', '.join(METHODS)}.")
    model = _resolve(options, options.method, options.model, emit)
    if options.method == "tagger":
        tagger = _tagger(model, options, emit)
        return lambda batch: [", ".join(tags) for tags in tagger.tags([item.image for item in batch])]
    if options.method == "clip":
        from lora_train.caption.clip_ranker import ClipRanker

        ranker = ClipRanker(model, options.clip, options.device, emit)
        return lambda batch: ranker.captions([item.image for item in batch])
    return _vlm(model, options, emit)


def _vlm(model: Path, options: MethodOptions, emit: EventSink) -> Captioner:
    from lora_train.caption.vlm import VlmCaptioner

    tagger = None
    if "{tags}" in options.vlm.prompt:
        if not options.tagger_model:
            raise UserError("The prompt uses {tags}: name the tagger that gives them with --tagger-model "
                            f"(e.g. {DEFAULT_MODELS['tagger']} or a local folder).")
        tagger = _tagger(_resolve(options, "tagger", options.tagger_model, emit), options, emit)
    captioner = VlmCaptioner(model, options.vlm, options.device)

    def caption(batch: list[LoadedImage]) -> list[str]:
        images = [item.image for item in batch]
        tags = tagger.tags(images) if tagger else [[] for _ in batch]
        contexts = [PromptContext(options.trigger_word, ", ".join(t), item.path.stem) for item, t in zip(batch, tags)]
        return captioner.captions(images, contexts)

    return caption


def _tagger(model: Path, options: MethodOptions, emit: EventSink):
    from lora_train.caption.tagger import WdTagger

    return WdTagger(model, options.tags, options.device, emit)


def _resolve(options: MethodOptions, method: str, spec: str, emit: EventSink) -> Path:
    return resolve_model(spec or DEFAULT_MODELS[method], FILES[method], options.captioners_dir, emit)
