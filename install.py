"""Run by the WebUI (A1111 / Forge) with its own Python at every launch: set up the trainer's worker.

Starts, once, the set-up of the worker venv in this folder in a background process and returns at
once, so the WebUI starts meanwhile; the Train LoRA tab shows the progress and enables Start when
the venv is ready (see lora_train/webui/worker/environment.py). Later launches are a fast no-op. Nothing is
ever installed into the WebUI's own environment. `python install.py --wait` sets it up in the
foreground instead, printing pip's output as it goes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lora_train.webui.worker.background_setup import start_setup  # noqa: E402
from lora_train.webui.worker.environment import WorkerEnvError, ensure_worker_env  # noqa: E402

if __name__ == "__main__":
    try:
        if "--wait" in sys.argv[1:]:
            ensure_worker_env(log=lambda line: print(line, flush=True))
        else:
            message = start_setup()
            if message:
                print(message)
    except WorkerEnvError as exc:
        print(exc)
        sys.exit(1)
