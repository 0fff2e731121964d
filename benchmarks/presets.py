"""Speed and peak memory of the training presets, side by side.

Runs `python -m lora_train train` once per preset on the same model and data, each in its own
process, and prints steps/s (median after warm-up), peak process RSS and, on a GPU, peak VRAM.

    .venv/bin/python benchmarks/presets.py                       # tiny SD1 + tiny SDXL on this machine
    .venv/bin/python benchmarks/presets.py --base-model /path/sdxl.safetensors --resolution 1024 --steps 30

The baseline row is the config defaults; each other row applies one preset from
lora_train/config/presets.py on top of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_train.config.presets import PRESETS  # noqa: E402
from lora_train.families import family  # noqa: E402

SD_PRESETS = family("sd1").presets  # the Stable Diffusion ones (benchmarks/flux_gpu.py measures Flux's)


def run(base_model: Path, data: Path, out: Path, resolution: int, steps: int, preset: str | None) -> dict:
    settings = {"base_model": str(base_model), "train_data_dir": str(data), "output_dir": str(out),
                "resolution": resolution, "max_train_steps": steps, "sample_steps": 1, "log_with": "none",
                "enable_bucket": False, "optimizer": "adamw8bit", "scheduler": "constant", "batch_size": 2}
    if preset:
        settings.update(PRESETS[preset])
    args = [sys.executable, "-m", "lora_train", "train", "--events", "jsonl"]
    for key, value in settings.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                               env={**os.environ, "LORA_TRAIN_LOCK_DIR": str(out.parent)})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (kB on Linux)
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    done = [e for e in events if e["type"] == "done"]
    if status or not done:
        return {"error": events[-1].get("message") if events else f"exit status {status}"}
    times = [e["time"] for e in events if e["type"] == "step"]
    warm = max(1, len(times) // 4)  # the first steps include compilation and allocator warm-up
    intervals = [b - a for a, b in zip(times[warm:], times[warm + 1:])]
    return {"its": 1 / statistics.median(intervals) if intervals else float("nan"),
            "rss_mb": usage.ru_maxrss / 1024, "vram_mb": done[0].get("peak_vram_mb")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path, help="a checkpoint to use (default: the tiny SD1 and SDXL)")
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "tiny_dataset")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--presets", default="none," + ",".join(SD_PRESETS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    if args.base_model:
        models = {args.base_model.name: args.base_model}
    else:
        # Built in a child process: this one stays free of torch, so each child's peak RSS is its own.
        subprocess.run([sys.executable, "-m", "lora_train.fixtures", "--out", str(work), "--arch", "sd1", "sdxl"],
                       check=True, capture_output=True, cwd=ROOT)
        models = {f"tiny-{arch}": work / f"tiny-{arch}.safetensors" for arch in ("sd1", "sdxl")}
    print(f"{'model':<16} {'preset':<10} {'steps/s':>8} {'peak RSS MB':>12} {'peak VRAM MB':>13}")
    for name, path in models.items():
        for preset in args.presets.split(","):
            row = run(path, args.data, work / f"{name}-{preset}", args.resolution, args.steps,
                      None if preset == "none" else preset)
            label = preset if preset != "none" else "defaults"
            if "error" in row:
                print(f"{name:<16} {label:<10} error: {row['error']}")
                continue
            vram = f"{row['vram_mb']:.0f}" if row["vram_mb"] else "-"
            print(f"{name:<16} {label:<10} {row['its']:>8.2f} {row['rss_mb']:>12.0f} {vram:>13}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
