"""YAML read strictly: a key written twice in one mapping is an error, not the last one silently winning.

PyYAML keeps the last of repeated keys, so `learning_rate: 1e-4` ... `learning_rate: 1e-2` further
down trains at 1e-2 without a word. `load_strict` raises `RepeatedKey` (a `yaml.YAMLError`) naming
the key and both lines instead.
"""

from __future__ import annotations

from typing import Any

import yaml


class RepeatedKey(yaml.YAMLError):
    """A mapping key given twice; lines are 1-based."""

    def __init__(self, key: Any, first_line: int, line: int):
        super().__init__(f"{key!r} is set twice (lines {first_line} and {line})")
        self.key, self.first_line, self.line = key, first_line, line


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise RepeatedKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
        return super().construct_mapping(node, deep)


def load_strict(text: str) -> Any:
    """`yaml.safe_load(text)`, refusing a key repeated in a mapping."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
