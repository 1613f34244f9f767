"""``tapfinder.trace``: any ``nn.Module`` to an annotated :class:`~tapfinder.graph.ArchGraph`."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError, TraceFailure
from ..graph import ArchGraph
from ..graph.annotate import build_arch_graph
from .call_binding import CallSpec
from .eager_record import record_eager_run
from .example_inputs import Inputs, normalize_example_inputs
from .fx_tracer import RootNotTraced, TracedModel, trace_model
from .model_state import preserved_state
from .shape_propagation import ShapeMode, propagate_shapes

__all__ = ["trace", "AutoLeafWarning", "EagerGraphWarning"]


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
        The call to trace: a tensor or a shape such as ``(1, 3, 224, 224)``; a tuple with one
        item per positional argument of ``forward``; a dict of keyword arguments
        (``{"pixel_values": x}``); or :class:`tapfinder.Inputs` for both. Items may be tensors,
        shapes, ``None`` or nested lists, tuples and dicts of those (a detection model's list of
        images). Arguments the call leaves out keep their defaults, and a ``forward`` that
        reads ``**kwargs`` gets a real dict. Only shape and dtype are used; shapes become
        tensors of the model's floating dtype. The graph's placeholders (``ArchGraph.inputs``)
        are the call's tensors in order, named after their arguments (``images_0``).
    leaf_modules
        Submodule paths (``"layer1.0"``) or module classes to keep as single opaque nodes.
    concrete_args
        Values for ``forward`` arguments to pass as constants while tracing (flags that choose
        a branch).

    Returns
    -------
    ArchGraph
        The annotated graph. Submodules that fx could not trace are made leaves automatically
        (listed in ``ArchGraph.leaves``, with an :class:`AutoLeafWarning`). Branches on input
        shapes (``if h % 32: ...``) are decided for the example shapes and listed in
        ``ArchGraph.shape_guards``: the graph is specialised to those shapes. Where the root
        module's own forward cannot be traced (a loop over detections), the graph records one
        eager run instead (``shape_mode == "eager"``, see :mod:`tapfinder.capture.eager_record`), with an
        :class:`EagerGraphWarning` that names the line fx stopped at.

    Raises
    ------
    InvalidInputError
        ``model`` is not a module, or ``example_inputs``, ``leaf_modules`` or ``concrete_args``
        are malformed or do not match ``forward``'s arguments.
    TraceFailure
        The root module's own forward cannot be traced and the model cannot run once to be
        recorded either (it is on the meta device, or fails); the message names the line.
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
    if concrete_args is not None and not isinstance(concrete_args, dict):
        raise InvalidInputError(
            f"concrete_args must be a dict mapping forward argument names to values; "
            f"got {type(concrete_args).__name__}."
        )
    inputs = _match_model_dtype(normalize_example_inputs(example_inputs), model)
    call = CallSpec.bind(model, inputs, concrete_args)
    tensors = tuple(inputs.tensors())
    shape_mode: ShapeMode
    try:
        with preserved_state(model):  # tracing runs the model's Python, which may change it
            traced = trace_model(model, call, tensors, leaf_modules=leaf_modules)
            infos, shape_mode = propagate_shapes(traced, tensors)
    except RootNotTraced as failure:
        traced, infos = _eager_record_or_raise(model, call, tensors, failure)
        shape_mode = "eager"
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


class EagerGraphWarning(UserWarning):
    """fx could not trace the model's root; the graph records one eager run instead."""


def _eager_record_or_raise(model: nn.Module, call: CallSpec, tensors: tuple[torch.Tensor, ...],
                           failure: RootNotTraced) -> tuple[TracedModel, dict]:
    """The graph of one eager run in place of a trace, with a warning that says what it lacks.
    Where the model cannot run either, the trace's failure: as the model's own when its error
    is not a tracing limit, else with why the run failed too."""
    try:
        traced, infos = record_eager_run(model, call, tensors)
    except Exception as error:  # noqa: BLE001 - the trace's failure says more
        if not failure.fx_limitation:
            raise failure.own_code() from failure
        raise TraceFailure(f"{failure}\nRunning the model once to record it instead failed "
                           f"too: {type(error).__name__}: {error}") from failure
    warnings.warn(
        f"{failure.headline()}\ntapfinder recorded one eager run on random inputs of the "
        "example's shapes instead. That graph holds the branches and loop counts of that run, "
        "cannot run as a GraphModule, and taps are read with forward hooks, so they must be "
        f"module outputs. To trace it fully, {failure.fix}.",
        EagerGraphWarning, stacklevel=3)
    return traced, infos


def _match_model_dtype(inputs: Inputs, model: nn.Module) -> Inputs:
    """Give inputs that were only shapes the model's floating dtype (bf16 models get bf16)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if dtype == torch.float32:
        return inputs
    return inputs.map_tensors(
        lambda t: t.to(dtype) if t.is_meta and t.dtype == torch.float32 else t)
