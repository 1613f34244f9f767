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
    stand_ins: dict[int, torch.Tensor] = {}
    tables = ["_parameters", "_buffers"]
    modules = dict(root.named_modules(remove_duplicate=False))
    for path, tensor in state.items():
        owner_path, _, name = path.rpartition(".")
        owner = modules[owner_path]
        original = getattr(owner, name)
        if not isinstance(original, torch.Tensor):
            raise TypeError(f"{path!r} is a {type(original).__name__}, not a tensor")
        stand_ins[id(original)] = tensor
        if name not in owner._parameters and name not in owner._buffers and len(tables) == 2:
            tables.append("__dict__")  # fx's tensor constants: only then search every __dict__
    swapped = [
        (table, name, value)
        for module in root.modules()
        for table in (getattr(module, attribute) for attribute in tables)
        for name, value in table.items()
        if id(value) in stand_ins and isinstance(value, torch.Tensor)
    ]
    try:
        for table, name, value in swapped:
            table[name] = stand_ins[id(value)]
        yield
    finally:
        for table, name, original in reversed(swapped):
            table[name] = original
