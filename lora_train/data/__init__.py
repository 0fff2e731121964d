"""Image datasets: scanning folders and metadata.csv, captions, buckets, transforms, caches.

Files, one role each: `scan` (what to train on), `images` (checking and decoding files),
`captions` (caption text), `metadata_csv` (the csv layout), `buckets` (aspect-ratio buckets),
`sampler` (batches), `transforms` (pixels and SDXL size conditioning), `cache` (encoder output
cache), `plan` (the one wiring: scan, then buckets), `dataset` (the torch Dataset).

Import from the modules themselves. This file imports nothing, so that `scan`, `images`,
`captions`, `metadata_csv`, `buckets` and `plan` (PIL and numpy only, no torch) can be used by a
process that has no torch, such as the WebUI's own, to check a dataset before a job starts.
"""
