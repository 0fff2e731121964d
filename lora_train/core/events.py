"""Progress events: one way out of the training loop to whichever front end listens.

An event is a flat dict with a `type` and a few of these fields:

    type     start | step | epoch | eval | sample | save | log | done | error
    step     optimizer steps done so far          total    optimizer steps planned
    epoch    current epoch (1-based)              epochs   epochs planned
    loss     smoothed training loss               lr       current learning rate
    its      optimizer steps per second           eta_s    seconds left (estimate)
    path     file written (sample, save, done)    message  text for the user (log, error, done)
    level    info | warning (log events)          interrupted  true on a `done` after a stop request
    detail   a traceback, on an `error` that is a bug (shown folded; the message says what to do)
    eval_loss, perplexity   on an `eval`: the validation loss (image runs with val_split / val_data_dir, after
             an epoch or every val_every_n_steps; text runs with val_size, with its perplexity, after an epoch)
    best_epoch, best_step, best_eval_loss, best_file, kept_best, early_stopped   on a `done` of a run with
             validation: its lowest validation loss, the epoch save made there, whether keep_best made it the
             final LoRA, whether early_stop_patience ended the run
    unit     what a step counts when it is not an optimizer step ("image" when captioning)
    losses, eval_losses   on a resumed run's `start`: the curve so far, [[step, loss], ...] (core/loss_history.py)

The CLI writes them as JSON lines (`--events jsonl`), which is what the WebUI tab reads; on a
terminal it draws a progress bar instead. `train.log` gets a plain-text line per event.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable

from .atomic import disk_error

Event = dict[str, Any]
EventSink = Callable[[Event], None]  # whatever takes events: a sink, a Fanout, a front end's callback


def make_event(type_: str, **fields: Any) -> Event:
    """An event with its type, a wall-clock time, and the non-None fields given."""
    event: Event = {"type": type_, "time": round(time.time(), 3)}
    event.update({k: v for k, v in fields.items() if v is not None})
    return event


class JsonlSink:
    """One JSON object per line, flushed at once so a reading process sees it live."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.stream.flush()


def describe(event: Event) -> str:
    """A one-line human reading of an event, for train.log and the terminal."""
    kind = event["type"]
    if kind == "step":
        parts = [f"{event.get('unit', 'step')} {event.get('step')}/{event.get('total')}"]
        if "epoch" in event:
            parts.append(f"epoch {event['epoch']}/{event.get('epochs')}")
        if "loss" in event:
            parts.append(f"loss {event['loss']:.4f}")
        if "lr" in event:
            parts.append(f"lr {event['lr']:.2e}")
        if "its" in event:
            parts.append(f"{event['its']:.2f} it/s")
        return ", ".join(parts)
    if kind == "epoch":
        return f"epoch {event.get('epoch')}/{event.get('epochs')} done, average loss {event.get('loss_avg', 0):.4f}"
    text = event.get("message") or ""
    if event.get("path") and event["path"] not in text:
        text = f"{text} {event['path']}".strip()
    return f"{kind}: {text}" if text else kind


class LogFileSink:
    """Appends `describe(event)` lines with a timestamp to a text file (train.log).

    A failed write (a full disk) is a UserError naming the folder, raised once: the sink then
    stays silent, so the `error` event that reports it still reaches the other sinks.
    """

    def __init__(self, path: str):
        self.path = path
        self.failed = False

    def __call__(self, event: Event) -> None:
        if self.failed:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("time", time.time())))
        try:
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(f"{stamp} {describe(event)}\n")
                if event.get("detail"):
                    log.write(event["detail"].rstrip() + "\n")
        except OSError as exc:
            self.failed = True
            raise disk_error(exc, Path(self.path)) from None


class ConsoleSink:
    """A progress bar on a terminal (tqdm) for step events; other events as plain lines."""

    def __init__(self, stream: IO[str] = sys.stderr):
        self.stream = stream
        self.bar = None

    def __call__(self, event: Event) -> None:
        if event["type"] == "step":
            self._advance(event)
            return
        if event["type"] in ("done", "error") and self.bar is not None:
            self.bar.close()
            self.bar = None
        line = describe(event)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _advance(self, event: Event) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.get("total"), initial=event["step"] - 1, file=self.stream,
                            unit=event.get("unit", "step"), dynamic_ncols=True)
        self.bar.update(event["step"] - self.bar.n)
        postfix = {k: f"{event[k]:.4g}" for k in ("loss", "lr") if k in event}
        if "epoch" in event:
            postfix["epoch"] = event["epoch"]
        self.bar.set_postfix(postfix, refresh=False)


class Fanout:
    """Sends each event to several sinks; used by the CLI to feed a front end and train.log."""

    def __init__(self, *sinks: Callable[[Event], None]):
        self.sinks = list(sinks)

    def add(self, sink: Callable[[Event], None]) -> None:
        self.sinks.append(sink)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)
