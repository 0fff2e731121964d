"""The command line: `python -m lora_train {train,plan,config,inspect,ui,demo,caption,llm,merge,resize,bake,grid}`.

Each subcommand parses its arguments and calls the engine; a `UserError` is printed as one
clear line (and sent as an `error` event), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from .caption.cli import add_caption_parser, run_caption_command
from .config.load import add_override_option
from .config.plan_cli import add_plan_parser, run_plan
from .core.errors import UserError
from .text.cli import add_llm_parser, run_llm
from .tools.commands import COMMANDS as TOOL_COMMANDS, add_parsers as tool_parsers

def _add_train(sub) -> None:
    parser = sub.add_parser("train", help="train a LoRA from a YAML config",
                            description="Train a LoRA (task_type image or text-generation). Every config key is "
                                        "described in docs/config.md (or `python -m lora_train config`).")
    _add_job_arguments(parser)


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="the YAML config file (keys: see docs/config.md)")
    add_override_option(parser)
    add_event_options(parser)


def add_event_options(parser) -> None:
    """--events, --events-file and --stop-file, shared by the long-running subcommands."""
    parser.add_argument("--events", choices=("auto", "jsonl", "plain", "none"), default="auto",
                        help="progress output: jsonl = one JSON event per line on stdout (for front ends), "
                             "plain = text lines, auto = a progress bar on a terminal, else plain")
    parser.add_argument("--events-file", help="write the JSON-line events to this file instead of stdout")
    parser.add_argument("--stop-file", help="stop (keeping what was done) when this file appears")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-train", description="Train Stable Diffusion LoRAs that load in "
                                     "the WebUI (A1111 / Forge), ComfyUI and diffusers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    add_plan_parser(sub)
    add_llm_parser(sub, _add_job_arguments)
    config = sub.add_parser("config", help="print the reference of every config key")
    config.add_argument("--markdown", action="store_true", help="print docs/config.md exactly")
    inspect = sub.add_parser("inspect", help="show what is inside a LoRA file (architecture, rank, metadata)")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser("ui", help="serve the Train LoRA and LLM LoRA tabs in a browser without a WebUI", add_help=False)
    demo = sub.add_parser("demo", help="build the tiny demo model and train a LoRA on the bundled dataset")
    demo.add_argument("--out", default="demo_output", help="folder for the tiny model and the LoRA")
    add_caption_parser(sub)
    tool_parsers(sub)
    return parser


def quiet_libraries() -> None:
    """Keep the libraries' notices (torchvision fallbacks, dtype casts, save progress bars) off the console:
    the trainer reports what matters through its own events. Environment settings, read when each library
    is first imported, so nothing heavy is imported here."""
    import os

    for variable, value in (("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                            ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(variable, value)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] == "ui":
        from .webui.hosts.standalone_server import main as serve_ui

        return serve_ui(argv[1:])
    args, rest = parser.parse_known_args(argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in ("train", "demo", "llm", "caption", *TOOL_COMMANDS):
        quiet_libraries()
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "plan":
            return run_plan(args)
        if args.command == "llm":
            return run_llm(args, _train)
        if args.command == "caption":
            return run_caption_command(args)
        if args.command == "config":
            return _config(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command in TOOL_COMMANDS:
            from .tools.commands import run as run_tool

            return run_tool(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(Path(args.out))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


def _config(args) -> int:
    from .config.reference import reference_markdown

    print(reference_markdown())
    return 0


def _inspect(args) -> int:
    from .tools.inspect import format_report, inspect_lora

    report = inspect_lora(args.file)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def event_sink(args):
    from .core.events import ConsoleSink, Fanout, JsonlSink, describe

    mode = args.events
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "plain"
    sink = Fanout()
    if args.events_file:
        sink.add(JsonlSink(open(args.events_file, "a", encoding="utf-8")))
    if mode == "jsonl" and not args.events_file:
        sink.add(JsonlSink(sys.stdout))
    elif mode == "bar":
        sink.add(ConsoleSink(sys.stderr))
    elif mode == "plain" or mode == "jsonl":
        sink.add(lambda event: print(describe(event), file=sys.stderr, flush=True))
    return sink


def _train(args, forced: dict | None = None) -> int:
    from .config import load_config, parse_overrides
    from .core.events import make_event
    from .train.job import run_job
    from .train.stop import StopRequest

    try:
        emit = event_sink(args)
    except OSError as exc:
        print(f"error: cannot write the events file {args.events_file} ({exc.strerror or exc}): check the path.",
              file=sys.stderr)
        return 2
    stop = StopRequest(args.stop_file)
    stop.install_signal_handlers()
    try:
        config = load_config(args.config, {**parse_overrides(args.overrides), **(forced or {})})
        run_job(config, emit, stop)
    except UserError as exc:
        emit(make_event("error", message=str(exc)))
        return 2
    except KeyboardInterrupt:  # a second Ctrl+C: stop at once, without the save a first one makes
        emit(make_event("error", message="Stopped at once (a second Ctrl+C): what was trained since the last "
                                         "checkpoint is not saved. resume_from_checkpoint: latest continues from it."))
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback in the log
        detail = traceback.format_exc()
        emit(make_event("error", message=f"Unexpected error ({type(exc).__name__}: {exc}). This is a bug in "
                                         "lora_train; the details are in train.log.", detail=detail))
        return 1
    return 0
