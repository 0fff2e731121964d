"""Captioning speed and peak memory per method, and kohya's WD14 tagger script side by side.

Runs `python -m lora_train caption` once per method on the same generated folder, each in its own
process, and prints images/s (wall clock, model loading included; and steady, from the progress
events after the first batch) and the process's peak RSS. Without models given, the tiny models of
`lora_train.fixtures.captioners` are built (they measure the pipeline, not a real model's speed).

    .venv/bin/python benchmarks/caption.py                                   # tiny models, 64 images
    .venv/bin/python benchmarks/caption.py --tagger ~/models/wd-vit-tagger-v3 --images 256 --size 768
    SD_SCRIPTS=~/sd-scripts .venv/bin/python benchmarks/caption.py --tagger ~/models/wd-vit-tagger-v3

With SD_SCRIPTS pointing at a checkout of kohya's sd-scripts, its
`finetune/tag_images_by_wd14_tagger.py --onnx` runs on the same model.onnx and folder, in the same
interpreter (it needs its own dependencies there), and gets its own row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = {"tagger": "build_tagger", "vlm": "build_blip", "clip": "build_open_clip"}


def build_tiny(method: str, folder: Path, env: dict) -> Path:
    """A tiny model, built in a child process: this one stays small, since a child's peak RSS counts the
    parent's memory at the fork."""
    code = f"from lora_train.fixtures import captioners as c; c.{TINY[method]}(__import__('pathlib').Path({str(folder)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, stderr=subprocess.DEVNULL)
    return folder


def make_images(folder: Path, count: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return folder


def run_ours(method: str, folder: Path, model: Path, extra: list[str], batch: int, env: dict) -> dict:
    command = [sys.executable, "-m", "lora_train", "caption", str(folder), "--method", method, "--model", str(model),
               "--mode", "overwrite", "--batch-size", str(batch), "--events", "jsonl", *extra]
    wall, rss, status, events = _measure_child(command, env)
    errors = [e["message"] for e in events if e["type"] == "error"]
    if status or errors:
        return {"error": errors[0] if errors else f"exit status {status}"}
    steps = [e for e in events if e["type"] == "step"]
    steady = (steps[-1]["step"] - steps[0]["step"]) / (steps[-1]["time"] - steps[0]["time"]) if len(steps) > 1 and \
        steps[-1]["time"] > steps[0]["time"] else float("nan")
    return {"wall_ips": steps[-1]["step"] / wall if steps else float("nan"), "steady_ips": steady, "rss_mb": rss}


def run_kohya(sd_scripts: Path, folder: Path, tagger: Path, batch: int, env: dict) -> dict:
    script = sd_scripts / "finetune" / "tag_images_by_wd14_tagger.py"
    if not script.is_file():
        return {"error": f"{script} not found"}
    with tempfile.TemporaryDirectory() as models:
        shutil.copytree(tagger, Path(models) / "bench_tagger")  # kohya looks in <model_dir>/<repo id with _>
        command = [sys.executable, str(script), str(folder), "--onnx", "--repo_id", "bench/tagger", "--model_dir",
                   models, "--batch_size", str(batch), "--caption_extension", ".kohya.txt"]
        wall, rss, status, events = _measure_child(command, {**env, "PYTHONPATH": str(sd_scripts)})
    if status:
        return {"error": f"exit status {status} (does this interpreter have sd-scripts' requirements?)"}
    count = len(list(folder.glob("*.png")))
    return {"wall_ips": count / wall, "steady_ips": float("nan"), "rss_mb": rss}


def _measure_child(command: list[str], env: dict) -> tuple[float, float, int, list[dict]]:
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                               env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (kB on Linux)
    wall = time.perf_counter() - began
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return wall, usage.ru_maxrss / 1024, status, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=512, help="side of the generated images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default="tagger,vlm,clip")
    parser.add_argument("--tagger", type=Path, help="a WD tagger folder (default: the tiny one)")
    parser.add_argument("--vlm", type=Path, help="an image-text model folder (default: the tiny BLIP)")
    parser.add_argument("--clip", type=Path, help="an open_clip model folder (default: the tiny CLIP)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = make_images(work / "images", args.images, args.size)
        vocabulary = work / "vocabulary.txt"
        vocabulary.write_text("\n".join(["a photo", "a drawing", "red", "blue", "green", "noise", "a cat", "a dog"]))
        given = {"tagger": args.tagger, "vlm": args.vlm, "clip": args.clip}
        models = {method: given[method] or build_tiny(method, work / method, env) for method in TINY}
        extra = {"tagger": [], "vlm": ["--max-new-tokens", "20"], "clip": ["--vocabulary", str(vocabulary)]}
        rows = [(f"lora_train {method}", run_ours(method, folder, models[method], extra[method], args.batch_size, env))
                for method in args.methods.split(",")]
        if os.environ.get("SD_SCRIPTS"):
            rows.append(("kohya tag_images_by_wd14_tagger --onnx",
                         run_kohya(Path(os.environ["SD_SCRIPTS"]), folder, Path(models["tagger"]), args.batch_size,
                                   env)))
    print(f"{args.images} images of {args.size}x{args.size}, batch {args.batch_size}, "
          f"{'tiny models' if not (args.tagger or args.vlm or args.clip) else 'given models'}")
    print("| run | images/s (wall, with loading) | images/s (steady) | peak RSS |\n|---|---:|---:|---:|")
    for name, result in rows:
        if "error" in result:
            print(f"| {name} | error: {result['error']} | | |")
        else:
            print(f"| {name} | {result['wall_ips']:.1f} | {result['steady_ips']:.1f} | {result['rss_mb']:,.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
