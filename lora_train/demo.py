"""`make demo` / `python -m lora_train demo`: build the tiny demo model, train on the bundled dataset.

Everything runs offline on a CPU in about a minute, with the same CLI path a real run takes
(configs/demo.yaml, the single-file loader, the kohya-format export).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import load_config
from .core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def run_demo(out: Path) -> int:
    from .fixtures.checkpoints import build_tiny_checkpoint
    from .core.events import ConsoleSink, Fanout, describe
    from .train.job import run_job
    from .train.stop import StopRequest

    config_path = ROOT / "configs" / "demo.yaml"
    if not config_path.is_file():
        raise UserError(f"{config_path} is missing: run the demo from a checkout of the repository.")
    print(f"Building the tiny demo model in {out}/ ...", file=sys.stderr)
    model = build_tiny_checkpoint(out, "sd1")
    config = load_config(config_path, {"base_model": str(model.single_file), "output_dir": str(out),
                                       "train_data_dir": str(ROOT / "examples" / "tiny_dataset")})
    sink = ConsoleSink() if sys.stderr.isatty() else (lambda e: print(describe(e), file=sys.stderr, flush=True))
    stop = StopRequest()
    stop.install_signal_handlers()
    path = run_job(config, Fanout(sink), stop)
    print(f"\nYour LoRA: {path}\n"
          f"  sidecar and preview beside it: {path.with_suffix('.json').name}, {path.stem}.preview.png\n"
          f"  samples and logs: {out}/samples, {out}/logs (TensorBoard), {out}/train.log\n"
          f"Use it in a WebUI prompt with <lora:{path.stem}:{config.preferred_weight:g}> after copying it into "
          f"models/Lora.\n(This demo LoRA belongs to the tiny demo model {model.single_file.name}; point base_model "
          f"in a copy of configs/demo.yaml at your own checkpoint to train a real one.)")
    return 0
