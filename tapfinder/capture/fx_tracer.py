"""Symbolic tracing that records module scopes and makes untraceable submodules leaves.

``torch.fx`` stops at the first Python construct it cannot follow symbolically (``if x.sum() > 0``,
``for i in range(x.shape[0])`` with a proxy, a call into numpy). Instead of failing the whole
model, :class:`ScopeTracer` catches the failure at the innermost submodule whose ``forward`` raised
it, erases the nodes that forward had started to record, and records that submodule as one opaque
``call_module`` node ("auto-leaf"). Everything around it keeps its full detail, and the trace needs
a single pass however many submodules fail.

Branches on *shapes* (``if h % 32 != 0: raise ...``, ``if H % window: pad``) need no leaf: when
the tracer is given example inputs, a condition is evaluated on meta tensors of the example
shapes, the branch taken is recorded as a :class:`ShapeGuard`, and tracing goes on. The graph is
then specialised to those input shapes, as ``torch.export`` does with static shapes.
"""

from __future__ import annotations

import difflib
import inspect
import operator
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

import torch
from torch import fx, nn

from ..errors import InvalidInputError, TraceFailure
from .call_binding import CallSpec
from .example_inputs import map_leaves
from .model_state import swapped_tensors

# Private, present since torch 2.1; without it shape branches fall back to auto-leaf.
_maybe_revert_all_patches: Any = getattr(fx._symbolic_trace, "_maybe_revert_all_patches", None)

__all__ = ["ScopeTracer", "ShapeGuard", "TracedModel", "RootNotTraced", "SCOPE_META_KEY",
           "CALL_META_KEY", "trace_model"]

SCOPE_META_KEY = "tapfinder_scope"
# Each scope path's call: the path itself for a module's first call, "path@N" for call N + 1.
CALL_META_KEY = "tapfinder_calls"
# In graphs recorded from an eager run: the paths of the modules whose forward returned the
# node's tensor, innermost first (a forward hook on any of them reads it).
MODULE_OUTPUT_META_KEY = "tapfinder_module_output"

_TORCH_DIR = os.path.dirname(torch.__file__)
_OWN_DIR = os.path.dirname(__file__)


class ShapeGuard(NamedTuple):
    """A branch decided from the example inputs' shapes while tracing."""

    location: str
    source: str
    value: bool | int | float

    def __str__(self) -> str:
        return f"{self.location}: `{self.source}` -> {self.value}"


class TracedModel(NamedTuple):
    """What tracing produced: the root the graph refers to, the graph, what tracing decided,
    and the call it was traced for (the graph's placeholders are that call's tensors).

    ``root`` is a shallow copy of the user's model: it shares every submodule, parameter and
    buffer and also holds the tensor constants fx recorded. Building a ``GraphModule`` costs a
    code generation and compile, so analysis runs ``graph`` on ``root`` directly and
    :meth:`graph_module` is called only when a runnable module is wanted.
    """

    root: nn.Module
    graph: fx.Graph
    auto_leaves: dict[str, str]
    shape_guards: list[ShapeGuard]
    call: CallSpec
    eager: bool = False  # the graph records one eager run (tapfinder.capture.eager_record), not a trace

    def graph_module(self) -> fx.GraphModule | None:
        """A runnable module of the graph; ``None`` for the record of an eager run, which
        holds that run's branches and loop counts and so cannot stand for the model."""
        if self.eager:
            return None
        return fx.GraphModule(self.root, self.graph, class_name=type(self.root).__name__)


