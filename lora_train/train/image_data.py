"""From the config's data keys to batches: scan, buckets, dataset, sampler, caches.

Caches are filled here, before the loop, with the encoders on the training device: VAE
latents (`cache_latents`, on disk with `cache_latents_to_disk`) and text-encoder outputs
(`cache_text_encoder_outputs`, where the outputs cannot change: see `text_cache_applies`). Cache entries are keyed by the image's bytes or the caption,
the settings, and the base model file's identity, so a changed input is encoded again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data.buckets import BucketSettings, plan_buckets
from ..data.cache import TensorCache, choose_cache_dir
from ..data.captions import CaptionOptions
from ..data.dataset import ImageDataset, ItemOptions, collate
from ..data.sampler import BucketBatchSampler
from ..data.scan import DatasetIndex, scan_dataset
from ..models.base_model import BaseModel
from .conditioning import encode_text, tokenize


@dataclass
class ImageData:
    index: DatasetIndex
    dataset: ImageDataset
    sampler: BucketBatchSampler
    loader: DataLoader
    warnings: list[str]

    def batches(self, epoch: int, skip: int = 0):
        """This process's batches of one epoch (0-based), after the epoch's first `skip` ones (all processes')."""
        self.sampler.set_epoch(epoch, skip_batches=skip)
        return iter(self.loader)


def build_image_data(config: TrainConfig, num_processes: int = 1, process_index: int = 0) -> ImageData:
    """The dataset and this process's share of its batches."""
    index = scan_dataset(config.train_data_dir, config.metadata_path, caption_extension=config.caption_extension,
                         trigger_word=config.trigger_word, repeats=config.repeats)
    settings = BucketSettings(config.resolution, config.enable_bucket, config.min_bucket_reso, config.max_bucket_reso,
                              config.bucket_reso_steps, config.bucket_no_upscale)
    plan = plan_buckets([r.size for r in index.records], [r.name for r in index.records], settings)
    captions = CaptionOptions(config.trigger_word, config.shuffle_caption, config.keep_tokens,
                              config.caption_dropout_rate)
    dataset = ImageDataset(index.records, plan,
                           ItemOptions(captions, random_crop=config.crop == "random", flip_aug=config.flip_aug))
    sampler = BucketBatchSampler(plan.bucket_ids, [r.repeats for r in index.records], config.batch_size,
                                 config.seed, num_shards=num_processes, shard=process_index)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.max_data_loader_n_workers,
                        persistent_workers=config.max_data_loader_n_workers > 0)
    return ImageData(index, dataset, sampler, loader, index.warnings + plan.warnings)


def model_identity(base: BaseModel, *extra: object) -> str:
    """Names a base model's encoders for cache keys: its file, size and modification time."""
    stat = os.stat(base.path)
    return ":".join(map(str, (Path(base.path).resolve(), stat.st_size, stat.st_mtime_ns, *extra)))


def _disk_cache(config: TrainConfig, output_dir: Path, kind: str, log: Callable[[str], None]) -> TensorCache:
    """The on-disk cache for `kind` (latents | text): beside the images, or under output_dir if not writable."""
    data_root = Path(config.train_data_dir or Path(config.metadata_path).parent)
    folder, warning = choose_cache_dir(data_root, output_dir / "cache")
    if warning:
        log(warning)
    return TensorCache(folder / kind)


def _report(what: str, cache: TensorCache) -> str:
    return f"{what}: {cache.stats.hits} from the cache, {cache.stats.misses} encoded"


def cache_latents(config: TrainConfig, data: ImageData, base: BaseModel, device: torch.device,
                  output_dir: Path, log: Callable[[str], None]) -> str | None:
    """Encode every image once with the VAE (in memory, or on disk beside the images); returns a report."""
    if config.crop == "random" or config.flip_aug:
        log("cache_latents is off for this run: it cannot keep random crops or flips (crop: random / flip_aug).")
        return None
    cache = _disk_cache(config, output_dir, "latents", log) if config.cache_latents_to_disk else TensorCache()
    vae = base.vae

    @torch.no_grad()
    def encode(pixel_values: torch.Tensor) -> torch.Tensor:
        pixels = pixel_values.to(device=device, dtype=vae.dtype)
        return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).float().cpu()

    identity = model_identity(base, "vae", config.vae, vae.config.scaling_factor, vae.dtype)
    data.dataset.cache_latents(encode, identity, cache, config.batch_size)
    return _report("Latents", cache)


def text_cache_applies(config: TrainConfig) -> bool:
    """Text-encoder outputs are cached (the default) only where they cannot change during training: the
    text encoder is frozen and every caption is fixed (no shuffle, no dropout)."""
    wanted = config.cache_text_encoder_outputs or config.cache_text_encoder_outputs_to_disk
    return wanted and not config.train_text_encoder and not config.shuffle_caption and not config.caption_dropout_rate


def cache_text_outputs(config: TrainConfig, data: ImageData, base: BaseModel, device: torch.device,
                       output_dir: Path, log: Callable[[str], None]) -> str:
    """Encode every caption once with the frozen text encoder(s); returns a report."""
    to_disk = config.cache_text_encoder_outputs_to_disk
    cache = _disk_cache(config, output_dir, "text", log) if to_disk else TensorCache()

    @torch.no_grad()
    def encode(captions: list[str]) -> dict[str, torch.Tensor]:
        ids = [t.to(device) for t in tokenize(base.tokenizers, captions)]
        cond = encode_text(base.arch, base.text_encoders, ids, config.clip_skip)
        out = {"hidden_states": cond.hidden_states.float().cpu()}
        if cond.pooled is not None:
            out["pooled"] = cond.pooled.float().cpu()
        return out

    identity = model_identity(base, "text", config.clip_skip, base.text_encoders[0].dtype)
    data.dataset.cache_text_encoder_outputs(encode, identity, cache)
    return _report("Text-encoder outputs", cache)
