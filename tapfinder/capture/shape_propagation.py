"""Shape and dtype propagation through a traced graph, without running real convolutions.

The graph runs on tensors that carry shape, dtype and device but no data, so analysing a model
costs almost no compute and works when its weights live on the ``meta`` device. The model's own
parameters and buffers are swapped for data-free ones for the duration, which also keeps
BatchNorm's running statistics untouched in training mode. Three modes are tried in turn:

1. ``meta``: every tensor on the meta device; the fastest (C++ shape functions only).
2. ``fake``: ``FakeTensorMode``, which keeps each tensor's real device, for models that create
   tensors on the CPU inside ``forward`` and combine them with their inputs (meta and CPU
   tensors do not mix).
3. ``real``: code whose result depends on tensor *values* (``if x.sum() > 0`` inside a leaf
   module) cannot run without data; such models get one real no-grad pass on random inputs, with
   buffers cloned and the random-number state restored afterwards. Models whose weights are on
   the meta device cannot, and get the first error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensorMode

from ..errors import ShapePropagationError
from .fx_tracer import TracedModel
from .model_state import swapped_tensors
from .shape_formulas import binary_output, layer_output

__all__ = ["ShapeMode", "ValueInfo", "propagate_shapes"]

# How the shapes were obtained: meta tensors (no compute), fake tensors (models that mix
# devices), one real no-grad pass (value-dependent code in a leaf), or one recorded eager run
# (the root could not be traced).
ShapeMode = Literal["meta", "fake", "real", "eager"]


class ValueInfo(NamedTuple):
    """What one node produced.

    ``kind`` is ``"tensor"``, ``"tuple"``, ``"list"``, ``"dict"``, ``"scalar"``, ``"none"`` or
    ``"other"``. ``shape`` is a tuple of ints for a tensor; for a tuple or list, a tuple with one
    shape per element (``None`` for non-tensors, nested for nested containers); for a dict, a dict
    of shapes. ``dtype`` is the tensor's dtype name (``"float32"``), or that of a container's first
    tensor element.
    """

    kind: str
    shape: Any
    dtype: str | None


def describe_value(value: Any) -> ValueInfo:
    """Summarise a node's output as a :class:`ValueInfo`."""
    if isinstance(value, torch.Tensor):
        return ValueInfo("tensor", tuple(int(d) for d in value.shape), _dtype_name(value.dtype))
    if isinstance(value, (tuple, list)):
        elements = [describe_value(v) for v in value]
        kind = "list" if isinstance(value, list) else "tuple"
        return ValueInfo(kind, tuple(i.shape for i in elements), _first_dtype(elements))
    if isinstance(value, dict):
        entries = {str(k): describe_value(v) for k, v in value.items()}
        return ValueInfo(
            "dict", {k: i.shape for k, i in entries.items()}, _first_dtype(list(entries.values()))
        )
    if isinstance(value, (bool, int, float, complex, torch.SymInt)):
        return ValueInfo("scalar", None, None)
    if value is None:
        return ValueInfo("none", None, None)
    return ValueInfo("other", None, None)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _first_dtype(items: list[ValueInfo]) -> str | None:
    return next((i.dtype for i in items if i.dtype is not None), None)


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps a :class:`ValueInfo` per node, naming the node that fails."""

    def __init__(self, traced: TracedModel, *, use_shape_rules: bool) -> None:
        super().__init__(traced.root, garbage_collect_values=True, graph=traced.graph)
        self.infos: dict[str, ValueInfo] = {}
        self.use_shape_rules = use_shape_rules

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        if self.use_shape_rules:
            output = layer_output(self.fetch_attr(target), args, kwargs)
            if output is not None:
                return output
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        if self.use_shape_rules:
            output = binary_output(target, args, kwargs)
            if output is not None:
                return output
        # fx hands a node's list arguments over as immutable lists; the generated code builds
        # fresh lists, which functions may change (swin3d's _get_window_and_shift_size does).
        return super().call_function(target, _mutable(args), _mutable(kwargs))

    def run_node(self, node: fx.Node) -> Any:
        try:
            result = super().run_node(node)
        except ShapePropagationError:
            raise
        except Exception as error:
            raise _node_failure(node, self.module, error) from error
        info = describe_value(result)
        self.infos[node.name] = info
        # Error messages quote the shapes of a failing node's inputs.
        node.meta["tapfinder_shape"] = info.shape
        return result


def _mutable(value: Any) -> Any:
    """``value`` with fx's immutable lists and dicts (at any depth) as plain ones."""
    if isinstance(value, list):
        return [_mutable(item) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_mutable(item) for item in value)
    if isinstance(value, dict):
        return {key: _mutable(item) for key, item in value.items()}
    return value


