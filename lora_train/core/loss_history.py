"""A run's loss curve as the tab's chart draws it: (step, loss) points, halved when there are too many.

The engines keep it in each checkpoint and send it in a resumed run's `start` event (fields `losses`
and `eval_losses`), so the chart of a resumed run shows the whole curve, from step 1; the tab's runner
thins its own points the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POINTS_KEPT = 2000

Points = list[tuple[int, float]]


def thinned(points: Points) -> Points:
    """The points, every second one dropped when there are more than POINTS_KEPT."""
    return points[::2] if len(points) > POINTS_KEPT else points


def read_points(value: Any) -> Points:
    """[[step, loss], ...] from a checkpoint or an event; anything else is no points."""
    if not isinstance(value, (list, tuple)):
        return []
    return [(int(item[0]), float(item[1])) for item in value
            if isinstance(item, (list, tuple)) and len(item) == 2
            and all(isinstance(part, (int, float)) for part in item)]


@dataclass
class LossHistory:
    """The training losses per step and the eval losses (text runs) so far."""

    losses: Points = field(default_factory=list)
    eval_losses: Points = field(default_factory=list)

    def add(self, step: int, loss: float) -> None:
        self.losses.append((step, loss))
        self.losses = thinned(self.losses)

    def add_eval(self, step: int, loss: float) -> None:
        self.eval_losses.append((step, loss))
        self.eval_losses = thinned(self.eval_losses)

    def fields(self) -> dict[str, list[list[float]]]:
        """As JSON- and checkpoint-friendly lists, for a `start` event and a checkpoint."""
        return {"losses": [[step, loss] for step, loss in self.losses],
                "eval_losses": [[step, loss] for step, loss in self.eval_losses]}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any] | None) -> LossHistory:
        fields = fields or {}
        return cls(read_points(fields.get("losses")), read_points(fields.get("eval_losses")))
