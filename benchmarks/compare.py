"""Side by side: our trainer against diffusers' LoRA example and kohya's sd-scripts, same work, one run.

    make bench                                   # = python benchmarks/compare.py
    LORA_BENCH_DIFFUSERS=~/diffusers LORA_BENCH_KOHYA=~/sd-scripts python benchmarks/compare.py
    LORA_BENCH_BASELINE=~/lora_train-main python benchmarks/compare.py   # also this project's older checkout
    python benchmarks/compare.py --gpu           # SD1.5 (512 px) and SDXL (1024 px), real shapes, random weights
    python benchmarks/compare.py --real-size-only --real-size-variants plain checkpointing   # the memory rows only

Every tool trains the same model on the same images with the same settings; the runs are
interleaved (A, B, A, B, ...) and each figure is the median over the repeats. Both modes end with
the real-size memory row: an SD1.5-sized model at 512 px beside diffusers' example, with peak RSS
split into anonymous and file-backed pages (and peak VRAM on a GPU). A reference
whose checkout is not given (see tools.py) is left out, and the page says so. The results go
to the terminal and to benchmarks/RESULTS.md (--out).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import Measurement, measure, median  # noqa: E402
from report import Row, Section, gpu_name, gpu_names, page  # noqa: E402
from tools import Run, Settings, diffusers_example, kohya, ours  # noqa: E402
from workload import ROOT, build_workload  # noqa: E402

# Dense bf16/fp16 tensor-core peak (FLOP/s) by GPU name, for MFU; --peak-tflops for others.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12, "A10": 125e12}


def run_interleaved(runs: list[Run], work: Path, repeats: int) -> dict[str, Measurement]:
    """Each run `repeats` times, in turn; the median of each."""
    results: dict[str, list[Measurement]] = {run.label: [] for run in runs}
    for repeat in range(repeats):
        for run in runs:
            folder = work / "runs" / f"{run.label.replace(' ', '_').replace(',', '')}-{repeat}"
            result = measure(run, folder)
            results[run.label].append(result)
            print(f"  [{repeat + 1}/{repeats}] {run.label:<42} " + (
                f"error: {result.error}" if result.error else
                f"step {result.step_s * 1000:7.1f} ms  wall {result.wall_s:6.1f} s  "
                f"1st step {result.first_step_s:5.1f} s  RSS {result.rss_mb:5.0f} MB (anon {result.anon_mb:5.0f}, "
                f"file {result.file_mb:5.0f})" + (f"  VRAM {result.vram_mb:5.0f} MB" if result.vram_mb else "")),
                flush=True)
    return {label: median(values) for label, values in results.items()}


def cpu_sections(work: Path, steps: int, repeats: int, missing: list[str]) -> list[Section]:
    """The CPU comparison on the tiny SD1 model (issue 16's set-up)."""
    load = build_workload(work, "sd1", 64)
    s = Settings(steps=steps)
    runs = [ours("ours, defaults", load, s, work / "out"),
            ours("ours, caches off", load, s, work / "out", cache_latents=False, cache_text_encoder_outputs=False)]
    baseline = os.environ.get("LORA_BENCH_BASELINE")
    if baseline:  # its config may not know sample_steps: 0; a 1-step preview comes after the first step
        runs.append(ours("baseline, defaults", load, s, work / "out", Path(baseline), sample_steps=1))
    reference = diffusers_example("diffusers example", load, s, work / "out")
    runs += [reference] if reference else []
    print(f"CPU, tiny SD1, 64 px, batch {s.batch_size}, rank {s.rank}, fp32, {s.optimizer}, {steps} steps, "
          f"{repeats} interleaved repeats")
    result = run_interleaved(runs, work, repeats)
    ref = "diffusers example" if reference else None
    rows = [Row("ours, defaults", result["ours, defaults"], s.batch_size, ratio_to=ref,
                note="latent + text-encoder caches (defaults), no preview (sample_steps: 0)"),
            Row("ours, caches off", result["ours, caches off"], s.batch_size, ratio_to=ref,
                note="VAE and text encoder run every step, as in the reference")]
    if baseline:
        rows.append(Row("baseline, defaults", result["baseline, defaults"], s.batch_size, ratio_to=ref,
                        note=f"LORA_BENCH_BASELINE={baseline}, its defaults, a 1-step preview"))
        rows[0].note += "; start to 1st step / baseline: " + _ratio(result["ours, defaults"].first_step_s,
                                                                     result["baseline, defaults"].first_step_s)
    if reference:
        rows.append(Row("diffusers example", result["diffusers example"], s.batch_size,
                        note="train_text_to_image_lora.py"))
    notes = [f"Same work: UNet {'attention (to_q/k/v/out.0)' if s.attention_only else 'layers'} LoRA rank "
             f"{s.rank}, alpha {s.rank}, {s.optimizer}, lr {s.learning_rate} constant, weight decay 0.01, grad-norm "
             "clip 1.0, fp32, center crop, no text-encoder training, tensorboard logging, no samples.",
             "Differences that remain: the reference samples the VAE latent distribution (ours takes its mean), "
             "initialises LoRA A gaussian (ours: kaiming), loads images through `datasets`, and saves a "
             "diffusers-format LoRA (ours: kohya format + sidecar). Step time is the median interval between "
             "optimizer steps after the first quarter; wall time is the whole process; start to first step "
             "includes imports, model loading and (ours, defaults) the cache fill."] + [
            f"{name} not run: {why}" for name, why in missing] + [
            "kohya is compared in --gpu mode only: it loads the UNet into its own fixed SD1.5/SDXL shapes, so it "
            "cannot train the tiny model."]
    return [Section("CPU: tiny SD1, 64 px, batch 2", rows, notes)]


def real_size_section(work: Path, steps: int, repeats: int, missing: list[str], variants: list[str]) -> Section:
    """Peak memory at real size: an SD1.5-shaped fp32 model with random weights at 512 px, batch 1, ours (from
    the single file) next to diffusers' example (from a diffusers folder of the same weights)."""
    load = build_workload(work, "sd1", 512, real_size=True, dtype="float32")
    rows: list[Row] = []
    for variant in variants:
        s = Settings(steps=steps, batch_size=1, gradient_checkpointing=variant == "checkpointing")
        tag = " + gradient checkpointing" if s.gradient_checkpointing else ""
        runs = [ours(f"ours{tag}", load, s, work / "out")]
        reference = diffusers_example(f"diffusers example{tag}", load, s, work / "out")
        runs += [reference] if reference else []
        print(f"Real size: SD1.5-shaped, fp32, 512 px, batch 1{tag}, {steps} steps, {repeats} repeat(s)")
        result = run_interleaved(runs, work, repeats)
        rows.append(Row(f"ours{tag}", result[f"ours{tag}"], 1, ratio_to=reference.label if reference else None,
                        note="latent + text-encoder caches (defaults), no samples"))
        if reference:
            rows.append(Row(reference.label, result[reference.label], 1, note="train_text_to_image_lora.py"))
    notes = ["SD1.5's shapes (UNet 860M, VAE 84M, CLIP-L text encoder 123M parameters), random weights stored in "
             "fp32 and trained in fp32; ours reads the single .safetensors file (what the WebUI has), the reference "
             "a diffusers folder of the same weights. UNet attention LoRA rank 4, adamw8bit, no samples; the "
             "rest as in the tiny rows.",
             "Peak RSS is the kernel's (ru_maxrss). Anon / file: the process tree's RssAnon and RssFile "
             "(/proc/PID/status, sampled every 0.2 s) when their sum was largest. File-backed pages are the "
             "memory-mapped weights: the kernel can drop them under pressure and read them again, anonymous "
             "ones (copies, activations, optimizer state) it cannot. On a GPU, peak VRAM is torch's "
             "max_memory_allocated in each process."] + [f"{n} not run: {w}" for n, w in missing
                                                         if n.startswith("diffusers")]
    return Section("Real size: SD1.5-shaped, 512 px, batch 1, fp32", rows, notes)


def scaling_section(work: Path, steps: int, repeats: int) -> Section:
    """Throughput of one process against two (gloo on CPU, NCCL on GPUs) on the same machine."""
    load = build_workload(work, "sd1", 64)
    s = Settings(steps=steps)
    threads = max(1, (os.cpu_count() or 2) // 2)
    one = ours("1 process", load, s, work / "out-1")
    two = ours("2 processes", load, s, work / "out-2")
    for run in (one, two):
        run.env["OMP_NUM_THREADS"] = str(threads)
    results: dict[str, list[Measurement]] = {"1 process": [], "2 processes": []}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    print(f"2-process scaling, {threads} thread(s) per process")
    for repeat in range(repeats):
        results["1 process"].append(measure(one, work / "runs" / f"scale1-{repeat}"))
        results["2 processes"].append(measure(two, work / "runs" / f"scale2-{repeat}", launcher))
    one_m, two_m = median(results["1 process"]), median(results["2 processes"])
    rows = [Row("1 process", one_m, s.batch_size), Row("2 processes", two_m, 2 * s.batch_size)]
    speedup = (2 * s.batch_size / two_m.step_s) / (s.batch_size / one_m.step_s) if not (one_m.error or two_m.error) \
        else float("nan")
    return Section("Two processes (data parallel)", rows,
                   [f"Throughput 2 processes / 1 process: {speedup:.2f}x (batch {s.batch_size} per process, "
                    f"{threads} thread(s) each, `torchrun --standalone --nproc_per_node 2`; gloo on CPU). "
                    f"This machine has {os.cpu_count()} cores: two processes can only be faster where each gets "
                    "its own cores (or GPU)."])


def gpu_sections(work: Path, steps: int, repeats: int, missing: list[str], archs: list[str],
                 precisions: list[str]) -> list[Section]:
    """SD1.5 at 512 px and SDXL at 1024 px, real shapes with random weights: ours next to kohya."""
    sections = []
    for arch in archs:
        resolution = {"sd1": 512, "sdxl": 1024}[arch]
        load = build_workload(work, arch, resolution, images=8, real_size=True)
        rows: list[Row] = []
        for precision in precisions:
            for low_vram in (False, True):
                for batch in ((1,) if low_vram else (1, 4)):
                    # low_vram as in the SDXL target: text encoders trained too
                    s = Settings(steps=steps, batch_size=batch, precision=precision, attention_only=False,
                                 low_vram=low_vram, train_text_encoder=low_vram)
                    tag = f"{precision} batch {batch}{' low_vram + text encoders' if low_vram else ''}"
                    runs = [ours(f"ours {tag}", load, s, work / "out")]
                    kohya_run = kohya(f"kohya {tag}", load, s, work / "out")
                    runs += [kohya_run] if kohya_run else []
                    print(f"GPU {arch} {resolution} px, {tag}")
                    result = run_interleaved(runs, work, repeats)
                    accumulation = 2 if low_vram else 1
                    flops = 3 * accumulation * _forward_flops(arch, resolution, batch)
                    rows.append(Row(f"ours {tag}", result[f"ours {tag}"], batch * accumulation, flops,
                                    f"kohya {tag}" if kohya_run else None))
                    if kohya_run:
                        rows.append(Row(f"kohya {tag}", result[f"kohya {tag}"], batch * accumulation, flops))
        notes = ["Every transformer Linear of the UNet (kohya's networks.lora targets), rank 4 (low_vram: the "
                 "preset's rank 16, batch 1 x 2 accumulated, gradient checkpointing), latent cache, SDPA, "
                 "random weights of the public model's shapes. MFU = 3 x UNet forward FLOPs / step time / peak."]
        sections.append(Section(f"GPU: {arch} at {resolution} px", rows, notes + [f"{n} not run: {w}"
                                                                                   for n, w in missing]))
    return sections


def _ratio(ours_value: float, other: float) -> str:
    return f"{ours_value / other:.2f}" if other == other and other else "-"


def _forward_flops(arch: str, resolution: int, batch: int) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "flops.py"), arch, str(resolution), str(batch)],
                         capture_output=True, text=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="the GPU matrix (SD1.5 512 px, SDXL 1024 px) instead")
    parser.add_argument("--archs", nargs="+", choices=("sd1", "sdxl"), default=["sd1", "sdxl"], help="--gpu models")
    parser.add_argument("--precisions", nargs="+", choices=("bf16", "fp16"), default=["bf16", "fp16"],
                        help="--gpu precisions")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 2-process measurement")
    parser.add_argument("--no-real-size", action="store_true", help="skip the real-size memory row")
    parser.add_argument("--real-size-only", action="store_true", help="only the real-size memory row")
    parser.add_argument("--real-size-steps", type=int, default=6)
    parser.add_argument("--real-size-repeats", type=int, default=1, help="each real-size run takes minutes, ~10 GB")
    parser.add_argument("--real-size-variants", nargs="+", choices=("plain", "checkpointing"), default=["plain"],
                        help="checkpointing: with gradient checkpointing on both sides")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU (known GPUs: built in)")
    parser.add_argument("--threads", type=int, help="torch threads for every run (OMP_NUM_THREADS; default: all "
                        "cores); 1 keeps figures steadier on a machine shared with other work")
    parser.add_argument("--work", type=Path, help="folder for models, data and outputs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lora-bench-"))
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every child inherits it
    references = {name: os.environ[var] for name, var in (("diffusers", "LORA_BENCH_DIFFUSERS"),
                                                           ("sd-scripts", "LORA_BENCH_KOHYA"),
                                                           ("the baseline", "LORA_BENCH_BASELINE")) if os.environ.get(var)}
    references = {"lora_train": str(ROOT), **references}
    missing = [(name, f"set {var} to a checkout of {repo}") for name, var, repo in (
        ("diffusers' example", "LORA_BENCH_DIFFUSERS", "huggingface/diffusers"),
        ("kohya", "LORA_BENCH_KOHYA", "kohya-ss/sd-scripts")) if not os.environ.get(var)]
    for name, why in missing:
        print(f"{name} not run: {why}")
    name = gpu_name() or ""
    peak = (args.peak_tflops * 1e12 if args.peak_tflops else next(
        (flops for key, flops in PEAK_FLOPS.items() if key in name), None)) if args.gpu else None
    sections = []
    if not args.real_size_only:
        sections = (gpu_sections(work, args.steps, args.repeats, missing, args.archs, args.precisions) if args.gpu
                    else cpu_sections(work, args.steps, args.repeats, missing))
        if args.gpu and len(gpu_names()) < 2:
            print("2-process scaling skipped: it needs 2 GPUs in --gpu mode (on CPU it uses gloo)")
        elif not args.no_scaling:
            sections.append(scaling_section(work, args.steps, args.repeats))
    if args.real_size_only or not args.no_real_size:
        sections.append(real_size_section(work, args.real_size_steps, args.real_size_repeats, missing,
                                          args.real_size_variants))
    how = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    text = page("Benchmark: ours next to the reference trainers", how.strip(), sections, references, peak)
    args.out.write_text(text + "\n")
    print("\n" + text + f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
