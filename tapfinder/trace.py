"""``tapfinder.trace``: any ``nn.Module`` to an annotated :class:`~tapfinder.graph.ArchGraph`."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from .errors import InvalidInputError
from .graph import ArchGraph, build_arch_graph
from .inputs import normalize_example_inputs
from .preserve import preserved_state
from .shapes import propagate_shapes
from .tracer import trace_model

__all__ = ["trace", "AutoLeafWarning"]


class AutoLeafWarning(UserWarning):
    """Some submodules could not be traced and appear as one opaque node each."""


def trace(
    model: nn.Module,
    example_inputs: Any,
    *,
    leaf_modules: Iterable[str | type] = (),
    concrete_args: dict[str, Any] | None = None,
) -> ArchGraph:
    """Trace ``model`` with ``torch.fx`` and annotate every node with shapes and structure.

    Shapes come from fake tensors, so no convolution runs and models on the ``meta`` device work.
    The model is not modified: its training flags, parameters, buffers (BatchNorm statistics and
    counters included, in training mode too), attributes (caches a ``forward`` fills included),
    device, dtype, hooks and the CPU random-number state are the same afterwards.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``. It is traced in its current mode (``train()`` or ``eval()``),
        which can change the graph (Inception's auxiliary head runs only in training).
    example_inputs
        A tensor, a tuple of tensors, a shape such as ``(1, 3, 224, 224)`` or a tuple of shapes,
        one per positional argument of ``forward``. Only shape and dtype are used; shapes become
        tensors of the model's floating dtype.
    leaf_modules
        Submodule paths (``"layer1.0"``) or module classes to keep as single opaque nodes.
    concrete_args
        Values for ``forward`` arguments to fix while tracing (flags that choose a branch).

    Returns
    -------
    ArchGraph
        The annotated graph. Submodules that fx could not trace are made leaves automatically
        (listed in ``ArchGraph.leaves``, with an :class:`AutoLeafWarning`). Branches on input
        shapes (``if h % 32: ...``) are decided for the example shapes and listed in
        ``ArchGraph.shape_guards``: the graph is specialised to those shapes.

    Raises
    ------
    InvalidInputError
        ``model`` is not a module, or ``example_inputs``, ``leaf_modules`` or ``concrete_args``
        are malformed or do not match ``forward``'s arguments.
    TraceFailure
        The root module's own forward cannot be traced; the message names the source line.
    ShapePropagationError
        The model fails on inputs of these shapes; the message names the failing node.

    Examples
    --------
    >>> import torchvision
    >>> arch = trace(torchvision.models.resnet18(), (1, 3, 224, 224))
    >>> arch["layer4_1_relu_1"]["shape"], arch["layer4_1_relu_1"]["layout"]
    ((1, 512, 7, 7), 'NCHW')
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"trace() expects a torch.nn.Module; got {type(model).__name__}. Wrap plain "
            "functions in an nn.Module whose forward calls them."
        )
    inputs = _match_model_dtype(normalize_example_inputs(example_inputs), model)
    with preserved_state(model):  # tracing runs the model's Python, which may change the model
        traced = trace_model(
            model, leaf_modules=leaf_modules, concrete_args=concrete_args, example_inputs=inputs
        )
        _check_input_count(model, traced.graph, inputs)
        infos, shape_mode = propagate_shapes(traced, inputs)
    auto_leaves = traced.auto_leaves
    if auto_leaves:
        warnings.warn(
            f"torch.fx could not trace through {len(auto_leaves)} submodule(s) of "
            f"{type(model).__name__}; each now appears as one node: "
            f"{', '.join(list(auto_leaves)[:5])}{' ...' if len(auto_leaves) > 5 else ''}. "
            "ArchGraph.leaves gives the reasons.",
            AutoLeafWarning,
            stacklevel=2,
        )
    return build_arch_graph(model, traced, infos, shape_mode=shape_mode)


def _match_model_dtype(
    inputs: tuple[torch.Tensor, ...], model: nn.Module
) -> tuple[torch.Tensor, ...]:
    """Give inputs that were only shapes the model's floating dtype (bf16 models get bf16)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return tuple(
        t.to(dtype) if t.is_meta and t.dtype == torch.float32 and dtype != torch.float32 else t
        for t in inputs
    )


def _check_input_count(
    model: nn.Module, graph: fx.Graph, inputs: tuple[torch.Tensor, ...]
) -> None:
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]
    if len(required) <= len(inputs) <= len(placeholders):
        return
    names = ", ".join(n.target for n in placeholders) or "no arguments"
    try:
        signature = f"{type(model).__name__}.forward{inspect.signature(model.forward)}"
    except (TypeError, ValueError):
        signature = f"{type(model).__name__}.forward({names})"
    expected = (
        f"{len(required)}" if len(required) == len(placeholders)
        else f"{len(required)} to {len(placeholders)}"
    )
    raise InvalidInputError(
        f"example_inputs has {len(inputs)} input(s) but {signature} takes {expected} "
        f"positional tensor input(s) ({names}). Pass one tensor or shape per argument, as a tuple."
    )
