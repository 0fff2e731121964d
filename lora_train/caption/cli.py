"""`python -m lora_train caption`: arguments and handler.

Two forms: `caption DIR` writes a `.txt` beside each image (add `--metadata-csv` for a csv too);
the lora-scripts form `caption --input DIR --output DIR/metadata.csv` writes the csv only (add
`--txt` for the files too). `--restore latest|NAME` and `--list-backups` manage caption backups.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path

from lora_train.core.errors import UserError

_MODES = ("skip", "overwrite", "append", "prepend")


def default_captioners_dir() -> Path:
    """Where hub models are downloaded outside the WebUI (the WebUI passes its models/lora_train/captioners)."""
    return Path(os.environ.get("LORA_TRAIN_CAPTIONERS") or Path.home() / ".cache" / "lora_train" / "captioners")


def add_caption_parser(sub) -> None:
    from lora_train.cli import add_event_options

    parser = sub.add_parser("caption", help="caption a folder of images (WD tagger, BLIP/VLM, CLIP ranking)",
                            description="Caption every image of a folder. Existing captions are kept unless "
                                        "--mode says otherwise, and any caption changed is backed up first into "
                                        "DIR/.caption_backups/<time>/. See docs/captioning.md.")
    parser.add_argument("folder", nargs="?", help="the folder of images (writes a .txt beside each)")
    parser.add_argument("--input", help="the folder of images (lora-scripts form, with --output)")
    parser.add_argument("--output", help="a metadata.csv to write (filename,prompt); with --input, the csv only")
    parser.add_argument("--metadata-csv", help="also write this metadata.csv when captioning DIR")
    parser.add_argument("--txt", action="store_true", help="with --output: write the .txt files too")
    parser.add_argument("--method", choices=("tagger", "vlm", "clip"), default="tagger")
    parser.add_argument("--model", default="", help="model file or folder, or a Hugging Face repo id (downloaded "
                                                     "once into --captioners-dir)")
    parser.add_argument("--captioners-dir", type=Path, default=None,
                        help=f"where repo ids are downloaded (default $LORA_TRAIN_CAPTIONERS or {default_captioners_dir()})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--mode", choices=_MODES, default="skip",
                        help="for images that already have a caption: skip (default), overwrite, append, prepend")
    parser.add_argument("--caption-extension", default=".txt")
    parser.add_argument("--trigger-word", default="", help="put first in every caption")
    parser.add_argument("--no-recursive", action="store_true", help="only the folder itself, not its subfolders")
    tagger = parser.add_argument_group("WD tagger (--method tagger, or {tags} in a vlm prompt)")
    tagger.add_argument("--tagger-model", default="", help="the tagger for {tags} in a vlm prompt")
    tagger.add_argument("--general-threshold", type=float, default=0.35)
    tagger.add_argument("--character-threshold", type=float, default=0.85)
    tagger.add_argument("--mcut", action="store_true", help="MCut threshold for general tags")
    tagger.add_argument("--character-mcut", action="store_true", help="MCut threshold for characters")
    tagger.add_argument("--rating", action="store_true", help="add the most likely rating tag")
    tagger.add_argument("--exclude-tags", default="", help="comma-separated tags never written")
    tagger.add_argument("--always-first", default="", help="comma-separated tags always written first")
    tagger.add_argument("--replace-tag", action="append", default=[], metavar="OLD=NEW", help="repeatable")
    tagger.add_argument("--keep-underscores", action="store_true", help="write long_hair, not long hair")
    vlm = parser.add_argument_group("image-text models (--method vlm)")
    vlm.add_argument("--prompt", default="", help="may use {trigger}, {tags} (needs --tagger-model) and {name}")
    vlm.add_argument("--max-new-tokens", type=int, default=60)
    vlm.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto")
    clip = parser.add_argument_group("CLIP ranking (--method clip)")
    clip.add_argument("--vocabulary", type=Path, help="text file: one tag or phrase per line (a CoCa model without "
                                                       "one writes captions, up to --max-new-tokens)")
    clip.add_argument("--top-k", type=int, default=5)
    clip.add_argument("--min-score", type=float, default=0.2, help="lowest cosine similarity kept")
    clip.add_argument("--clip-arch", default="", help="open_clip architecture of a bare weights file (ViT-B-32)")
    backups = parser.add_argument_group("backups")
    backups.add_argument("--restore", metavar="NAME", help="put a caption backup back ('latest' or its name)")
    backups.add_argument("--list-backups", action="store_true")
    parser.add_argument("--check-length", action="store_true",
                        help="print (JSON) the captions longer than the text encoder's 75 tokens, then exit")
    add_event_options(parser)


def run_caption_command(args: argparse.Namespace) -> int:
    from lora_train.cli import event_sink
    from lora_train.core.events import make_event
    from lora_train.train.stop import StopRequest

    try:
        emit = event_sink(args)
    except OSError as exc:
        print(f"error: cannot write the events file {args.events_file} ({exc.strerror or exc}).", file=sys.stderr)
        return 2
    stop = StopRequest(args.stop_file)
    stop.install_signal_handlers()
    try:
        return _run(args, emit, stop)
    except UserError as exc:
        emit(make_event("error", message=str(exc)))
        return 2
    except Exception as exc:  # a bug: one line for the user, the traceback as detail
        emit(make_event("error", message=f"Unexpected error ({type(exc).__name__}: {exc}). This is a bug in "
                                         "lora_train's captioning.", detail=traceback.format_exc()))
        return 1


def _run(args, emit, stop) -> int:
    from lora_train.core.events import make_event
    from lora_train.caption.writer import list_backups, restore_backup

    folder = _folder(args)
    if args.list_backups:
        print("\n".join(list_backups(folder)) or f"No caption backups in {folder}.")
        return 0
    if args.check_length:
        from lora_train.caption.review import TOKEN_LIMIT, long_captions

        print(json.dumps({"limit": TOKEN_LIMIT, "long": long_captions(folder, _extension(args))}))
        return 0
    if args.restore:
        restored, previous = restore_backup(folder, args.restore, datetime.now())
        note = f"; the files it replaced are in {previous}" if previous else ""
        emit(make_event("done", message=f"Restored {len(restored)} caption files from {args.restore}{note}"))
        return 0
    from lora_train.caption.run import run_caption

    run_caption(build_job(args, folder), emit, lambda: bool(stop))
    return 0


def _folder(args) -> Path:
    if args.folder and args.input and Path(args.folder) != Path(args.input):
        raise UserError("Give the image folder once: either DIR or --input DIR.")
    folder = args.folder or args.input
    if not folder:
        raise UserError("Which folder? `caption DIR` or `caption --input DIR --output DIR/metadata.csv`.")
    return Path(folder)


def build_job(args, folder: Path):
    """The CaptionJob the arguments describe."""
    from lora_train.caption.clip_ranker import ClipOptions
    from lora_train.caption.methods import MethodOptions
    from lora_train.caption.run import CaptionJob
    from lora_train.caption.tags import TagOptions, parse_replacements
    from lora_train.caption.vlm import VlmOptions
    from lora_train.caption.writer import WriteOptions

    csv_path = args.output or args.metadata_csv
    if csv_path and not str(csv_path).lower().endswith(".csv"):
        raise UserError(f"--output {csv_path} must be a .csv file (filename,prompt), e.g. {folder}/metadata.csv.")
    extension = _extension(args)
    tags = TagOptions(general_threshold=args.general_threshold, character_threshold=args.character_threshold,
                      general_mcut=args.mcut, character_mcut=args.character_mcut, include_rating=args.rating,
                      exclude=_split(args.exclude_tags), always_first=_split(args.always_first),
                      replace=parse_replacements(args.replace_tag), underscores_to_spaces=not args.keep_underscores)
    methods = MethodOptions(method=args.method, model=args.model, tagger_model=args.tagger_model,
                            captioners_dir=args.captioners_dir or default_captioners_dir(), device=args.device,
                            trigger_word=args.trigger_word, tags=tags,
                            vlm=VlmOptions(args.prompt, args.max_new_tokens, args.dtype),
                            clip=ClipOptions(args.vocabulary, args.top_k, args.min_score, args.clip_arch,
                                             args.max_new_tokens))
    write = WriteOptions(mode=args.mode, extension=extension, write_txt=not args.output or args.txt,
                         metadata_csv=Path(csv_path) if csv_path else None, trigger_word=args.trigger_word)
    return CaptionJob(folder, methods, write, args.batch_size, not args.no_recursive)


def _extension(args) -> str:
    return args.caption_extension if args.caption_extension.startswith(".") else f".{args.caption_extension}"


def _split(text: str) -> tuple[str, ...]:
    return tuple(tag.strip() for tag in text.split(",") if tag.strip())
