"""A graph of one eager run, for models whose root ``forward`` torch.fx cannot trace.

torchvision's detection models loop over their region proposals and targets in the root
``forward``; fx cannot follow that, and no submodule can be made a leaf around it. Instead of
giving up, :func:`record_eager_run` runs the model once on random inputs of the example's shapes
(no gradients, the model restored afterwards) and records what ran, as fx would have: each leaf
module call (``torch.nn`` layers) as a ``call_module`` node, each torch function and tensor
method called outside them as a ``call_function`` or ``call_method`` node, with edges where a
node's tensor is another's input and the enclosing module paths as scope. The rules then see
the same kind of graph as after a trace.

What is coarser than a trace: the graph is that one run (branches and loop counts as the
random example took them); it cannot be run as a ``GraphModule``; and since the model then runs
eagerly, features are read with forward hooks, so a tap must be the output of a module.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from .call_binding import CallSpec
from .example_inputs import Inputs, random_inputs, tensors_in
from .fx_tracer import MODULE_OUTPUT_META_KEY, SCOPE_META_KEY, ScopeTracer, TracedModel
from .model_state import preserved_state
from .shape_propagation import ValueInfo, describe_value

__all__ = ["record_eager_run"]


def record_eager_run(
    model: nn.Module, call: CallSpec, example_inputs: tuple[torch.Tensor, ...]
) -> tuple[TracedModel, dict[str, ValueInfo]]:
    """Run ``model`` once as ``call`` on ``example_inputs`` (those given only as shapes drawn at
    random from seed 0, so the record is reproducible) and return
    the recorded graph (as a :class:`TracedModel` with ``eager=True``) and each node's value.

    Raises
    ------
    RuntimeError
        When the model is on the ``meta`` device (it cannot run), or fails on the inputs.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if device.type == "meta":
        raise RuntimeError("the model is on the meta device, so it cannot run once to be recorded")
    with torch.random.fork_rng(devices=[]):  # the same record every time; the caller's RNG kept
        torch.manual_seed(0)
        drawn = random_inputs(Inputs(*example_inputs), device).args
    # Tensors the user gave are used as they are (a detector's target boxes must be valid);
    # inputs given as shapes are random.
    tensors = tuple(random if given.is_meta else given.to(device)
                    for given, random in zip(example_inputs, drawn))
    args, kwargs = call.rebuild(tensors)
    recording = _Recording(model, call.names, tensors)
    with preserved_state(model), torch.no_grad(), recording.hooks(), _FunctionRecorder(recording):
        output = model(*args, **kwargs)
    recording.finish(output)
    traced = TracedModel(recording.root, recording.graph, {}, [], call, eager=True)
    return traced, recording.infos


