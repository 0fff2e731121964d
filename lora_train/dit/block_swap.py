"""Block swap (kohya's `blocks_to_swap`): some of the transformer's blocks keep their frozen weights in CPU memory
and visit the compute device one at a time, for the forward pass, the recomputation of gradient checkpointing
and the backward pass.

kohya's count: `blocks_to_swap: N` swaps N // 2 double blocks and (N - N // 2) * 2 single blocks (a single
block is about half a double one), at most each kind's count - 2 (Flux.1: N <= 35). Here the swapped blocks
are the last ones of each kind, always the same: their frozen weights are stored once (pinned, on CUDA) and
never copied back, as they do not change; a visit is one copy to the device, and leaving is dropping that copy.
The LoRA layers inside those blocks (trainable) stay on the compute device, so their gradients land there.

Order: while block k runs, block k + 1 is copied (on CUDA on a side stream, waited for by an event: the copy
overlaps the compute; elsewhere synchronously). In the forward pass a swapped block leaves after it ran, except
the last one, which the backward pass needs first; the backward pass (told by a hook on each block's output
gradients) brings block k - 1 while block k's gradients are computed, and sends block k + 1 away. Before each
forward call every swapped block is put back in the store (a no-op after a whole step), so any order of
calls (sampling, a skipped backward, blocks without gradients) stays correct.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UserError

KEY = "blocks_to_swap"


def swap_counts(blocks_to_swap: int, doubles: int, singles: int) -> tuple[int, int]:
    """kohya's split of `blocks_to_swap` into (double, single) blocks, or a UserError naming the key."""
    double, single = blocks_to_swap // 2, (blocks_to_swap - blocks_to_swap // 2) * 2
    if blocks_to_swap < 0 or double > max(doubles - 2, 0) or single > max(singles - 2, 0):
        largest = max((n for n in range(0, 2 * (doubles + singles)) if n // 2 <= doubles - 2
                       and (n - n // 2) * 2 <= singles - 2), default=0)
        raise UserError(f"{KEY}: {blocks_to_swap} asks for {double} of this transformer's {doubles} double blocks "
                        f"and {single} of its {singles} single blocks, but at least 2 of each stay on the GPU: use "
                        f"0 to {largest} (kohya's count: N // 2 double blocks and (N - N // 2) * 2 single blocks).")
    return double, single


class BlockGroup:
    """One kind of blocks (a ModuleList) whose last `count` swap between `store` and `compute`."""

    def __init__(self, blocks: nn.ModuleList, count: int, compute: torch.device, store: torch.device):
        self.blocks, self.compute, self.store = blocks, torch.device(compute), torch.device(store)
        self.first = len(blocks) - count  # the first swapped index
        self.stream = torch.cuda.Stream(self.compute) if self.compute.type == "cuda" else None
        self.stored: dict[int, list[tuple[nn.Parameter, torch.Tensor]]] = {}
        self.pending: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}
        self.resident: set[int] = set()
        self.visited: set[int] = set()  # blocks the forward pass ran since `prepare`
        self.reached: set[int] = set()  # blocks whose output gradient arrived since `prepare`
        self.moves = 0  # copies to the compute device, for the tests and the benchmark
        for index, block in enumerate(blocks):
            swapped = index >= self.first
            for param in block.parameters():
                if swapped and not param.requires_grad:
                    kept = param.data.to(self.store)
                    param.data = kept.pin_memory() if self.stream is not None else kept
                else:
                    param.data = param.data.to(self.compute)
            for module in block.modules():
                for name, buffer in module.named_buffers(recurse=False):
                    module._buffers[name] = buffer.to(self.compute)
            if swapped:
                self.stored[index] = [(p, p.data) for p in block.parameters() if not p.requires_grad]
            block.register_forward_pre_hook(self._before(index))
            block.register_forward_hook(self._after(index))

    def swapped(self, index: int) -> bool:
        return index in self.stored

    def prepare(self) -> None:
        """Every swapped block back in the store, and the first one on its way."""
        for index in list(self.pending) + list(self.resident):
            self.leave(index)
        self.visited.clear()
        self.reached.clear()
        self.fetch(self.first)

    def fetch(self, index: int) -> None:
        """Start copying block `index`'s frozen weights to the compute device (if it is swapped and not there)."""
        if not self.swapped(index) or index in self.resident or index in self.pending:
            return
        self.moves += 1
        if self.stream is None:
            for param, kept in self.stored[index]:
                param.data = kept.to(self.compute, copy=True)
            self.resident.add(index)
            return
        with torch.cuda.stream(self.stream):
            copies = [kept.to(self.compute, non_blocking=True) for _, kept in self.stored[index]]
            event = torch.cuda.Event()
            event.record(self.stream)
        self.pending[index] = (copies, event)

    def arrive(self, index: int) -> None:
        """Block `index`'s weights usable by the work queued from now on (copied now if nothing started it)."""
        if not self.swapped(index) or index in self.resident:
            return
        self.fetch(index)
        if index in self.pending:
            copies, event = self.pending.pop(index)
            current = torch.cuda.current_stream(self.compute)
            current.wait_event(event)
            for (param, _), copy in zip(self.stored[index], copies):
                copy.record_stream(current)  # not reused before the compute stream is done with it
                param.data = copy
            self.resident.add(index)

    def leave(self, index: int) -> None:
        """Block `index` back to its stored weights (its device copy is dropped)."""
        if index not in self.pending and index not in self.resident:
            return
        self.arrive(index)  # a copy under way is finished first: its memory is freed after the copy
        for param, kept in self.stored.get(index, ()):
            param.data = kept
        self.resident.discard(index)

    def _before(self, index: int):
        def hook(module: nn.Module, args) -> None:
            self.arrive(index)
            if index not in self.visited:  # not the recomputation of gradient checkpointing
                self.fetch(index + 1)
        return hook

    def _after(self, index: int):
        def hook(module: nn.Module, args, output) -> None:
            if index in self.visited:
                return
            self.visited.add(index)
            tensors = [t for t in (output if isinstance(output, tuple) else (output,))
                       if isinstance(t, torch.Tensor) and t.requires_grad]
            if tensors:  # once every output's gradient is in (those the backward pass reaches)
                torch.autograd.graph.register_multi_grad_hook(tensors, lambda grads: self._backward_reached(index),
                                                              mode="all")
            if self.swapped(index) and not (tensors and index == len(self.blocks) - 1):
                self.leave(index)
        return hook

    def _backward_reached(self, index: int) -> None:
        """Block `index`'s output gradients are in: block index + 1 is done, block index is next."""
        if index in self.reached:
            return
        self.reached.add(index)
        if index + 1 in self.resident:
            self.leave(index + 1)
        self.arrive(index)
        self.fetch(index - 1)


class BlockSwap:
    """Block swap on a Flux-family transformer (diffusers' `transformer_blocks` and `single_transformer_blocks`):
    everything but the swapped blocks' frozen weights on `compute`, those in `store`."""

    def __init__(self, transformer: nn.Module, blocks_to_swap: int, compute: torch.device,
                 store: torch.device = torch.device("cpu")):
        double, single = swap_counts(blocks_to_swap, len(transformer.transformer_blocks),
                                     len(transformer.single_transformer_blocks))
        self.blocks_to_swap, self.counts = blocks_to_swap, (double, single)
        for name, module in transformer.named_children():
            if name not in ("transformer_blocks", "single_transformer_blocks"):
                module.to(compute)
        self.groups = (BlockGroup(transformer.transformer_blocks, double, compute, store),
                       BlockGroup(transformer.single_transformer_blocks, single, compute, store))
        transformer.register_forward_pre_hook(lambda module, args: self.prepare())

    def prepare(self) -> None:
        for group in self.groups:
            group.prepare()

    @property
    def moves(self) -> int:
        return sum(group.moves for group in self.groups)

    def describe(self) -> str:
        double, single = self.counts
        return (f"Block swap: {double} double and {single} single blocks keep their weights in CPU memory and "
                f"visit the GPU one at a time ({KEY}: {self.blocks_to_swap}).")