class _MetaEvaluator:
    """Computes the value of a node of the graph being traced by running its ancestors on meta
    tensors of the example inputs' shapes. Values are memoised, so each node runs at most once."""

    def __init__(self, root: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> None:
        self.root = root
        self.inputs = tuple(torch.empty(t.shape, dtype=t.dtype, device="meta") for t in example_inputs)
        self.interpreter: fx.Interpreter | None = None
        self.state = {
            name: torch.empty_like(t, device="meta")
            for name, t in [*root.named_parameters(), *root.named_buffers()]
        }

    def value(self, node: fx.Node) -> Any:
        if self.interpreter is None:
            self.interpreter = fx.Interpreter(self.root, graph=node.graph)
        env = self.interpreter.env
        pending, stack = [], [node]
        while stack:
            current = stack.pop()
            if current in env or current in pending:
                continue
            pending.append(current)
            stack.extend(current.all_input_nodes)
        order = {n: i for i, n in enumerate(node.graph.nodes)}
        with torch.no_grad(), swapped_tensors(self.root, self.state):
            for current in sorted(pending, key=order.__getitem__):
                env[current] = self._run(current)
        return env[node]

    def _run(self, node: fx.Node) -> Any:
        assert self.interpreter is not None  # set by the value computation that calls this
        if node.op == "get_attr":  # tensor constants fx recorded (a sliced buffer) on meta too
            value = self.interpreter.run_node(node)
            if isinstance(value, torch.Tensor):
                value = torch.empty_like(value, device="meta")
            return value
        if node.op != "placeholder":
            return self.interpreter.run_node(node)
        placeholders = [n for n in node.graph.nodes if n.op == "placeholder"]
        position = placeholders.index(node)
        return self.inputs[position]


class _ShapeProxy(fx.Proxy):
    """A proxy Python may convert with ``int()`` or ``float()`` (``int(n ** 0.5)`` of a token
    count in ConViT, SAM, NesT), use as an index (``range(images.shape[0])`` in torchvision's
    detection transform) or ask the ``len()`` of (``len(x.size())`` in
    ``nn.TransformerEncoder``, ``list(x.shape)``): the tracer computes the number from the
    example shapes."""

    def __int__(self) -> int:
        return _scope_tracer(self)._concrete(self, int, _not_a_number)

    def __index__(self) -> int:  # range(x.shape[0]), a size as a slice bound of a real tensor
        return _scope_tracer(self)._concrete(self, operator.index, _not_a_number)

    def __len__(self) -> int:
        return _scope_tracer(self)._concrete(self, len, _no_length)

    def __getattr__(self, name: str) -> fx.proxy.Attribute:
        return _ShapeAttribute(self, name)  # so that len(x.shape) and list(x.shape) work too


class _ShapeAttribute(fx.proxy.Attribute, _ShapeProxy):
    """fx's lazily recorded attribute (``x.shape``) with the conversions of :class:`_ShapeProxy`."""

    def __float__(self) -> float:
        return _scope_tracer(self)._concrete(self, float, _not_a_number)


def _scope_tracer(proxy: fx.Proxy) -> ScopeTracer:
    """The tracer that made a shape proxy: only :class:`ScopeTracer` makes them."""
    return cast(ScopeTracer, proxy.tracer)


def _no_length(obj: fx.Proxy) -> Any:
    raise RuntimeError(f"len() of the traced value {obj.node.name} needs example inputs")


def _not_a_number(obj: fx.Proxy) -> Any:
    raise fx.proxy.TraceError(
        f"int() or float() of the traced value {obj.node.name} needs example inputs"
    )


class ScopeTracer(fx.Tracer):
    """An ``fx.Tracer`` that records enclosing module paths and auto-leafs failing submodules.

    Every node gets ``node.meta["tapfinder_scope"]``: the qualified paths of the modules whose
    ``forward`` was running when the node was recorded, outermost first (the root is not listed;
    a leaf module's own path is the last entry of its ``call_module`` node's scope).

    Parameters
    ----------
    leaf_paths
        Qualified module paths to keep opaque.
    leaf_types
        Module classes whose instances are kept opaque.
    example_inputs
        Tensors whose shapes decide shape-dependent branches; without them every branch on a
        traced value fails as in plain ``torch.fx``.
    """

    def __init__(
        self,
        leaf_paths: Iterable[str] = (),
        leaf_types: tuple[type, ...] = (),
        example_inputs: tuple[torch.Tensor, ...] | None = None,
    ) -> None:
        super().__init__()
        self.leaf_paths = set(leaf_paths)
        self.leaf_types = leaf_types
        self.example_inputs = example_inputs
        self.auto_leaves: dict[str, str] = {}
        self.shape_guards: list[ShapeGuard] = []
        self._evaluator: _MetaEvaluator | None = None
        self._parameter_proxy_cache: dict[str, fx.Proxy] | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with _recorded_tensor_constructor(self):
            return super().trace(root, concrete_args)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return self._concrete(obj, bool, super().to_bool)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShapeProxy(node, self)

    def iter(self, obj: fx.Proxy) -> Iterator[fx.Proxy]:
        """Iterate a proxy whose length follows from the example shapes (a ``torch.Size``, a
        tuple a leaf returns) element by element, each element staying symbolic."""
        try:
            value = self._example_value(obj)
        except Exception:  # noqa: BLE001 - not evaluable: fx's own error says why
            return super().iter(obj)
        if not isinstance(value, (tuple, list, torch.Size)):
            return super().iter(obj)
        return iter([operator.getitem(obj, index) for index in range(len(value))])

    def _example_value(self, obj: fx.Proxy) -> Any:
        """``obj``'s value computed on meta tensors of the example inputs' shapes."""
        if self.example_inputs is None or _maybe_revert_all_patches is None:
            raise LookupError("no example inputs to compute values from")
        if self._evaluator is None:
            self._evaluator = _MetaEvaluator(self.root, self.example_inputs)
        with _maybe_revert_all_patches():
            return self._evaluator.value(obj.node)

    def _concrete(self, obj: fx.Proxy, convert: Callable[[Any], Any], fallback: Any) -> Any:
        """The value Python needs here (a branch's bool, an ``int()`` of a size), computed from
        the example shapes and recorded as a shape guard; fx's own error when it depends on
        tensor values."""
        if self.example_inputs is None or _maybe_revert_all_patches is None:
            return fallback(obj)
        try:
            value = convert(self._example_value(obj))
        except Exception as error:
            raise fx.proxy.TraceError(
                "symbolically traced variables cannot be used as inputs to control flow "
                f"(the condition depends on tensor values, not only shapes: {_first_line(error)})"
            ) from error
        frame = _user_frame_of_stack()
        location = f"{frame.filename}:{frame.lineno}" if frame else "<unknown>"
        self.shape_guards.append(ShapeGuard(location, (frame.line or "") if frame else "", value))
        return value

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaf_paths or module_qualified_name in self.auto_leaves:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        if isinstance(m, TRACED_TORCH_STACKS):
            return False  # torch.nn's own, but made of layers: their blocks are the structure
        return super().is_leaf_module(m, module_qualified_name)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, fx.Proxy]) -> Any:
        # fx keeps this cache local to trace(); a rollback must drop proxies of erased nodes.
        self._parameter_proxy_cache = parameter_proxy_cache
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> fx.Node:  # noqa: ANN001
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        node.meta[SCOPE_META_KEY] = tuple(
            dict.fromkeys(path for path, _ in self.module_stack.values())
        )
        # fx keys a module's second and later calls "path@1", "path@2": which call this is.
        node.meta[CALL_META_KEY] = {path: key for key, (path, _) in self.module_stack.items()}
        return node

    def call_module(self, m: nn.Module, forward, args, kwargs) -> Any:  # noqa: ANN001
        try:
            path = self.path_of_module(m)
        except NameError:
            # Not a registered submodule (created inside forward): fx cannot name it, so the
            # error must reach the enclosing module, which then becomes the leaf.
            return super().call_module(m, forward, args, kwargs)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)

        last_node = self._last_node()
        module_stack = self.module_stack.copy()
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as error:  # any failure inside a symbolic forward means "not traceable"
            self._erase_nodes_after(last_node)
            self.module_stack.clear()
            self.module_stack.update(module_stack)
            self.auto_leaves[path] = _first_line(error)
            return super().call_module(m, forward, args, kwargs)

    def _last_node(self) -> fx.Node | None:
        return next(iter(reversed(self.graph.nodes)), None)

    def _erase_nodes_after(self, last_node: fx.Node | None) -> None:
        erased = set()
        for node in reversed(list(self.graph.nodes)):
            if node is last_node:
                break
            self.graph.erase_node(node)
            erased.add(node)
        if self._parameter_proxy_cache:
            for name, proxy in list(self._parameter_proxy_cache.items()):
                if proxy.node in erased:
                    del self._parameter_proxy_cache[name]


