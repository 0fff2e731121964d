"""The one workload every tool trains in the side-by-side benchmark: a model, images, captions.

The model is the project's tiny SD1/SDXL test model written as a diffusers folder (or the
public model's shapes with random weights for the real-size figures: a single file, what users
have, for ours and kohya, and the same weights as a diffusers folder for diffusers' example),
built in a child process so the harness itself stays free of torch. The images are the same files for every tool, laid out
the way each one reads them: `.txt` captions beside them (ours), a `metadata.jsonl`
(diffusers' examples, `datasets` imagefolder) and an `N_name` folder (kohya).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a red cube on a table", "a blue ball in the grass", "a green car on a road", "a yellow house at dusk"]


@dataclass
class Workload:
    arch: str  # sd1 | sdxl
    model: Path  # a diffusers folder (tiny) or a single-file checkpoint (real size)
    diffusers_model: Path  # the same weights as a diffusers folder (what diffusers' examples read)
    images: Path  # images + .txt captions (ours)
    imagefolder: Path  # images + metadata.jsonl (diffusers)
    kohya: Path  # parent of a `1_subject` folder (kohya)
    tokenizers: Path  # the model's tokenizers under the hub names kohya looks for (--tokenizer_cache_dir)
    resolution: int


def build_model(out: Path, arch: str, real_size: bool, dtype: str = "float16") -> tuple[Path, Path]:
    """The tiny test model as a diffusers folder (both paths), or the public model's shapes with random weights
    in `dtype` as a single-file checkpoint (what kohya and the WebUI read) and a diffusers folder of the same
    weights (benchmarks/real_size_model.py writes them)."""
    if real_size:
        path = out / f"{arch}-random-{dtype}.safetensors"
        folder = out / f"{arch}-random-{dtype}-diffusers"
        if not (path.exists() and (folder / "model_index.json").exists()):
            out.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_size_model.py"), arch, str(path),
                            "--dtype", dtype, "--diffusers", str(folder)], check=True, cwd=ROOT, capture_output=True)
        return path, folder
    subprocess.run([sys.executable, "-m", "lora_train.fixtures", "--out", str(out), "--arch", arch], check=True,
                   cwd=ROOT, capture_output=True)
    return (out / f"tiny-{arch}-diffusers",) * 2


def write_images(folder: Path, count: int, resolution: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` square images with simple shapes and their captions; returns (file name, caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = []
    for i in range(count):
        image = Image.new("RGB", (resolution, resolution), tuple(rng.randrange(256) for _ in range(3)))
        corner = rng.randrange(resolution // 2)
        image.paste(tuple(rng.randrange(256) for _ in range(3)),
                    (corner, corner, corner + resolution // 3, corner + resolution // 3))
        name = f"img{i:03d}.png"
        image.save(folder / name)
        files.append((name, CAPTIONS[i % len(CAPTIONS)]))
    return files


KOHYA_TOKENIZERS = {"tokenizer": "openai_clip-vit-large-patch14", "tokenizer_2": "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"}


def kohya_tokenizers(tiny_model: Path, out: Path) -> Path:
    """kohya loads the CLIP tokenizers by hub name; offline it reads them from --tokenizer_cache_dir."""
    for folder, name in KOHYA_TOKENIZERS.items():
        if (tiny_model / folder).exists() and not (out / name).exists():
            shutil.copytree(tiny_model / folder, out / name)
    return out


def build_workload(out: Path, arch: str, resolution: int, images: int = 8, real_size: bool = False,
                   dtype: str = "float16") -> Workload:
    tiny, _ = build_model(out / "models", arch, real_size=False)  # its tokenizers serve the real-size model too
    model, diffusers_model = build_model(out / "models", arch, real_size, dtype) if real_size else (tiny, tiny)
    data = out / f"data-{resolution}"
    if data.exists():
        shutil.rmtree(data)
    ours, imagefolder, kohya = data / "ours", data / "imagefolder", data / "kohya" / "1_subject"
    files = write_images(ours, images, resolution)
    for name, caption in files:
        (ours / name).with_suffix(".txt").write_text(caption)
    shutil.copytree(ours, kohya)
    imagefolder.mkdir()
    with open(imagefolder / "metadata.jsonl", "w") as meta:
        for name, caption in files:
            shutil.copy(ours / name, imagefolder / name)
            meta.write(json.dumps({"file_name": name, "text": caption}) + "\n")
    return Workload(arch, model, diffusers_model, ours, imagefolder, kohya.parent,
                    kohya_tokenizers(tiny, out / "tokenizers"), resolution)