class _Recording:
    """The graph being recorded: nodes, the node that last produced each live tensor, the
    module scope and whether a leaf module is running."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...],
                 inputs: tuple[torch.Tensor, ...]) -> None:
        self.model = model
        self.root = object.__new__(type(model))
        self.root.__dict__.update(model.__dict__)
        self.graph = fx.Graph()
        self.infos: dict[str, ValueInfo] = {}
        self.producers: dict[int, fx.Node] = {}
        self.alive: list[Any] = []  # keeps recorded tensors alive, so their ids stay unique
        self.scope: list[str] = []
        self.leaf_depth = 0
        self.module_outputs: dict[str, fx.Node] = {}  # in the order the last calls returned
        self.state_paths = {id(t): name for name, t in
                            [*model.named_parameters(), *model.named_buffers()]}
        self._leaf_rule = ScopeTracer()
        for name, tensor in zip(input_names, inputs):
            self._add("placeholder", name, (), {}, tensor, name=name)

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        for path, module in self.model.named_modules():
            if not path:
                continue
            leaf = self._leaf_rule.is_leaf_module(module, path)
            handles.append(module.register_forward_pre_hook(
                lambda m, a, k, path=path, leaf=leaf: self._enter(path, leaf), with_kwargs=True))
            handles.append(module.register_forward_hook(
                lambda m, a, k, out, path=path, leaf=leaf: self._leave(path, leaf, a, k, out),
                with_kwargs=True, always_call=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _enter(self, path: str, leaf: bool) -> None:
        if self.leaf_depth == 0:
            self.scope.append(path)
        if leaf or self.leaf_depth:
            self.leaf_depth += 1

    def _leave(self, path: str, leaf: bool, args: tuple, kwargs: dict, output: Any) -> None:
        if self.leaf_depth > 1 or (self.leaf_depth == 1 and not leaf):
            self.leaf_depth -= 1
            return
        if self.leaf_depth == 1:  # the outermost leaf: one node for the whole call
            self.leaf_depth = 0
            self._add("call_module", path, args, kwargs, output, name=path.replace(".", "_"))
        first = next(iter(tensors_in(output)), None)
        producer = self.producers.get(id(first)) if first is not None else None
        # A module called again replaces its entry: a hook reads a module's last call.
        self.module_outputs.pop(path, None)
        if producer is not None:
            self.module_outputs[path] = producer
        self.scope.pop()

    def record_function(self, function: Any, args: tuple, kwargs: dict, result: Any) -> None:
        if self.leaf_depth or next(tensors_in(result), None) is None:
            return
        op, target = _operation(function)
        self._add(op, target, args, kwargs, result, name=None)

    def _add(self, op: str, target: Any, args: tuple, kwargs: dict, value: Any,
             name: str | None) -> fx.Node:
        args, kwargs = self._arguments(args), self._arguments(kwargs)
        node = self.graph.create_node(op, target, args, kwargs, name=name)
        node.meta[SCOPE_META_KEY] = tuple(self.scope)
        self.infos[node.name] = describe_value(value)
        if isinstance(value, torch.Tensor):
            self._produced(value, node)
        else:  # a module returning a tuple, list or dict: one getitem node per tensor in it
            for key, tensor in _keyed_tensors(value):
                item = self.graph.create_node("call_function", operator.getitem, (node, key),
                                              {})
                item.meta[SCOPE_META_KEY] = node.meta[SCOPE_META_KEY]
                self.infos[item.name] = describe_value(tensor)
                self._produced(tensor, item)
        return node

    def _produced(self, tensor: torch.Tensor, node: fx.Node) -> None:
        self.producers[id(tensor)] = node
        self.alive.append(tensor)

    def _arguments(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if id(value) in self.producers:
                return self.producers[id(value)]
            if id(value) in self.state_paths:  # a parameter or buffer used outside a layer
                node = self.graph.create_node("get_attr", self.state_paths[id(value)])
                node.meta[SCOPE_META_KEY] = tuple(self.scope)
                self.infos[node.name] = describe_value(value)
                self._produced(value, node)
                return node
            return value
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return type(value)(self._arguments(item) for item in value)
        if isinstance(value, dict):
            return {key: self._arguments(item) for key, item in value.items()}
        return value

    def finish(self, output: Any) -> None:
        for path, producer in self.module_outputs.items():  # innermost modules return first
            producer.meta.setdefault(MODULE_OUTPUT_META_KEY, []).append(path)
        node = self.graph.output(self._arguments(output))
        self.infos[node.name] = describe_value(output)


class _FunctionRecorder(TorchFunctionMode):
    """Sees every torch function and tensor method the model calls."""

    def __init__(self, recording: _Recording) -> None:
        super().__init__()
        self.recording = recording

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.recording.record_function(func, args, kwargs, result)
        return result


def _operation(function: Any) -> tuple[str, Any]:
    """The fx op and target a trace would record for this function: ``operator.add`` for
    ``Tensor.__add__``, the method name for other tensor methods, the function otherwise."""
    name = getattr(function, "__name__", "")
    qualname = getattr(function, "__qualname__", "")
    if name.startswith("__") and name.endswith("__"):
        bare = name.strip("_")
        for candidate in (bare, bare[1:] if bare.startswith("r") else bare):
            if hasattr(operator, candidate):
                return "call_function", getattr(operator, candidate)
    if qualname.startswith(("Tensor.", "TensorBase.", "_TensorBase.")):
        return "call_method", name
    return "call_function", function


def _keyed_tensors(value: Any) -> Iterator[tuple[Any, torch.Tensor]]:
    """The tensors directly inside a tuple, list or dict, with their index or key."""
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        if isinstance(item, torch.Tensor):
            yield key, item
