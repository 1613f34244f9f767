"""Output shapes of common ``torch.nn`` layers, computed without dispatching them.

On meta tensors, BatchNorm and several activations run Python decompositions that cost more
than the rest of the analysis of a MobileNet-sized model (``benchmarks/bench_trace.py``
measures it). Shape-preserving layers return their input's shape and dtype; convolutions and linear
layers follow the standard output-size formulas. Each rule keeps the checks the real layer
makes (rank, channels, dtype), so a wrong input still fails at the same node. Only the exact
``torch.nn`` classes qualify: a subclass may override ``forward``. Binary ``+ - * /`` on
tensors take the broadcast shape and the promoted dtype.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["layer_output", "binary_output"]


def _no_check(module: nn.Module, x: torch.Tensor) -> None:
    return None


def _check_batch_norm(module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> None:
    if x.dim() < 2 or x.shape[1] != module.num_features:
        raise RuntimeError(
            f"{type(module).__name__} expects {module.num_features} channels in dimension 1; "
            f"got input of size {list(x.shape)}"
        )
    if module.training and x.shape[0] * math.prod(x.shape[2:]) == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input size "
            f"{x.shape}"
        )


def _check_group_norm(module: nn.GroupNorm, x: torch.Tensor) -> None:
    if x.dim() < 2 or x.shape[1] != module.num_channels:
        raise RuntimeError(
            f"GroupNorm expects {module.num_channels} channels in dimension 1; "
            f"got input of size {list(x.shape)}"
        )


def _check_layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> None:
    normalized = tuple(module.normalized_shape)
    if tuple(x.shape[-len(normalized):]) != normalized:
        raise RuntimeError(
            f"LayerNorm normalizes over {list(normalized)} but got input of size {list(x.shape)}"
        )


def _conv_output(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor:
    spatial_dims = len(module.kernel_size)
    if x.dim() not in (spatial_dims + 1, spatial_dims + 2):
        raise RuntimeError(
            f"Expected {spatial_dims + 1}D (unbatched) or {spatial_dims + 2}D (batched) input to "
            f"conv{spatial_dims}d, but got input of size: {list(x.shape)}"
        )
    channel_dim = x.dim() - spatial_dims - 1
    if x.shape[channel_dim] != module.in_channels:
        raise RuntimeError(
            f"{type(module).__name__} expects {module.in_channels} input channels; got input of "
            f"size {list(x.shape)}"
        )
    if x.dtype != module.weight.dtype:
        raise RuntimeError(
            f"Input type ({x.dtype}) and weight type ({module.weight.dtype}) should be the same"
        )
    sizes = []
    for axis in range(spatial_dims):
        size = x.shape[channel_dim + 1 + axis]
        kernel, stride = module.kernel_size[axis], module.stride[axis]
        dilation = module.dilation[axis]
        if module.padding == "same":
            out = size
        else:
            padding = 0 if module.padding == "valid" else int(module.padding[axis])
            out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        if out <= 0:
            raise RuntimeError(
                f"Calculated output size of {type(module).__name__} is too small: input "
                f"{list(x.shape)}, kernel {module.kernel_size}"
            )
        sizes.append(out)
    shape = (*x.shape[:channel_dim], module.out_channels, *sizes)
    return torch.empty(shape, dtype=x.dtype, device=x.device)


def _linear_output(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 0 or x.shape[-1] != module.in_features:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied (input {list(x.shape)}, Linear expects "
            f"last dimension {module.in_features})"
        )
    if x.dtype != module.weight.dtype:
        raise RuntimeError(
            f"mat1 and mat2 must have the same dtype, but got {x.dtype} and {module.weight.dtype}"
        )
    return torch.empty((*x.shape[:-1], module.out_features), dtype=x.dtype, device=x.device)


def _adaptive_pool_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    spatial_dims = int(type(module).__name__[-2])  # AdaptiveAvgPool2d -> 2
    if x.dim() not in (spatial_dims + 1, spatial_dims + 2):
        raise RuntimeError(
            f"{type(module).__name__}: Expected {spatial_dims + 1}D or {spatial_dims + 2}D tensor, "
            f"but got input of size {list(x.shape)}"
        )
    output_size: Any = getattr(module, "output_size")
    size = (output_size,) * spatial_dims if isinstance(output_size, int) else tuple(output_size)
    kept = x.shape[-spatial_dims:]
    out = tuple(k if s is None else s for s, k in zip(size, kept))
    return torch.empty((*x.shape[:-spatial_dims], *out), dtype=x.dtype, device=x.device)


# Each formula takes the module class it is registered for.
_OUTPUT_RULES: dict[type, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    nn.AdaptiveAvgPool1d: _adaptive_pool_output,
    nn.AdaptiveAvgPool2d: _adaptive_pool_output,
    nn.AdaptiveAvgPool3d: _adaptive_pool_output,
    nn.Conv1d: _conv_output,
    nn.Conv2d: _conv_output,
    nn.Conv3d: _conv_output,
    nn.Linear: _linear_output,
}

_PRESERVING_RULES: dict[type, Callable[[Any, torch.Tensor], None]] = {
    **{cls: _check_batch_norm for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)},
    nn.GroupNorm: _check_group_norm,
    nn.LayerNorm: _check_layer_norm,
    **{
        cls: _no_check
        for cls in (
            nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
            nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
            nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
        )
    },
}


_BINARY_OPERATORS = {operator.add, operator.sub, operator.mul, operator.truediv}


def binary_output(function: Callable, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The result of ``a + b``, ``a - b``, ``a * b`` or ``a / b`` with at least one tensor:
    the broadcast shape and promoted dtype, or ``None`` when no rule applies."""
    if function not in _BINARY_OPERATORS or kwargs or len(args) != 2:
        return None
    a, b = args
    tensors = [v for v in args if isinstance(v, torch.Tensor)]
    if not tensors or not all(isinstance(v, (torch.Tensor, bool, int, float)) for v in args):
        return None
    devices = {t.device for t in tensors if t.dim() > 0}
    if len(devices) > 1:  # as the real op: only zero-dim tensors may live on another device
        raise RuntimeError(f"Expected all tensors to be on the same device, but found {devices}")
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))  # raises like the real op
    dtype = torch.result_type(a, b)
    if function is operator.truediv and not (dtype.is_floating_point or dtype.is_complex):
        dtype = torch.get_default_dtype()
    return torch.empty(shape, dtype=dtype, device=tensors[0].device)


def layer_output(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """A data-free tensor standing for the layer's output, or ``None`` when no rule applies.

    Raises what the real layer would raise for an input it cannot take.
    """
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    kind = type(module)
    if kind in _OUTPUT_RULES:
        return _OUTPUT_RULES[kind](module, args[0])
    if kind in _PRESERVING_RULES:
        _PRESERVING_RULES[kind](module, args[0])
        # empty_like dispatches to a Python reference on meta tensors; empty_strided does not.
        return torch.empty_strided(args[0].shape, args[0].stride(), dtype=args[0].dtype, device=args[0].device)
    return None
