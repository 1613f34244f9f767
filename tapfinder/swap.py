"""Run a module with stand-in tensors (meta, fake, cloned buffers) and put the originals back.

``torch.nn.utils.stateless`` swaps tensors by attribute path. A module registered under two
paths (timm's CoaT shares one positional encoder between blocks, and one MLP between branches)
then gets its stand-ins restored through one path only, and the user's model keeps meta
parameters afterwards. Here the swap is keyed by tensor identity and done once per module
object, so shared modules and tied weights come back exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["swapped_tensors"]


@contextmanager
def swapped_tensors(root: nn.Module, state: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block, every tensor that ``state`` names by attribute path (a parameter, a
    buffer or a plain tensor attribute) reads as its stand-in, wherever it is registered."""
    stand_ins = {id(_resolve(root, path)): tensor for path, tensor in state.items()}
    swapped: list[tuple[dict, str, object]] = []
    try:
        for module in root.modules():
            for table in (module._parameters, module._buffers, module.__dict__):
                for name, value in list(table.items()):
                    if isinstance(value, torch.Tensor) and id(value) in stand_ins:
                        swapped.append((table, name, value))
                        table[name] = stand_ins[id(value)]
        yield
    finally:
        for table, name, original in reversed(swapped):
            table[name] = original


def _resolve(root: nn.Module, path: str) -> torch.Tensor:
    value: object = root
    for part in path.split("."):
        value = getattr(value, part)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{path!r} is a {type(value).__name__}, not a tensor")
    return value
