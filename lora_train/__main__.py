"""`python -m lora_train ...`: see lora_train/cli.py."""

from .cli import main
from .core.collector import exit_without_scanning

status = main()
exit_without_scanning()  # the process ends here
raise SystemExit(status)
