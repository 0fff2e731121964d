"""The YAML config: schema (typed dataclass), loading with overrides, validation, reference."""

from .load import load_config, parse_overrides
from .schema import TrainConfig

__all__ = ["TrainConfig", "load_config", "parse_overrides"]
