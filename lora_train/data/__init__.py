"""Image datasets: scanning folders and metadata.csv, captions, buckets, transforms, caches.

Files, one role each: `scan` (what to train on), `images` (checking and decoding files),
`captions` (caption text), `metadata_csv` (the csv layout), `buckets` (aspect-ratio buckets),
`sampler` (batches), `transforms` (pixels and SDXL size conditioning), `cache` (encoder output
cache), `dataset` (the torch Dataset; its docstring shows how the training loop wires them).
"""

from lora_train.data.buckets import Assignment, BucketPlan, BucketSettings, bucket_resolutions, plan_buckets
from lora_train.data.cache import CACHE_DIR_NAME, TensorCache, choose_cache_dir
from lora_train.data.captions import CaptionOptions, process_caption
from lora_train.data.dataset import ImageDataset, ItemOptions, collate
from lora_train.data.sampler import BucketBatchSampler, SampleKey
from lora_train.data.scan import DatasetIndex, ImageRecord, scan_dataset

__all__ = [
    "Assignment", "BucketBatchSampler", "BucketPlan", "BucketSettings", "CACHE_DIR_NAME", "CaptionOptions",
    "DatasetIndex", "ImageDataset", "ImageRecord", "ItemOptions", "SampleKey", "TensorCache", "bucket_resolutions",
    "choose_cache_dir", "collate", "plan_buckets", "process_caption", "scan_dataset",
]
