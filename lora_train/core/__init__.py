"""What every engine and the WebUI side share, with no torch import: errors, progress events,
atomic file writing, output names, the WebUI card files, the SD architecture names, the
one-job lock and the garbage collector's settings around a job."""
