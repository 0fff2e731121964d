"""Pieces every tab builds with: handlers that show errors as messages, and a form field's widget."""

from __future__ import annotations

import functools
from typing import Any, Callable

import gradio as gr

from . import form, markup


def guarded(fn: Callable, outputs: int, message_at: int) -> Callable:
    """Wrap a handler so that errors become a message in output `message_at`, other outputs unchanged."""

    @functools.wraps(fn)
    def handler(*args):
        try:
            return fn(*args)
        except Exception as exc:
            text = markup.problem(exc)
        if outputs == 1:
            return markup.message(text, "error")
        result: list[Any] = [gr.update() for _ in range(outputs)]
        result[message_at] = markup.message(text, "error")
        return result

    return handler


def field_widget(spec: form.FieldSpec, value: Any, id_prefix: str = "lora_train_"):
    """The widget for one config key (its element id: `id_prefix` + the key)."""
    common = dict(label=spec.label, info=spec.help, elem_id=f"{id_prefix}{spec.name}")
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=value, **common)
    if spec.kind == "multi":
        return gr.CheckboxGroup(choices=list(spec.choices), value=list(value or []), **common)
    if spec.kind in ("int", "float") and not spec.optional:
        return gr.Number(value=value, precision=0 if spec.kind == "int" else None, **common)
    return gr.Textbox(value=form.to_widget(spec, value), lines=3 if spec.kind == "lines" else 1, **common)
