"""Normalise what a user passes as ``example_inputs`` into a tuple of tensors.

Analysis needs only each input's shape and dtype, so users may pass shapes instead of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import InvalidInputError

__all__ = ["normalize_example_inputs", "random_inputs"]

_HINT = (
    "Pass a tensor, a tuple of tensors, a shape such as (1, 3, 224, 224), or a tuple of shapes "
    "such as ((1, 3, 64, 64), (1, 10))."
)


def _is_shape(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list, torch.Size))
        and len(value) > 0
        and all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    )


def _tensor_from_shape(shape: Sequence[int], position: int) -> torch.Tensor:
    if any(d <= 0 for d in shape):
        raise InvalidInputError(
            f"example_inputs[{position}] is the shape {tuple(shape)}, which has a dimension "
            f"that is not positive. Every dimension must be at least 1."
        )
    # Meta tensors carry shape and dtype without allocating memory.
    return torch.empty(tuple(shape), device="meta")


def normalize_example_inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    """Return ``example_inputs`` as a tuple of tensors (shapes become float32 ``meta`` tensors).

    Parameters
    ----------
    example_inputs
        A tensor, a shape (a tuple/list/``torch.Size`` of ints), or a tuple/list whose items are
        tensors or shapes, one per positional argument of the model's ``forward``.

    Returns
    -------
    tuple of torch.Tensor
        One tensor per positional input. Tensors given by the user are returned as they are.

    Raises
    ------
    InvalidInputError
        For anything else (``None``, an empty tuple, strings, nested lists of numbers, ...).

    Examples
    --------
    >>> [tuple(t.shape) for t in normalize_example_inputs((1, 3, 32, 32))]
    [(1, 3, 32, 32)]
    >>> [tuple(t.shape) for t in normalize_example_inputs([(2, 3), torch.zeros(2, 5)])]
    [(2, 3), (2, 5)]
    """
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if _is_shape(example_inputs):
        return (_tensor_from_shape(example_inputs, 0),)
    if isinstance(example_inputs, (tuple, list)) and len(example_inputs) > 0:
        tensors = []
        for position, item in enumerate(example_inputs):
            if isinstance(item, torch.Tensor):
                tensors.append(item)
            elif _is_shape(item):
                tensors.append(_tensor_from_shape(item, position))
            else:
                raise InvalidInputError(
                    f"example_inputs[{position}] is {_describe(item)}, which is neither a tensor "
                    f"nor a shape. {_HINT}"
                )
        return tuple(tensors)
    raise InvalidInputError(f"example_inputs is {_describe(example_inputs)}. {_HINT}")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def random_inputs(example_inputs: tuple[torch.Tensor, ...], device: torch.device) -> list[torch.Tensor]:
    """Real tensors of the examples' shapes and dtypes on ``device``, to run a model once:
    standard normal values for floating inputs, zeros (valid token ids) for the others."""
    return [torch.randn(t.shape, dtype=t.dtype, device=device) if t.is_floating_point()
            else torch.zeros(t.shape, dtype=t.dtype, device=device) for t in example_inputs]
