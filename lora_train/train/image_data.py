"""From the config's data keys to batches: the planned dataset (data/plan.py), the torch Dataset,
the sampler and the caches.

Caches are filled here, before the loop, with the encoders on the training device: VAE
latents (`cache_latents`, on disk with `cache_latents_to_disk`) and text-encoder outputs
(`cache_text_encoder_outputs`, where the outputs cannot change: see `text_cache_applies`). Cache entries are keyed by the image's bytes or the caption,
the settings, and the base model file's identity, so a changed input is encoded again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data.cache import TensorCache, Tensors, choose_cache_dir
from ..data.captions import CaptionOptions
from ..data.dataset import ImageDataset, ItemOptions, collate
from ..data.holdout import ValidationSettings, plan_with_validation
from ..data.plan import DataSettings
from ..data.sampler import BucketBatchSampler
from ..data.scan import DatasetIndex
from ..models.base_model import BaseModel
from .conditioning import encode_text, tokenize
from .latents import encode_latents
from .reporting import Say


@dataclass
class ImageData:
    index: DatasetIndex
    dataset: ImageDataset
    sampler: BucketBatchSampler
    loader: DataLoader
    warnings: list[str]
    validation: ImageDataset | None = None  # the held-out images (val_split / val_data_dir), or none

    def cache_text(self, encode: Callable[[list[str]], Tensors], identity: str, cache: TensorCache) -> None:
        """The training captions' text-encoder outputs in `cache`, the validation captions' in memory."""
        self.dataset.cache_text_encoder_outputs(encode, identity, cache)
        if self.validation is not None:
            self.validation.cache_text_encoder_outputs(encode, identity, TensorCache())

    def batches(self, epoch: int, skip: int = 0):
        """This process's batches of one epoch (0-based), after the epoch's first `skip` ones (all processes')."""
        self.sampler.set_epoch(epoch, skip_batches=skip)
        return iter(self.loader)


def build_image_data(config: TrainConfig, num_processes: int = 1, process_index: int = 0) -> ImageData:
    """The dataset and this process's share of its batches, and the validation images."""
    planned, held_out = plan_with_validation(DataSettings.from_values(vars(config)),
                                             ValidationSettings(config.val_split, config.val_data_dir, config.seed))
    captions = CaptionOptions(config.trigger_word, config.shuffle_caption, config.keep_tokens,
                              config.caption_dropout_rate)
    validation = ImageDataset(held_out.index.records, held_out.plan, ItemOptions(CaptionOptions(config.trigger_word))) \
        if held_out is not None else None
    dataset = ImageDataset(planned.index.records, planned.plan,
                           ItemOptions(captions, random_crop=config.crop == "random", flip_aug=config.flip_aug))
    sampler = BucketBatchSampler(planned.plan.bucket_ids, [r.repeats for r in planned.index.records],
                                 config.batch_size, config.seed, num_shards=num_processes, shard=process_index)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.max_data_loader_n_workers,
                        persistent_workers=config.max_data_loader_n_workers > 0)
    per_epoch = sum(record.repeats for record in planned.index.records)
    fewer = [f"batch_size {config.batch_size} is more than the {per_epoch} images of an epoch: each step trains on "
             f"all {per_epoch} at once. Lower batch_size, or add images or repeats."] \
        if config.batch_size > per_epoch else []
    return ImageData(planned.index, dataset, sampler, loader, planned.warnings + fewer, validation)


def model_identity(base: BaseModel, *extra: object) -> str:
    """Names a base model's encoders for cache keys: its file, size and modification time."""
    stat = os.stat(base.path)
    return ":".join(map(str, (Path(base.path).resolve(), stat.st_size, stat.st_mtime_ns, *extra)))


@dataclass
class CacheFolders:
    """Where on-disk caches go: beside the images, or under output_dir/cache when that is not writable."""

    data_root: Path
    fallback: Path
    say: Say

    def open(self, kind: str, to_disk: bool) -> TensorCache:
        """The cache for `kind` (latents | text): in memory, or on disk."""
        if not to_disk:
            return TensorCache()
        folder, warning = choose_cache_dir(self.data_root, self.fallback)
        if warning:
            self.say(warning, "warning")
        return TensorCache(folder / kind)


def _report(what: str, cache: TensorCache) -> str:
    return f"{what}: {cache.stats.hits} from the cache, {cache.stats.misses} encoded"


def cache_latents(dataset: ImageDataset, base: BaseModel, device: torch.device, cache: TensorCache,
                  vae_name: str | None, batch_size: int) -> str:
    """Encode every image of `dataset` once with the VAE; returns a report."""
    vae = base.vae
    identity = model_identity(base, "vae", vae_name, vae.config.scaling_factor, vae.dtype)
    dataset.cache_latents(lambda pixels: encode_latents(vae, pixels, device).cpu(), identity, cache, batch_size)
    return _report("Latents", cache)


def cache_text_outputs(data: ImageData, base: BaseModel, device: torch.device, cache: TensorCache,
                       clip_skip: int) -> str:
    """Encode every caption once with the frozen text encoder(s); returns a report."""

    @torch.no_grad()
    def encode(captions: list[str]) -> dict[str, torch.Tensor]:
        ids = [t.to(device) for t in tokenize(base.tokenizers, captions)]
        cond = encode_text(base.arch, base.text_encoders, ids, clip_skip)
        out = {"hidden_states": cond.hidden_states.float().cpu()}
        if cond.pooled is not None:
            out["pooled"] = cond.pooled.float().cpu()
        return out

    identity = model_identity(base, "text", clip_skip, base.text_encoders[0].dtype)
    data.cache_text(encode, identity, cache)
    return _report("Text-encoder outputs", cache)


def text_cache_applies(config: TrainConfig) -> bool:
    """Text-encoder outputs are cached (the default) only where they cannot change during training: the
    text encoder is frozen and every caption is fixed (no shuffle, no dropout)."""
    wanted = config.cache_text_encoder_outputs or config.cache_text_encoder_outputs_to_disk
    return wanted and not config.train_text_encoder and not config.shuffle_caption and not config.caption_dropout_rate


def cache_folders(config: TrainConfig, output_dir: Path, say: Say) -> CacheFolders:
    return CacheFolders(Path(config.train_data_dir or Path(config.metadata_path).parent), output_dir / "cache", say)


def fill_latent_cache(config: TrainConfig, data: ImageData, base: BaseModel, device: torch.device,
                      folders: CacheFolders, vae_name: str | None) -> None:
    """The latent cache, when `cache_latents` asks for it and the images are not randomly cropped or flipped;
    the validation images' latents always (in memory: every evaluation reads them all)."""
    if data.validation is not None:
        cache_latents(data.validation, base, device, TensorCache(), vae_name, config.batch_size)
    if not config.cache_latents:
        return
    if config.crop == "random" or config.flip_aug:
        folders.say("cache_latents is off for this run: it cannot keep random crops or flips (crop: random / "
                    "flip_aug).", "warning")
        return
    cache = folders.open("latents", config.cache_latents_to_disk)
    folders.say(cache_latents(data.dataset, base, device, cache, vae_name, config.batch_size))


def fill_caches(config: TrainConfig, data: ImageData, base: BaseModel, device: torch.device, output_dir: Path,
                say: Say) -> None:
    """The caches the config asks for, filled with the encoders on the training device."""
    folders = cache_folders(config, output_dir, say)
    fill_latent_cache(config, data, base, device, folders, config.vae)
    if text_cache_applies(config):
        cache = folders.open("text", config.cache_text_encoder_outputs_to_disk)
        say(cache_text_outputs(data, base, device, cache, config.clip_skip))
