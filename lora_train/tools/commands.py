"""The `merge`, `resize`, `bake` and `grid` subcommands: their arguments and what they print."""

from __future__ import annotations

import argparse

from ..core.errors import UserError
from .blocks import PRESETS

COMMANDS = ("merge", "resize", "bake", "grid")


def add_parsers(sub) -> None:
    """Register merge, resize, bake and grid on the CLI's subparsers."""
    merge = sub.add_parser("merge", help="merge LoRAs at weights into one LoRA (exact, or SVD to a rank)",
                           description="Merge several LoRAs at weights into one LoRA. Exact by default (ranks add "
                                       "up; the result equals applying the inputs together); --rank cuts it by SVD "
                                       "and reports the error per layer.")
    merge.add_argument("files", nargs="+", help="the LoRA files (kohya, LyCORIS LoCon or diffusers/PEFT keys; Flux "
                                                "also ai-toolkit, OneTrainer, BFL/PEFT keys)")
    merge.add_argument("--weights", nargs="+", type=float, required=True, help="one weight per file (may be < 0)")
    merge.add_argument("--out", required=True, help="the new .safetensors (never overwritten)")
    merge.add_argument("--rank", type=int, help="SVD mode: the output rank of Linear / 1x1 layers")
    merge.add_argument("--conv-rank", type=int, help="SVD mode: the output rank of LoCon's 3x3 convolutions")
    merge.add_argument("--base", help="the base checkpoint (single file or diffusers folder): needed to merge DoRA "
                                      "LoRAs, whose effect depends on the base weights")
    merge.add_argument("--card", action="store_true",
                       help="also write the WebUI card (<name>.json: sd version, trigger words) beside it")
    merge.add_argument("--preview", help="an image to save beside it as <name>.preview.png")
    merge.add_argument("--block-weights", nargs="+", metavar="PRESET_OR_LIST",
                       help=f"per-block weights: a preset ({', '.join(PRESETS)}; Flux: ALL, NONE) or 17 (SD1/SD2) / "
                            "12 (SDXL) / 61 (Flux: CLIP,T5,IN,D00-D18,S00-S37,OUT) comma-separated numbers; once "
                            "for all files or once per file")
    resize = sub.add_parser("resize", help="lower a LoRA's rank by SVD, keeping its strength",
                            description="Resize a LoRA to a lower rank (new alpha = old alpha / old rank x new rank).")
    resize.add_argument("file")
    resize.add_argument("--out", required=True, help="the new .safetensors (never overwritten)")
    resize.add_argument("--rank", type=int, help="the new rank (with --dynamic: the highest rank allowed)")
    resize.add_argument("--dynamic", help="fro:0.95 (Frobenius norm kept), ratio:4 (values >= max/4) or "
                                          "cumulative:0.9 (sum of values kept)")
    resize.add_argument("--conv-rank", type=int, help="the new rank of LoCon's 3x3 convolutions")
    resize.add_argument("--verbose", action="store_true", help="print every layer, not only the summary")
    bake = sub.add_parser("bake", help="bake LoRAs into a checkpoint, saved as a new single-file checkpoint",
                          description="Add LoRAs at weights to a base checkpoint (single file or diffusers folder) as "
                                      "the WebUI applies them, and save a new single-file checkpoint in the same "
                                      "layout and precision. The base is never changed.")
    bake.add_argument("base", help="the base checkpoint (.safetensors / .ckpt; Flux: BFL's single file) or "
                                   "diffusers folder")
    bake.add_argument("files", nargs="+", help="the LoRA files")
    bake.add_argument("--weights", nargs="+", type=float, help="one weight per LoRA (default 1 each)")
    bake.add_argument("--out", required=True, help="the new checkpoint .safetensors (never overwritten)")
    _add_grid(sub)


