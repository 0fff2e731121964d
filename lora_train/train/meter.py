"""Speed, time left and a smoothed loss for the progress display."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Rates:
    its: float  # optimizer steps per second, over the recent window
    eta_s: float  # seconds left at that speed
    loss_avg: float  # moving average of the loss


class StepMeter:
    def __init__(self, total_steps: int, start_step: int = 0, window: int = 20, clock=time.monotonic):
        self.total, self.window, self.clock = total_steps, window, clock
        self.times = [(start_step, clock())]
        self.losses: list[float] = []

    @property
    def loss_avg(self) -> float:
        return sum(self.losses) / len(self.losses) if self.losses else float("nan")

    def update(self, step: int, loss: float) -> Rates:
        self.times = (self.times + [(step, self.clock())])[-(self.window + 1):]
        self.losses = (self.losses + [loss])[-self.window:]
        (first_step, first_time), (last_step, last_time) = self.times[0], self.times[-1]
        its = (last_step - first_step) / max(last_time - first_time, 1e-9)
        eta = (self.total - step) / its if its > 0 else float("inf")
        return Rates(round(its, 4), round(eta, 1), self.loss_avg)
