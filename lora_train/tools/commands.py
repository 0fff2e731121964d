"""The `merge`, `resize` and `bake` subcommands: their arguments and what they print."""

from __future__ import annotations

import argparse

from .blocks import PRESETS

COMMANDS = ("merge", "resize", "bake")


def add_parsers(sub) -> None:
    """Register the three subcommands on the CLI's subparsers."""
    merge = sub.add_parser("merge", help="merge LoRAs at weights into one LoRA (exact, or SVD to a rank)",
                           description="Merge several LoRAs at weights into one LoRA. Exact by default (ranks add "
                                       "up; the result equals applying the inputs together); --rank cuts it by SVD "
                                       "and reports the error per layer.")
    merge.add_argument("files", nargs="+", help="the LoRA files (kohya, LyCORIS LoCon or diffusers/PEFT keys)")
    merge.add_argument("--weights", nargs="+", type=float, required=True, help="one weight per file (may be < 0)")
    merge.add_argument("--out", required=True, help="the new .safetensors (never overwritten)")
    merge.add_argument("--rank", type=int, help="SVD mode: the output rank of Linear / 1x1 layers")
    merge.add_argument("--conv-rank", type=int, help="SVD mode: the output rank of LoCon's 3x3 convolutions")
    merge.add_argument("--block-weights", nargs="+", metavar="PRESET_OR_LIST",
                       help=f"per-block weights: a preset ({', '.join(PRESETS)}) or 17 (SD1/SD2) / 12 (SDXL) "
                            "comma-separated numbers; once for all files or once per file")
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
    bake.add_argument("base", help="the base checkpoint (.safetensors / .ckpt) or diffusers folder")
    bake.add_argument("files", nargs="+", help="the LoRA files")
    bake.add_argument("--weights", nargs="+", type=float, help="one weight per LoRA (default 1 each)")
    bake.add_argument("--out", required=True, help="the new checkpoint .safetensors (never overwritten)")


def _layer_lines(rows: list[tuple[str, str]], verbose: bool) -> list[str]:
    shown = rows if verbose or len(rows) <= 12 else rows[:6] + [("...", f"({len(rows) - 12} more)")] + rows[-6:]
    width = max(len(name) for name, _ in shown)
    return [f"  {name:<{width}}  {text}" for name, text in shown]


def _merge(args: argparse.Namespace) -> None:
    from .merge import merge_loras

    result = merge_loras(args.files, args.weights, args.out, rank=args.rank, conv_rank=args.conv_rank,
                         block_weights=args.block_weights)
    ranks = sorted({layer.rank for layer in result.layers})
    print(f"Saved {result.path} ({len(result.layers)} modules, rank {', '.join(map(str, ranks))})")
    if args.rank or args.conv_rank:
        rows = [(layer.name, f"rank {layer.full_rank} -> {layer.rank}, relative error {layer.error:.4%}")
                for layer in result.layers]
        print("\n".join(_layer_lines(rows, False)))
        print(f"SVD error: mean {result.mean_error:.4%}, max {result.max_error:.4%} (relative Frobenius, per layer)")
    else:
        print("Exact merge: applying it at strength 1 equals applying the inputs together at their weights.")


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


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; UserErrors propagate to the CLI, which prints them."""
    {"merge": _merge, "resize": _resize, "bake": _bake}[args.command](args)
    return 0
