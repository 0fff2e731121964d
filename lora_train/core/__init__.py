"""What every engine and the WebUI side share, with no torch import: errors, progress events,
atomic file writing, output names and the one-job lock."""
