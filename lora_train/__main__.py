"""`python -m lora_train ...`: see lora_train/cli.py."""

from .cli import main

raise SystemExit(main())
