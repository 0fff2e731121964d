"""Run a training script with a stopwatch on every optimizer step, the same way for every tool.

    python benchmarks/probe.py OUT.json script.py ARGS...     # a script (diffusers' example, kohya's)
    python benchmarks/probe.py OUT.json -m lora_train ARGS...  # a module (ours)

A global optimizer step hook (it fires for torch, bitsandbytes and every other torch optimizer)
records the wall-clock time after each step; on exit OUT.json gets those times
and the peak GPU memory if a GPU was used. Nothing in the tool itself is changed.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import time


def main() -> None:
    out, target, *rest = sys.argv[1:]
    if os.environ.get("RANK", "0") != "0":  # under torchrun every process keeps its own record
        out = f"{out}.rank{os.environ['RANK']}"
    steps: list[float] = []

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda *_: steps.append(time.time()))

    def write() -> None:
        vram = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None
        with open(out, "w") as file:
            json.dump({"steps": steps, "peak_vram_mb": vram}, file)

    atexit.register(write)
    if target == "-m":
        module, *rest = rest
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *rest]
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