@contextmanager
def _recorded_tensor_constructor(tracer: fx.Tracer) -> Iterator[None]:
    """While tracing, ``torch.tensor`` of a traced value (``torch.tensor(num_channels)`` of a
    size, in RAFT) is recorded as a call in the graph, as fx records ``torch`` functions that
    accept proxies; ``torch.tensor`` does not, so fx alone fails on it. Other calls pass through."""
    original = torch.tensor

    def tensor(data: Any, *args: Any, **kwargs: Any) -> Any:
        proxies: list[fx.Proxy] = []
        map_leaves((data, args, kwargs), proxies.append, fx.Proxy)
        if proxies:
            return tracer.create_proxy("call_function", original, (data, *args), kwargs)
        return original(data, *args, **kwargs)

    torch.tensor = tensor
    try:
        yield
    finally:
        torch.tensor = original


# torch.nn modules fx would keep opaque (all of torch.nn is a leaf to it) that are stacks of
# layers: traced into, so that each encoder layer is a block; MultiheadAttention stays one node.
TRACED_TORCH_STACKS = (
    nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder, nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _user_frame(error: BaseException) -> traceback.FrameSummary | None:
    return _last_user_frame(traceback.extract_tb(error.__traceback__))


def _user_frame_of_stack() -> traceback.FrameSummary | None:
    return _last_user_frame(traceback.extract_stack())


def _last_user_frame(frames: traceback.StackSummary) -> traceback.FrameSummary | None:
    # With the separator: torchvision's files must not pass for torch's own.
    internal = (_TORCH_DIR + os.sep, _OWN_DIR + os.sep)
    user_frames = [f for f in frames if not f.filename.startswith(internal)]
    return user_frames[-1] if user_frames else None


class RootNotTraced(TraceFailure):
    """fx could not trace the root module's own ``forward``; the parts of the message are kept
    so that the analysis, which then runs the model once, can say what happened."""

    def __init__(self, model: nn.Module, error: BaseException) -> None:
        frame = _user_frame(error)
        self.model_name = type(model).__name__
        self.error = _first_line(error)
        self.where = (f'\n  File "{frame.filename}", line {frame.lineno}, in {frame.name}:'
                      f"\n    {frame.line}" if frame else "")
        self.fix = _fix(model, frame)
        self.fx_limitation = _is_fx_limitation(error)
        super().__init__(
            f"{self.headline()}\nThe failing code runs in the root module's own forward, so no "
            f"submodule can be made a leaf to get around it. To trace it fully, {self.fix}.")

    def headline(self) -> str:
        """What fx could not trace, and where."""
        return f"torch.fx could not trace {self.model_name}.forward: {self.error}{self.where}"

    def own_code(self) -> TraceFailure:
        """The failure as the model's own: for an error that is not a tracing limit, once the
        model has failed to run as well."""
        return TraceFailure(
            f"{self.model_name}.forward raised {self.error}{self.where}\n"
            "This is the model's own code failing, not a limit of tracing: check that "
            "model(example) runs, and that concrete_args gives the values forward expects.")


def _fix(model: nn.Module, frame: traceback.FrameSummary | None) -> str:
    """The fix that applies to a failure in the root's code at ``frame``. ``concrete_args`` is
    not one: arguments the example leaves out are traced at their real default values already,
    and the example's own arguments are tensors."""
    in_forward = frame is not None and frame.name == "forward" and frame.filename == _source_file(
        type(model).forward)
    where = "the code at that line" if in_forward else (
        f"the call in {type(model).__name__}.forward that leads to that line")
    return (f"move {where} into a submodule's forward (tapfinder then keeps that submodule "
            "opaque automatically)")


def _source_file(function: Any) -> str | None:
    try:
        return inspect.getsourcefile(inspect.unwrap(function))
    except TypeError:
        return None


def _is_fx_limitation(error: BaseException) -> bool:
    """Whether tracing, rather than the model, failed: fx's own errors, or Python refusing an
    operation on a Proxy (iteration, ``len``, a value-dependent ``bool``)."""
    text = str(error)
    return isinstance(error, fx.proxy.TraceError) or any(
        word in text for word in ("symbolic", "Proxy", "proxy", "traced", "argument of type"))


def resolve_leaf_modules(
    model: nn.Module, leaf_modules: Iterable[str | type]
) -> tuple[set[str], tuple[type, ...]]:
    """Split ``leaf_modules`` into known module paths and module classes, validating both."""
    if isinstance(leaf_modules, (str, type)):
        leaf_modules = (leaf_modules,)
    paths: set[str] = set()
    types: list[type] = []
    known_paths = None
    for item in leaf_modules:
        if isinstance(item, type) and issubclass(item, nn.Module):
            types.append(item)
        elif isinstance(item, str):
            if known_paths is None:
                known_paths = [name for name, _ in model.named_modules() if name]
            if item not in known_paths:
                close = difflib.get_close_matches(item, known_paths, n=3)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise InvalidInputError(
                    f"leaf_modules names {item!r}, which is not a submodule path of "
                    f"{type(model).__name__}.{hint} Paths are as in model.named_modules()."
                )
            paths.add(item)
        else:
            raise InvalidInputError(
                f"leaf_modules items must be module paths (str) or nn.Module subclasses; "
                f"got {type(item).__name__} {item!r}."
            )
    return paths, tuple(types)


def trace_model(
    model: nn.Module,
    call: CallSpec,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    leaf_modules: Iterable[str | type] = (),
) -> TracedModel:
    """Trace ``model`` called as ``call`` into an fx graph whose placeholders are the call's
    tensors, over a root that shares the model's submodules, parameters and buffers.

    ``example_inputs`` are the call's tensors in order; their shapes decide shape-dependent
    branches. The result also lists the auto-leafed module paths, each mapped to the error that
    made it a leaf, and those branches. Raises :class:`TraceFailure` when the root module's own
    code cannot be traced. The user's module object is never modified: fx stores tensor
    constants on the traced root, a shallow copy of the model.
    """
    leaf_paths, leaf_types = resolve_leaf_modules(model, leaf_modules)
    tracer = ScopeTracer(leaf_paths, leaf_types, example_inputs)
    root = call.traceable_root(model)
    try:
        graph = tracer.trace(root)
    except TraceFailure:
        raise
    except Exception as error:
        raise RootNotTraced(model, error) from error
    return TracedModel(root, graph, dict(tracer.auto_leaves), list(tracer.shape_guards), call)
