"""Run by the WebUI (A1111 / Forge) with its own Python at every launch: set up the trainer's worker.

Creates, once, the worker venv in this folder (see lora_train/webui/worker_env.py); later
launches are a fast no-op. Nothing is ever installed into the WebUI's own environment.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lora_train.webui.worker_env import WorkerEnvError, ensure_worker_env  # noqa: E402

if __name__ == "__main__":
    try:
        ensure_worker_env()
    except WorkerEnvError as exc:
        print(exc)
        sys.exit(1)
