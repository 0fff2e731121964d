"""Batch captioning of an image folder: WD tagger booru tags (onnxruntime), natural-language captions
(transformers image-text models) and CLIP ranking over a vocabulary (open_clip), written as `.txt`
files and/or a metadata.csv without ever losing an existing caption. See docs/captioning.md."""