def _node_failure(node: fx.Node, root: torch.nn.Module, error: Exception) -> Exception:
    inputs = ", ".join(
        f"{arg.name}: {tuple(arg.meta['tapfinder_shape'])}"
        for arg in node.all_input_nodes
        if isinstance(arg.meta.get("tapfinder_shape"), tuple)
    )
    what = node.target if node.op != "call_module" else (
        f"{node.target} ({type(root.get_submodule(str(node.target))).__name__})"
    )
    message = str(error).strip().splitlines()
    return ShapePropagationError(
        f"Running the model on the example inputs' shapes failed at node {node.name!r} "
        f"[{node.op} {what}]: {type(error).__name__}: {message[0] if message else ''}\n"
        f"  input shapes: {inputs or 'n/a'}\n"
        "Check that example_inputs has the rank, sizes and dtype the model expects "
        "(a batch of 2 avoids BatchNorm's 'more than 1 value per channel' error in training mode)."
    )


def propagate_shapes(
    traced: TracedModel, example_inputs: tuple[torch.Tensor, ...]
) -> tuple[dict[str, ValueInfo], ShapeMode]:
    """Return a :class:`ValueInfo` per node name and the mode that worked.

    The mode is ``"meta"``, ``"fake"`` or ``"real"`` (see the module docstring).

    Raises
    ------
    ShapePropagationError
        Naming the node that failed, its inputs' shapes and what to check. When every mode
        fails, the error is the first one's: later modes only add fallbacks for model code.
    """
    tensors = _model_tensors(traced)
    modes: list[ShapeMode] = ["meta", "fake"]
    if not any(t.is_meta for t in tensors.values()):
        modes.append("real")
    first_error: ShapePropagationError | None = None
    for mode in modes:
        try:
            return _run(traced, tensors, example_inputs, mode), mode
        except ShapePropagationError as error:
            first_error = first_error or error
    assert first_error is not None
    raise first_error


def _model_tensors(traced: TracedModel) -> dict[str, torch.Tensor]:
    """Parameters, buffers and the tensor constants fx recorded, by attribute path."""
    root = traced.root
    tensors: dict[str, torch.Tensor] = dict(root.named_parameters())
    tensors.update(root.named_buffers())
    for node in traced.graph.nodes:
        if node.op == "get_attr" and node.target not in tensors:
            value = root
            for part in str(node.target).split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor):
                tensors[str(node.target)] = value
    return tensors


def _run(
    traced: TracedModel,
    tensors: dict[str, torch.Tensor],
    example_inputs: tuple[torch.Tensor, ...],
    mode: str,
) -> dict[str, ValueInfo]:
    # Shape rules stand in for layers on meta tensors only: fake and real passes are the
    # fallbacks for unusual models and should run the model's own code.
    recorder = _Recorder(traced, use_shape_rules=mode == "meta")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        if mode == "meta":
            meta = torch.device("meta")
            state = {name: _data_free(t, meta) for name, t in tensors.items()}
            inputs = tuple(_data_free(t, meta) for t in example_inputs)
            with swapped_tensors(traced.root, state):
                recorder.run(*inputs)
        elif mode == "fake":
            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            device = next((t.device for t in tensors.values() if not t.is_meta), torch.device("cpu"))
            with fake_mode:
                state = {name: _data_free(t, device) for name, t in tensors.items()}
                inputs = tuple(_data_free(t, device) for t in example_inputs)
            # FakeTensorMode logs a full traceback for each op it cannot run before raising; the
            # error is reported (or the real pass takes over), so the log is noise.
            with swapped_tensors(traced.root, state), fake_mode, _quiet(_FAKE_LOGGER):
                recorder.run(*inputs)
        else:
            state = {name: t.clone() for name, t in traced.root.named_buffers()}
            inputs = tuple(_real_input(t) for t in example_inputs)
            with swapped_tensors(traced.root, state):
                recorder.run(*inputs)
    return recorder.infos


_FAKE_LOGGER = "torch._subclasses.fake_tensor"


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _data_free(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A stand-in with the tensor's shape, strides and dtype: a meta tensor, or a fake one under
    a fake mode (on the tensor's own device unless it is on meta)."""
    target = device if tensor.is_meta or device.type == "meta" else tensor.device
    return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device=target)


def _real_input(tensor: torch.Tensor) -> torch.Tensor:
    if not tensor.is_meta:
        return tensor
    if tensor.dtype.is_floating_point:
        return torch.randn(tensor.shape, dtype=tensor.dtype)
    return torch.zeros(tensor.shape, dtype=tensor.dtype)
