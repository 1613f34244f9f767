"""Normalise what a user passes as ``example_inputs`` into one call of the model: :class:`Inputs`.

Analysis needs only each input's shape and dtype, so users may pass shapes instead of tensors.
Inputs may be positional or keyword arguments, and each may be a tensor, a shape, ``None`` or a
list, tuple or dict of those (a detection model's list of images, a dict of token tensors).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = ["Inputs", "normalize_example_inputs", "random_inputs"]

_HINT = (
    "Pass a tensor, a tuple of tensors, a shape such as (1, 3, 224, 224), a tuple of shapes "
    "such as ((1, 3, 64, 64), (1, 10)), a dict of keyword inputs such as "
    "{'pixel_values': (1, 3, 224, 224)}, or tapfinder.Inputs(x, mask=m) for both. Lists, "
    "tuples and dicts of tensors or shapes may be nested inside (a list of images)."
)


class Inputs:
    """The example call of a model: ``Inputs(x, attention_mask=m)`` stands for
    ``model(x, attention_mask=m)``.

    Each argument is a tensor, a shape, ``None`` or a (nested) list, tuple or dict of those.
    Only needed where a model takes keyword inputs together with positional ones; a tuple
    (positional) or a dict (keyword) says the same otherwise.

    Examples
    --------
    >>> Inputs((1, 3, 64, 64), mask=None)
    Inputs((1, 3, 64, 64), mask=None)
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [_short(a) for a in self.args]
        parts += [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"Inputs({', '.join(parts)})"

    def tensors(self) -> list[torch.Tensor]:
        """The tensors of the call, positional arguments first, in order, nested ones included."""
        return list(tensors_in([self.args, self.kwargs]))

    def map_tensors(self, function: Any) -> Inputs:
        """The same call with every tensor replaced by ``function(tensor)``."""
        return Inputs(*map_leaves(self.args, function), **map_leaves(self.kwargs, function))


def normalize_example_inputs(example_inputs: Any) -> Inputs:
    """Return ``example_inputs`` as an :class:`Inputs` whose leaves are tensors or ``None``.

    Shapes become float32 ``meta`` tensors (shape and dtype without memory); tensors given by
    the user are kept as they are.

    Parameters
    ----------
    example_inputs
        A tensor or a shape (one positional input); a tuple or list (one item per positional
        argument); a dict (keyword arguments); or an :class:`Inputs`. Items may be tensors,
        shapes, ``None`` or nested lists, tuples and dicts of those.

    Raises
    ------
    InvalidInputError
        For anything else (``None`` or an empty tuple as the whole example, strings, numbers,
        lists of non-integers, ...), naming where in the example the bad item is.

    Examples
    --------
    >>> [tuple(t.shape) for t in normalize_example_inputs((1, 3, 32, 32)).tensors()]
    [(1, 3, 32, 32)]
    >>> normalize_example_inputs({"pixel_values": (1, 3, 8, 8)}).kwargs["pixel_values"].shape
    torch.Size([1, 3, 8, 8])
    """
    if isinstance(example_inputs, Inputs):
        return Inputs(
            *(_leaf(item, f"example_inputs[{i}]") for i, item in enumerate(example_inputs.args)),
            **{key: _leaf(item, f"example_inputs[{key!r}]")
               for key, item in example_inputs.kwargs.items()},
        )
    if isinstance(example_inputs, torch.Tensor) or _is_shape(example_inputs):
        return Inputs(_leaf(example_inputs, "example_inputs"))
    if isinstance(example_inputs, dict) and example_inputs:
        if not all(isinstance(key, str) for key in example_inputs):
            raise InvalidInputError(
                f"example_inputs is a dict, so its keys name forward's keyword arguments; got "
                f"keys {list(example_inputs)[:5]}. {_HINT}")
        return normalize_example_inputs(Inputs(**example_inputs))
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        return normalize_example_inputs(Inputs(*example_inputs))
    raise InvalidInputError(f"example_inputs is {_describe(example_inputs)}. {_HINT}")


def random_inputs(inputs: Inputs, device: torch.device) -> Inputs:
    """Real tensors of the examples' shapes and dtypes on ``device``, to run a model once:
    standard normal values for floating inputs, zeros (valid token ids) for the others."""
    return inputs.map_tensors(
        lambda t: torch.randn(t.shape, dtype=t.dtype, device=device) if t.is_floating_point()
        else torch.zeros(t.shape, dtype=t.dtype, device=device))


def _leaf(value: Any, where: str) -> Any:
    if value is None or isinstance(value, torch.Tensor):
        return value
    if _is_shape(value):
        return _tensor_from_shape(value, where)
    if isinstance(value, (tuple, list)) and value:
        return same_sequence(value, [_leaf(item, f"{where}[{i}]") for i, item in enumerate(value)])
    if isinstance(value, dict) and value:
        return {key: _leaf(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise InvalidInputError(
        f"{where} is {_describe(value)}, which is neither a tensor nor a shape. {_HINT} "
        "Flags and numbers that choose a branch go in concrete_args={'name': value}."
    )


def _is_shape(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list, torch.Size))
        and len(value) > 0
        and all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    )


def _tensor_from_shape(shape: Sequence[int], where: str) -> torch.Tensor:
    if any(d <= 0 for d in shape):
        raise InvalidInputError(
            f"{where} is the shape {tuple(shape)}, which has a dimension that is not positive. "
            "Every dimension must be at least 1."
        )
    return torch.empty(tuple(shape), device="meta")


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``value`` and in the lists, tuples and dicts nested in it, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def map_leaves(value: Any, function: Any, kind: type = torch.Tensor) -> Any:
    """``value`` with every leaf of type ``kind`` (tensors by default), at any depth in lists,
    tuples and dicts, replaced by ``function(leaf)``; other leaves kept."""
    if isinstance(value, kind):
        return function(value)
    if isinstance(value, (tuple, list)):
        return same_sequence(value, [map_leaves(item, function, kind) for item in value])
    if isinstance(value, dict):
        return {key: map_leaves(item, function, kind) for key, item in value.items()}
    return value


def same_sequence(value: tuple | list, items: list) -> tuple | list:
    """A list, tuple or named tuple of ``value``'s type holding ``items``."""
    if hasattr(value, "_fields"):
        return type(value)(*items)
    return type(value)(items)


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}" if not value.is_meta else str(tuple(value.shape))
    return repr(value)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
