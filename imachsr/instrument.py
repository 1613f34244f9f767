"""Rewrite a model so one forward also returns the features at chosen nodes.

``instrument`` copies the traced fx graph, makes its output ``(original_output, {tap: node})``
and compiles it. The compiled forward runs with the traced root as ``self``: a shallow copy
of the user's model that shares its ``_modules``, ``_parameters`` and ``_buffers`` dicts. So the
tapped model computes with the user's live parameters and buffers (after ``.to()``, after
loading a checkpoint), holds no copies, and leaves the user's model untouched. Where fx
cannot trace the model's root (the analysis then records one eager run), taps on modules are
read with forward hooks that are attached only for the duration of each call.
"""

from __future__ import annotations

import difflib
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn

import tapfinder
from tapfinder.errors import TraceFailure
from tapfinder.graph import ArchGraph
from tapfinder.taps.selection import Tap

__all__ = ["instrument", "TappedModel", "resolve_taps", "hooked_modules", "HookFallbackWarning"]


class HookFallbackWarning(UserWarning):
    """fx could not trace the model; module taps use forward hooks instead."""


class TappedModel(nn.Module):
    """``out, feats = tapped(*inputs)``: the model's output and an ordered dict of tap features.

    The user's model is the only registered child (``tapped.model``), so parameters, buffers,
    ``train()``/``eval()`` and ``.to()`` all act on it, and ``tapped.model.state_dict()`` has the
    original keys.

    Attributes
    ----------
    taps
        Tap names in order; the keys of ``feats``.
    arch
        The :class:`tapfinder.ArchGraph` the taps refer to (``None`` in hook mode).
    """

    # Set with object.__setattr__ (not registered as modules or buffers); declared for readers.
    arch: ArchGraph | None
    _trace_options: dict[str, Any]
    _programs: dict[tuple[Any, ...], tuple[Any, nn.Module]]
    _flag_modules: tuple[nn.Module, ...]

    def __init__(
        self,
        model: nn.Module,
        taps: Sequence[str],
        *,
        arch: ArchGraph | None,
        trace_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.taps = tuple(taps)
        # Not registered: the generated code and the root only borrow the model's own state.
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "_trace_options", trace_options or {})
        object.__setattr__(self, "_programs", {})
        # The modules whose training flags select a compiled graph (listed once: walking the
        # module tree on every call would cost more than reading the flags).
        object.__setattr__(self, "_flag_modules", tuple(model.modules()))
        if arch is not None:
            self._programs[self._program_key(_input_shapes(arch))] = _compile(arch, self.taps)

    @property
    def uses_hooks(self) -> bool:
        return self.arch is None

    def forward(self, *inputs: Any, **kwargs: Any) -> tuple[Any, OrderedDict[str, torch.Tensor]]:
        traced = self.arch.traced if self.arch is not None else None
        if traced is None:
            return self._forward_with_hooks(*inputs, **kwargs)
        tensors = traced.call.flatten(inputs, kwargs, self.model)
        code, root = self._program(tensors, inputs, kwargs)
        output, features = code(root, *tensors)
        output = traced.call.restore_output(output)  # fx makes ModelOutput a dict
        return output, OrderedDict((name, features[name]) for name in self.taps)

    def _program(self, tensors: list[torch.Tensor], inputs: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[Any, nn.Module]:
        """The compiled graph for the model's current training flags and these inputs.

        fx freezes what the code read while tracing: ``F.dropout(x, p, self.training)``,
        stochastic depth and ``if self.training:`` branches keep the mode of the trace, and a
        graph with shape guards holds only for the traced input shapes. So the model is traced
        again (once for each combination) when its flags or, for a shape-specialised graph, the
        input shapes differ from those of a compiled graph.
        """
        shapes = tuple(tuple(t.shape) for t in tensors)
        key = self._program_key(shapes)
        if key not in self._programs:
            self._programs[key] = self._retrace(tapfinder.Inputs(*inputs, **kwargs), shapes)
        return self._programs[key]

    def _program_key(self, shapes: tuple[Any, ...]) -> tuple[Any, ...]:
        flags = tuple(module.training for module in self._flag_modules)
        return flags, shapes if self.arch is not None and self.arch.shape_guards else None

    def _retrace(self, inputs: tapfinder.Inputs, shapes: tuple[Any, ...]) -> tuple[Any, nn.Module]:
        assert self.arch is not None  # only a traced model compiles programs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tapfinder.AutoLeafWarning)  # told at the first trace
            arch = tapfinder.trace(self.model, inputs, **self._trace_options)
        moved = [name for name in self.taps if name not in arch.graph
                 or arch[name]["scope"] != self.arch[name]["scope"]
                 or arch[name]["target"] != self.arch[name]["target"]]
        if moved:
            guards = "; ".join(str(g) for g in self.arch.shape_guards) or "none"
            raise ValueError(
                f"In its current mode (training={self.model.training}) and with inputs of shapes "
                f"{shapes}, the model runs other code than when it was traced (input shapes "
                f"{_input_shapes(self.arch)}; shape guards: {guards}), and taps {moved} are not "
                "the same operations there. Instrument again in the mode and with example inputs "
                "of the shape you will run."
            )
        return _compile(arch, self.taps)

    def _forward_with_hooks(self, *inputs: Any, **kwargs: Any) -> tuple[Any, OrderedDict]:
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for path in self.taps:
            def remember(module: nn.Module, args: Any, output: Any, path: str = path) -> None:
                captured[path] = output[0] if isinstance(output, (tuple, list)) else output

            handles.append(self.model.get_submodule(path).register_forward_hook(remember))
        try:
            output = self.model(*inputs, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        missing = [p for p in self.taps if p not in captured]
        if missing:
            raise RuntimeError(f"Tapped modules {missing} did not run in this forward pass.")
        return output, OrderedDict((p, captured[p]) for p in self.taps)


def resolve_taps(arch: ArchGraph, taps: Iterable[str | Tap]) -> list[str]:
    """Turn tap names, :class:`tapfinder.Tap` objects and module paths into fx node names.

    A module path names its ``call_module`` node (the first tensor element when the module
    returns a tuple), or, for a module that was traced through, its last tensor node: the
    block's output.

    Raises
    ------
    ValueError
        For a name that is neither a node nor a module that ran, with close matches; for a node
        that is not a tensor; for duplicates.
    """
    nodes = []
    block_outputs: dict[str, str] = {}
    for name, attrs in arch.graph.nodes(data=True):
        if attrs["value"] == "tensor":
            for path in attrs["scope"]:
                block_outputs[path] = name
    for tap in taps:
        name = tap.node if isinstance(tap, Tap) else tap
        if not isinstance(name, str):
            raise ValueError(f"Taps are node names, module paths or tapfinder.Tap; got {tap!r}.")
        if name not in arch.graph:
            if name not in block_outputs:
                known = [*arch.graph.nodes, *block_outputs]
                close = difflib.get_close_matches(name, known, n=4)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ValueError(
                    f"Unknown tap {name!r}: not a node of the traced graph nor a module that "
                    f"ran.{hint} List nodes with tapfinder.trace(model, inputs).graph.nodes."
                )
            call = next(
                (n for n, a in arch.graph.nodes(data=True)
                 if a["op"] == "call_module" and a["module"] == name),
                None,
            )
            name = block_outputs[name] if call is None else _first_tensor(arch, call)
        if arch[name]["value"] != "tensor":
            raise ValueError(
                f"Tap {name!r} produces a {arch[name]['value']}, not a tensor; tap one of its "
                "tensor elements (a getitem node) instead."
            )
        nodes.append(name)
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"Taps resolve to duplicate nodes: {nodes}.")
    if not nodes:
        raise ValueError("No taps given.")
    return nodes


def _first_tensor(arch: ArchGraph, name: str) -> str:
    """The node itself, or the first tensor element taken from it (a module returning a tuple)."""
    if arch[name]["value"] == "tensor":
        return name
    return next((u for u in arch.graph.successors(name) if arch[u]["value"] == "tensor"), name)


def instrument(
    model: nn.Module,
    taps: Iterable[str | Tap],
    example_inputs: Any,
    *,
    arch: ArchGraph | None = None,
    **trace_options: Any,
) -> TappedModel:
    """Return a :class:`TappedModel` computing ``model``'s output and the tapped features.

    Parameters
    ----------
    model
        The user's module; it is not modified and its parameters are shared, not copied.
    taps
        fx node names (functional ops such as a residual ``add`` included), module paths or
        :class:`tapfinder.Tap` objects.
    example_inputs
        As for :func:`tapfinder.trace`.
    arch
        A trace of ``model`` to reuse (saves tracing again).

    Raises
    ------
    ValueError
        For unknown taps (with close matches).

    Examples
    --------
    >>> tapped = instrument(model, ["layer1", "add_3"], (1, 3, 224, 224))  # doctest: +SKIP
    >>> out, feats = tapped(x)  # doctest: +SKIP
    """
    taps = list(taps)
    if arch is None:
        try:
            arch = tapfinder.trace(model, example_inputs, **trace_options)
        except TraceFailure as error:
            return _hook_fallback(model, taps, error)
    if arch.shape_mode == "eager":  # fx could not trace the root: the model runs eagerly
        return TappedModel(model, hooked_modules(arch, taps, model), arch=None)
    return TappedModel(model, resolve_taps(arch, taps), arch=arch, trace_options=trace_options)


def hooked_modules(arch: ArchGraph, taps: Iterable[str | Tap], model: nn.Module) -> list[str]:
    """The module paths whose outputs are ``taps`` in a graph recorded from an eager run. A
    module path of ``model`` is taken as it is, even where the recorded run did not call it.

    Raises
    ------
    ValueError
        For a tap that no module returns (a functional operation between modules), naming the
        module outputs nearby.
    """
    paths = []
    modules = {path for path, _ in model.named_modules() if path}
    for tap in taps:
        if isinstance(tap, str) and tap in modules:
            paths.append(tap)
            continue
        node = resolve_taps(arch, [tap])[0]
        path = arch[node].get("hook")
        if path is None:
            nearby = [arch[n]["hook"] for n in arch.graph.predecessors(node) if arch[n].get("hook")]
            hint = f" The modules feeding it: {', '.join(map(repr, nearby))}." if nearby else ""
            raise ValueError(
                f"Tap {node!r} is not the output of a module. fx could not trace "
                f"{arch.model_name}, so it runs eagerly and taps are read with forward hooks: "
                f"tap a module's output instead.{hint}"
            )
        paths.append(path)
    return paths


def _input_shapes(arch: ArchGraph) -> tuple[tuple[int, ...] | None, ...]:
    return tuple(arch[name]["shape"] for name in arch.inputs)


def _compile(arch: ArchGraph, taps: Sequence[str]) -> tuple[Any, nn.Module]:
    """The tapped graph's generated forward and the traced root it runs on."""
    traced = arch.traced
    if traced is None:
        raise ValueError("a graph loaded from JSON holds no traced model: trace the model to "
                         "instrument it.")
    graph = _graph_with_taps(traced.graph, taps, traced.root)
    return type(fx.GraphModule(traced.root, graph)).forward, traced.root


def _graph_with_taps(graph: fx.Graph, taps: Sequence[str], root: nn.Module) -> fx.Graph:
    """The graph, returning ``(output, {tap: value})``. A tap whose tensor a later in-place
    operation changes (``ReLU(inplace=True)`` after a tapped BatchNorm, ``out += identity``) is
    cloned where it is computed, so the feature is the tap's value, not the later one."""
    mutated = _mutated_later(graph, root)
    copy = fx.Graph()
    values: dict[str, fx.Node] = {}
    tapped: dict[str, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "output":
            output = fx.map_arg(node.args[0], lambda n: values[n.name])
            copy.output((output, {name: tapped[name] for name in taps}))
            continue
        values[node.name] = copy.node_copy(node, lambda n: values[n.name])
        if node.name in taps:
            tapped[node.name] = (copy.call_method("clone", (values[node.name],))
                                 if node.name in mutated else values[node.name])
    return copy


_INPLACE_OPERATORS = {"iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "iand",
                      "ior", "ixor", "ilshift", "irshift", "imatmul", "setitem"}


def _mutated_later(graph: fx.Graph, root: nn.Module) -> set[str]:
    """Names of the nodes whose tensor an in-place operation changes after the node has run.

    An in-place operation's result is its first argument, so results chain back to the tensor
    they alias; a mutation of any alias after a node marks that node."""
    def in_place(node: fx.Node) -> bool:
        if not node.args or not isinstance(node.args[0], fx.Node):
            return False
        if node.op == "call_module":
            return getattr(root.get_submodule(str(node.target)), "inplace", False) is True
        if node.op == "call_method":
            return str(node.target).endswith("_") and not str(node.target).startswith("_")
        if node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            return node.kwargs.get("inplace") is True or name in _INPLACE_OPERATORS
        return False

    aliases: dict[fx.Node, list[str]] = {}  # a tensor's first node -> the nodes that alias it
    base: dict[fx.Node, fx.Node] = {}
    mutated: set[str] = set()
    for node in graph.nodes:
        if in_place(node):
            base[node] = base[node.args[0]]
            mutated.update(aliases[base[node]])
        else:
            base[node] = node
        aliases.setdefault(base[node], []).append(node.name)
    return mutated


def _hook_fallback(model: nn.Module, taps: list[str | Tap], error: TraceFailure) -> TappedModel:
    paths = dict(model.named_modules())
    for tap in taps:
        name = tap.node if isinstance(tap, Tap) else tap
        if name not in paths or not name:
            close = difflib.get_close_matches(str(name), list(paths), n=4)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"fx could not trace {type(model).__name__}, so taps must be module paths for "
                f"forward hooks; {name!r} is not one.{hint}"
            ) from error
    warnings.warn(
        f"fx could not trace {type(model).__name__} ({str(error).splitlines()[0]}); taps use "
        "forward hooks on the named modules instead.",
        HookFallbackWarning,
        stacklevel=3,
    )
    return TappedModel(model, [t.node if isinstance(t, Tap) else t for t in taps], arch=None)
