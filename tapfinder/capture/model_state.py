"""Put a model back exactly as it was: after code that ran parts of it, and after running it
with stand-in tensors.

Tracing executes the model's Python: whatever its ``forward`` does to itself happens during a
trace too. timm's LeViT and EfficientFormer store per-resolution attention biases in a dict in
eval mode, so a trace leaves fx proxies there and every later trace fails; timm's
``BatchNormAct2d`` increments ``num_batches_tracked`` in Python, so a train-mode trace bumped
the user's counters. :func:`preserved_state` restores every module's attributes (containers by
content, so references to them stay valid), every buffer's values and the CPU random-number
state.

Shape propagation runs the model on stand-in tensors (meta, fake, cloned buffers);
:func:`swapped_tensors` puts the originals back. ``torch.nn.utils.stateless`` swaps tensors by
attribute path instead: a module registered under two
paths (timm's CoaT shares one positional encoder between blocks, and one MLP between branches)
then gets its stand-ins restored through one path only, and the user's model keeps meta
parameters afterwards. Here the swap is keyed by tensor identity and done once per module
object, so shared modules and tied weights come back exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["preserved_state", "swapped_tensors"]


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Inside the block the model may change; afterwards it is as before: each module's
    ``__dict__`` (attributes added, replaced or removed; dicts, lists and sets refilled in
    place), each buffer's values and the CPU RNG state.

    >>> model = nn.BatchNorm1d(2)
    >>> with preserved_state(model):
    ...     model.cache = {"size": 4}
    ...     model.num_batches_tracked.add_(1)
    tensor(1)
    >>> hasattr(model, "cache"), int(model.num_batches_tracked)
    (False, 0)
    """
    modules = [(module, dict(module.__dict__)) for module in _unique_modules(model)]
    contents = {id(value): (value, _content(value)) for _, saved in modules
                for value in saved.values() if _content(value) is not None}
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()
               if buffer.device.type != "meta"]
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            for module, saved in modules:
                for key in [k for k in module.__dict__ if k not in saved]:
                    del module.__dict__[key]
                for key, value in saved.items():
                    if module.__dict__.get(key, _MISSING) is not value:
                        module.__dict__[key] = value
            for container, content in contents.values():
                _refill(container, content)
            with torch.no_grad():
                for buffer, values in buffers:
                    if not torch.equal(buffer, values):
                        buffer.copy_(values)


_MISSING = object()


def _holds(container: Any, content: list) -> bool:
    """Whether ``container`` holds exactly ``content`` (the same objects, in the same order where
    order is kept)."""
    if len(container) != len(content):
        return False
    if isinstance(container, dict):
        return all(key is k and value is v
                   for (key, value), (k, v) in zip(container.items(), content))
    if isinstance(container, list):
        return all(item is saved for item, saved in zip(container, content))
    return all(item in container for item in content)


def _unique_modules(model: nn.Module) -> list[nn.Module]:
    return list({id(m): m for _, m in model.named_modules(remove_duplicate=False)}.values())


def _content(value: Any) -> Any:
    """A shallow copy of a mutable container's content, or ``None`` for anything else."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, set)):
        return list(value)
    return None


def _refill(container: Any, content: list) -> None:
    """Put ``content`` back into ``container``, in place, where it changed (refilling a set
    that did not change could reorder its iteration)."""
    if _holds(container, content):
        return
    if isinstance(container, dict):
        container.clear()
        container.update(content)
    elif isinstance(container, list):
        container[:] = content
    else:
        container.clear()
        container.update(content)


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
