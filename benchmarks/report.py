"""The benchmark's results as a Markdown page: machine, versions, figures, ratios, differences."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass, field

from measure import Measurement

PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "bitsandbytes")


@dataclass
class Row:
    label: str
    result: Measurement
    images_per_step: int = 2
    flops_per_step: float | None = None  # 3 x the UNet's forward FLOPs, for MFU
    ratio_to: str | None = None  # the label of the row this one is compared with
    note: str = ""


@dataclass
class Section:
    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    text = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    load = f"; load average at the end {os.getloadavg()[0]:.1f} (other work on the machine makes figures noisy)" \
        if hasattr(os, "getloadavg") else ""
    return f"{text}; GPU: {gpu_name() or 'none'}{load}"


def gpu_names() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.strip().splitlines() if out.returncode == 0 else []


def gpu_name() -> str | None:
    names = gpu_names()
    return f"{len(names)} x {names[0]}" if len(names) > 1 else (names[0] if names else None)


def versions(references: dict[str, str]) -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    for name, path in references.items():
        commit = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        found.append(f"{name} at {commit.stdout.strip() or path}")
    return ", ".join(found)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def table(section: Section, peak_flops: float | None) -> list[str]:
    by_label = {row.label: row.result for row in section.rows}
    lines = [f"### {section.title}", "",
             "| run | step s | images/s | wall s | start to 1st step s | peak RSS MB | anon / file MB at peak "
             "| peak VRAM MB | MFU | step / ref | wall / ref | 1st step / ref | RSS / ref | VRAM / ref | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in section.rows:
        m = row.result
        if m.error:
            lines.append(f"| {row.label} | error: {m.error[:160]} ||||||||||||||")
            continue
        ips = row.images_per_step / m.step_s if m.step_s == m.step_s else None
        ips_digits = 2 if not ips or ips >= 1 else 4  # a real-size CPU step takes minutes
        mfu = (row.flops_per_step / m.step_s / peak_flops * 100 if row.flops_per_step and peak_flops and ips
               else None)
        ref = by_label.get(row.ratio_to) if row.ratio_to else None
        ratios = ["-"] * 5
        if ref is not None and not ref.error:
            ratios = [_fmt(m.step_s / ref.step_s), _fmt(m.wall_s / ref.wall_s), _fmt(m.first_step_s / ref.first_step_s),
                      _fmt(m.rss_mb / ref.rss_mb), _fmt(m.vram_mb / ref.vram_mb) if m.vram_mb and ref.vram_mb else "-"]
        lines.append(f"| {row.label} | {_fmt(m.step_s, 3)} | {_fmt(ips, ips_digits)} | {_fmt(m.wall_s, 1)} | "
                     f"{_fmt(m.first_step_s, 1)} | {m.rss_mb:.0f} | {_fmt(m.anon_mb, 0)} / {_fmt(m.file_mb, 0)} | "
                     f"{_fmt(m.vram_mb, 0)} | {_fmt(mfu, 1) + ' %' if mfu is not None else '-'} | "
                     f"{' | '.join(ratios)} | {row.note} |")
    return lines + [""] + [f"- {note}" for note in section.notes] + [""]


def page(title: str, how: str, sections: list[Section], references: dict[str, str], peak_flops: float | None,
         ) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", f"Measured {now} with `{how}`.", "", f"- Machine: {machine()}",
             f"- Versions: {versions(references)}", ""]
    for section in sections:
        lines += table(section, peak_flops)
    return "\n".join(lines)