def _add_grid(sub) -> None:
    grid = sub.add_parser("grid", help="render a strength grid of one or two LoRAs (rows x columns of weights)",
                          description="Render the same prompt and seed at every combination of the LoRAs' weights "
                                      "(0 is always included) and save one labelled image and its parameters.")
    grid.add_argument("base", help="the base checkpoint or diffusers folder")
    grid.add_argument("files", nargs="+", help="one or two LoRA files")
    grid.add_argument("--weights", nargs="+", required=True, help='one list per LoRA, e.g. "0.5,1" "0.3,0.6"')
    grid.add_argument("--prompt", required=True)
    grid.add_argument("--negative", default="")
    grid.add_argument("--seed", type=int, default=1234)
    grid.add_argument("--width", type=int, default=512)
    grid.add_argument("--height", type=int, default=512)
    grid.add_argument("--steps", type=int, default=20)
    grid.add_argument("--out-dir", required=True, help="where the grid image and its parameters go")


def _layer_lines(rows: list[tuple[str, str]], verbose: bool) -> list[str]:
    shown = rows if verbose or len(rows) <= 12 else rows[:6] + [("...", f"({len(rows) - 12} more)")] + rows[-6:]
    width = max(len(name) for name, _ in shown)
    return [f"  {name:<{width}}  {text}" for name, text in shown]


def _merge(args: argparse.Namespace) -> None:
    from .merge import merge_loras

    result = merge_loras(args.files, args.weights, args.out, rank=args.rank, conv_rank=args.conv_rank,
                         block_weights=args.block_weights, base=args.base)
    ranks = sorted({layer.rank for layer in result.layers})
    print(f"Saved {result.path} ({len(result.layers)} modules, rank {', '.join(map(str, ranks))})")
    if args.rank or args.conv_rank or args.base:
        rows = [(layer.name, f"rank {layer.full_rank} -> {layer.rank}, relative error {layer.error:.4%}")
                for layer in result.layers]
        print("\n".join(_layer_lines(rows, False)))
        print(f"SVD error: mean {result.mean_error:.4%}, max {result.max_error:.4%} (relative Frobenius, per layer)")
    if not (args.rank or args.conv_rank):
        where = f" on {args.base}" if args.base else ""
        print(f"Exact merge: applying it at strength 1 equals applying the inputs together at their weights{where}.")
    if args.card or args.preview:
        from .card import write_card

        for path in write_card(result.path, args.files, args.weights, args.preview if args.preview else None,
                               card=args.card):
            print(f"Saved {path}")


def _resize(args: argparse.Namespace) -> None:
    from .resize import resize_lora

    result = resize_lora(args.file, args.out, rank=args.rank, dynamic=args.dynamic, conv_rank=args.conv_rank)
    rows = [(name, f"rank {layer.full} -> {layer.kept}, Frobenius retained {layer.retained:.4%}, "
                   f"error {layer.error:.4%}") for name, layer in result.layers.items()]
    print("\n".join(_layer_lines(rows, args.verbose)))
    print(f"Saved {result.path}: average Frobenius retained {result.mean_retained:.4%}, mean error "
          f"{result.mean_error:.4%}, max error {result.max_error:.4%}")


def _bake(args: argparse.Namespace) -> None:
    from .bake import bake_loras

    result = bake_loras(args.base, args.files, args.weights or [1.0] * len(args.files), args.out)
    print(f"Saved {result.path} ({result.layout} layout, {result.dtype}); changed {result.changed} weights "
          f"from {result.modules} LoRA modules.")
    for line in result.notes:
        print(f"  {line}")


def _grid(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from .grid import render_grid
    from ..core.grid_image import GridSpec, parse_weights

    if len(args.files) > 2 or len(args.weights) != len(args.files):
        raise UserError("Give one or two LoRAs and one --weights list for each.")
    for name, value in (("--width", args.width), ("--height", args.height)):
        if not 64 <= value <= 4096 or value % 8:
            raise UserError(f"{name} {value}: give a size in pixels from 64 to 4096, a multiple of 8 (e.g. 512).")
    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: give at least 1 denoising step (e.g. 20).")
    spec = GridSpec([Path(file).stem for file in args.files],
                    [parse_weights(text, Path(file).name) for text, file in zip(args.weights, args.files)],
                    args.prompt, args.negative, args.seed, args.width, args.height, args.steps, str(args.base))
    image, params = render_grid(spec, [Path(file) for file in args.files], Path(args.out_dir))
    print(json.dumps({"image": str(image), "params": str(params)}))


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; UserErrors propagate to the CLI, which prints them."""
    {"merge": _merge, "resize": _resize, "bake": _bake, "grid": _grid}[args.command](args)
    return 0
