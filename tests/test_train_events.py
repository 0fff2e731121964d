"""Progress events: the terminal bar, train.log lines, JSON lines, the meter's rates."""

import io
import json

from lora_train.core.events import ConsoleSink, JsonlSink, LogFileSink, describe, make_event
from lora_train.train.meter import StepMeter


def test_console_shows_a_progress_bar_and_plain_lines():
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    sink(make_event("log", message="Loading base model x"))
    for step in (1, 2, 3):
        sink(make_event("step", step=step, total=4, epoch=1, epochs=2, loss=0.5, lr=1e-4))
    sink(make_event("done", path="/out/a.safetensors", message="Saved /out/a.safetensors."))
    text = stream.getvalue()
    assert "log: Loading base model x" in text and "3/4" in text and "loss=0.5" in text
    assert text.rstrip().endswith("done: Saved /out/a.safetensors.")


def test_jsonl_and_log_file(tmp_path):
    stream = io.StringIO()
    JsonlSink(stream)(make_event("step", step=1, total=2, loss=0.25, path=None))
    event = json.loads(stream.getvalue())
    assert event["type"] == "step" and event["loss"] == 0.25 and "path" not in event
    log = tmp_path / "train.log"
    LogFileSink(str(log))(make_event("error", message="boom", detail="Traceback: x"))
    assert "error: boom" in log.read_text() and "Traceback: x" in log.read_text()
    assert describe(make_event("epoch", epoch=2, epochs=5, loss_avg=0.125)) == \
        "epoch 2/5 done, average loss 0.1250"


def test_meter_rates_and_eta():
    now = iter([0.0, 1.0, 2.0, 3.0])
    meter = StepMeter(total_steps=10, clock=lambda: next(now))
    meter.update(1, 1.0)
    meter.update(2, 0.5)
    rates = meter.update(3, 0.0)
    assert rates.its == 1.0 and rates.eta_s == 7.0 and rates.loss_avg == 0.5
