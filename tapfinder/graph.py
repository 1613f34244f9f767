"""``ArchGraph``: a traced model as a ``networkx`` graph annotated with shapes and structure."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import fx, nn
from torch.nn import functional as F

from .layout import infer_layouts
from .shapes import ValueInfo
from .tokens import token_grid
from .tracer import MODULE_OUTPUT_META_KEY, SCOPE_META_KEY, TracedModel

__all__ = ["ArchGraph", "build_arch_graph", "carries_tensors"]

_JSON_FORMAT = "tapfinder.archgraph"
_JSON_VERSION = 1

# Functions that count as a layer when they take a parameter as an input (timm's StdConv2d and
# other modules call these functionally on their own weights).
_WEIGHTED_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, F.bilinear, F.embedding, F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm,
    torch.conv2d, torch.matmul, torch.bmm, torch.addmm, torch.einsum, operator.matmul,
}
_WEIGHTED_METHODS = {"matmul", "mm", "bmm"}


@dataclass
class ArchGraph:
    """A traced architecture: the ``networkx`` graph, its fx ``GraphModule`` and what tracing saw.

    Attributes
    ----------
    graph
        ``networkx.DiGraph`` keyed by fx node name, in topological order. Node attributes:
        ``op``, ``target``, ``module`` (qualified path of the called module, or of the module whose
        forward produced a functional node; ``None`` at the root), ``module_type``, ``scope``
        (enclosing module paths, outermost first), ``value`` (``"tensor"``, ``"tuple"``,
        ``"list"``, ``"dict"``, ``"scalar"``, ``"none"``, ``"other"``), ``shape``, ``dtype``,
        ``layout`` (``"NCHW"``, ``"NCDHW"``, ``"NCL"``, ``"NLC"``, ``"NHWC"`` or ``None``),
        ``channels``, ``spatial`` (spatial sizes, or ``(tokens,)``), ``reduction`` (input spatial
        size / node spatial size), ``params``, ``parametric``, ``layer_index`` (parametric layers
        on the longest path from an input), ``depth`` (``layer_index`` / its maximum) and
        ``on_main_path`` (every path from the inputs to the output passes through the node: it
        dominates the output, a natural block boundary). Graphs recorded from an eager run
        (``shape_mode == "eager"``) also have ``hook``: the path of the module whose output
        the node is (its features can be read with a forward hook there), else ``None``.
    traced
        The fx graph and the root it runs on (sharing the model's submodules, parameters and
        buffers); ``None`` for a graph loaded from JSON. ``graph_module`` builds a runnable
        ``torch.fx.GraphModule`` from it on first use.
    inputs, outputs
        Names of the placeholder nodes and of the nodes the model returns.
    leaves
        Submodules tapfinder made opaque because ``torch.fx`` could not trace them, mapped to the
        error that made each one a leaf.
    module_types
        Class name of every module that ran, by qualified path (``{"layer1.0": "Bottleneck"}``).
    shape_guards
        Branches on input shapes decided for the example inputs while tracing
        (``"file.py:12: `if h % 32 != 0:` -> False"``); the graph holds for those shapes.
    model_name
        The model's class name.
    shape_mode
        ``"fake"`` when shapes came from fake tensors (no compute), ``"real"`` when value-dependent
        code forced one real no-grad pass, ``"eager"`` when fx could not trace the root and the
        graph records one eager run (:mod:`tapfinder.eager`).
    """

    graph: nx.DiGraph
    traced: TracedModel | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    leaves: dict[str, str] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    shape_guards: list[str] = field(default_factory=list)
    model_name: str = ""
    shape_mode: str = "fake"

    @cached_property
    def graph_module(self) -> fx.GraphModule | None:
        """The traced model as a runnable ``GraphModule`` (built once, on first use)."""
        return self.traced.graph_module() if self.traced is not None else None

    def __getitem__(self, name: str) -> dict[str, Any]:
        """Attributes of the node called ``name``."""
        return self.graph.nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def tensor_nodes(self) -> Iterator[str]:
        """Names of the nodes that produce a single tensor, in topological order."""
        return (n for n, attrs in self.graph.nodes(data=True) if attrs["value"] == "tensor")

    @property
    def max_layer_index(self) -> int:
        return max((a["layer_index"] for _, a in self.graph.nodes(data=True)), default=0)

    @cached_property
    def dominators(self) -> dict[str, str | None]:
        """Each node's immediate dominator on the data flowing from the inputs
        (:func:`data_flow_dominators`); computed once, on first use."""
        return data_flow_dominators(self.graph, self.inputs)

    def stages(self) -> list[str]:
        """The last main-path node at each feature stride, in order (timm's rule for stage taps).

        Only nodes every input-to-output path passes through count, so a strided convolution
        inside a block does not end the previous stage early. A stride is a node's ``reduction``
        rounded to an integer.
        """
        last_at_stride: dict[int, str] = {}
        for name in self.tensor_nodes():
            attrs = self[name]
            if attrs["reduction"] is None or not attrs["on_main_path"] or attrs["op"] in (
                "placeholder",
                "output",
            ):
                continue
            last_at_stride[round(attrs["reduction"])] = name
        return sorted(last_at_stride.values(), key=list(self.graph.nodes).index)

    def summary(self) -> str:
        """A one-screen description: sizes, inputs, outputs, auto-leaves and the feature strides."""
        total_params = sum(a["params"] for _, a in self.graph.nodes(data=True))
        layers = sum(1 for _, a in self.graph.nodes(data=True) if a["parametric"])
        lines = [
            f"{self.model_name or 'model'}: {len(self)} graph nodes, {layers} parametric layers, "
            f"longest path {self.max_layer_index} layers, {_count(total_params)} parameters "
            f"(shapes: {self.shape_mode})",
        ]
        for label, names in (("input ", self.inputs), ("output", self.outputs)):
            for name in names:
                attrs = self[name]
                lines.append(f"  {label} {name}: {_shape_text(attrs)}")
        if self.leaves:
            lines.append(f"  auto-leaf ({len(self.leaves)} submodules fx could not trace):")
            for path, reason in list(self.leaves.items())[:5]:
                lines.append(f"    {path}: {reason[:80]}")
            if len(self.leaves) > 5:
                lines.append(f"    ... and {len(self.leaves) - 5} more (see ArchGraph.leaves)")
        if self.shape_guards:
            lines.append(
                f"  {len(self.shape_guards)} branch(es) on input shapes decided for these "
                "shapes (ArchGraph.shape_guards)"
            )
        stages = self.stages()
        if stages:
            lines.append("  feature strides (last node at each stride):")
            lines.append(f"    {'stride':>6}  {'layout':6}  {'shape':22}  {'depth':>5}  node [module]")
            for name in stages:
                attrs = self[name]
                lines.append(
                    f"    {attrs['reduction']:>6g}  {attrs['layout'] or '-':6}  "
                    f"{str(attrs['shape']):22}  {attrs['depth']:>5.2f}  "
                    f"{name} [{attrs['module'] or '-'}]"
                )
        return "\n".join(lines)

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise everything but the ``GraphModule``; write to ``path`` when given.

        Examples
        --------
        >>> restored = ArchGraph.from_json(arch.to_json())  # doctest: +SKIP
        """
        document = {
            "format": _JSON_FORMAT,
            "version": _JSON_VERSION,
            "model_name": self.model_name,
            "shape_mode": self.shape_mode,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "leaves": self.leaves,
            "module_types": self.module_types,
            "shape_guards": self.shape_guards,
            "nodes": [{"name": n, **attrs} for n, attrs in self.graph.nodes(data=True)],
            "edges": [list(edge) for edge in self.graph.edges],
        }
        text = json.dumps(document, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_node_link(self) -> dict[str, Any]:
        """The graph in networkx's node-link form (``{"nodes": [...], "edges": [...]}``), with
        tuples as lists: ready for ``json.dump`` and for d3 or other graph tools."""
        data = nx.node_link_data(self.graph, edges="edges")
        return json.loads(json.dumps(data))

    def to_graphml(self, path: str | Path) -> None:
        """Write a GraphML file (yEd, Gephi, Cytoscape). GraphML holds only scalars, so tuples,
        dicts and ``None`` are written as their JSON text."""
        flat = nx.DiGraph()
        for name, attrs in self.graph.nodes(data=True):
            flat.add_node(name, **{k: _graphml_value(v) for k, v in attrs.items()})
        flat.add_edges_from(self.graph.edges)
        nx.write_graphml(flat, str(path))

    @classmethod
    def from_json(cls, source: str | Path) -> ArchGraph:
        """Load an ``ArchGraph`` written by :meth:`to_json` (a JSON string or a file path).

        The result has ``traced=None``: it supports analysis, not instrumentation.
        """
        text = source
        if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            text = Path(source).read_text()
        document = json.loads(text)
        if document.get("format") != _JSON_FORMAT:
            raise ValueError(
                f"Not a tapfinder ArchGraph document (format {document.get('format')!r}); "
                "write one with ArchGraph.to_json()."
            )
        graph = nx.DiGraph()
        for node in document["nodes"]:
            attrs = {k: _tuples(v) if k in _TUPLE_KEYS else v for k, v in node.items()}
            graph.add_node(attrs.pop("name"), **attrs)
        graph.add_edges_from(tuple(edge) for edge in document["edges"])
        return cls(
            graph=graph,
            traced=None,
            inputs=tuple(document["inputs"]),
            outputs=tuple(document["outputs"]),
            leaves=dict(document["leaves"]),
            module_types=dict(document["module_types"]),
            shape_guards=list(document["shape_guards"]),
            model_name=document["model_name"],
            shape_mode=document["shape_mode"],
        )


_TUPLE_KEYS = ("shape", "scope", "spatial")


def _graphml_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _count(number: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if number >= size:
            return f"{number / size:.1f}{unit}"
    return str(number)


def _shape_text(attrs: Mapping[str, Any]) -> str:
    if attrs["value"] == "tensor":
        return f"{attrs['shape']} {attrs['dtype']}"
    return f"{attrs['value']} {attrs['shape']}"


def build_arch_graph(
    model: nn.Module,
    traced: TracedModel,
    infos: Mapping[str, ValueInfo],
    *,
    shape_mode: str,
) -> ArchGraph:
    """Turn a traced, shape-propagated model into an :class:`ArchGraph`."""
    root = traced.root
    nodes = list(traced.graph.nodes)
    leaf_modules = dict(root.named_modules())
    user_modules = dict(model.named_modules())
    layouts = infer_layouts(nodes, infos, leaf_modules)
    parameters = {id(p) for p in model.parameters()}
    parameters_by_module = _parameters_by_module(root)
    weights = _computed_from_parameters(nodes, root, parameters)

    graph = nx.DiGraph()
    for node in nodes:
        info = infos.get(node.name, ValueInfo("none", None, None))
        scope = node.meta.get(SCOPE_META_KEY, ())
        module_path = str(node.target) if node.op == "call_module" else (scope[-1] if scope else None)
        params = _parameter_count(node, parameters_by_module, root, parameters)
        graph.add_node(
            node.name,
            op=node.op,
            target=_target_name(node),
            module=module_path,
            module_type=type(user_modules[module_path]).__name__ if module_path in user_modules else None,
            scope=tuple(scope),
            value=info.kind,
            shape=info.shape,
            dtype=info.dtype,
            layout=layouts.get(node.name),
            params=params,
            parametric=_is_parametric(node, params, weights),
        )
        if traced.eager:
            hooked = node.meta.get(MODULE_OUTPUT_META_KEY)
            graph.nodes[node.name]["hook"] = hooked[0] if hooked else None
        for source in node.all_input_nodes:
            graph.add_edge(source.name, node.name)

    _add_channels_and_spatial(graph)
    input_names = tuple(n.name for n in nodes if n.op == "placeholder")
    _describe_list_items(graph, traced.call.batches)
    _add_reduction(graph, input_names)
    _add_layer_index(graph)
    output_node = next(n for n in reversed(nodes) if n.op == "output")
    _add_main_path(graph, input_names, output_node.name)
    return ArchGraph(
        graph=graph,
        traced=traced,
        inputs=input_names,
        outputs=tuple(n.name for n in output_node.all_input_nodes),
        leaves=dict(traced.auto_leaves),
        module_types={
            path: type(user_modules[path]).__name__
            for path in sorted({p for _, a in graph.nodes(data=True) for p in a["scope"]})
            if path in user_modules
        },
        shape_guards=[str(guard) for guard in traced.shape_guards],
        model_name=type(model).__name__,
        shape_mode=shape_mode,
    )


def _target_name(node: fx.Node) -> str:
    if node.op not in ("call_function",):
        return str(node.target)
    function = node.target
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__name__", None) or repr(function)
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module in ("builtins", ""):
        return name
    return f"{module}.{name}"


def _parameters_by_module(root: nn.Module) -> dict[str, int]:
    """Parameter count of every module path, from one walk over the parameters.

    A parameter shared by two modules counts once in each (and once in their common parents).
    """
    owned: dict[str, dict[int, int]] = {}
    for name, parameter in root.named_parameters(remove_duplicate=False):
        parts = name.split(".")[:-1]
        for depth in range(len(parts) + 1):
            owned.setdefault(".".join(parts[:depth]), {})[id(parameter)] = parameter.numel()
    return {path: sum(counts.values()) for path, counts in owned.items()}


def _parameter_count(
    node: fx.Node,
    parameters_by_module: Mapping[str, int],
    root: nn.Module,
    parameters: set[int],
) -> int:
    if node.op == "call_module":
        return parameters_by_module.get(str(node.target), 0)
    if node.op == "get_attr":
        value = _get_attr(root, str(node.target))
        if isinstance(value, torch.Tensor) and id(value) in parameters:
            return value.numel()
    return 0


def _get_attr(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def _computed_from_parameters(nodes: list[fx.Node], root: nn.Module,
                              parameters: set[int]) -> set[fx.Node]:
    """The nodes whose value comes from the model's parameters alone: the parameters read by
    ``get_attr`` and what is computed from them and constants (a weight standardised before its
    convolution, as BiT's ``WeightStandardizedConv2d`` and timm's ``StdConv2d`` do)."""
    computed: set[fx.Node] = set()
    for node in nodes:  # in execution order: a node's inputs come first
        sources = node.all_input_nodes
        if node.op == "get_attr":
            from_parameters = id(_get_attr(root, str(node.target))) in parameters
        else:  # a computation on parameters and other constants (buffers), at least one parameter
            from_parameters = node.op in ("call_function", "call_method") and any(
                source in computed for source in sources) and all(
                source in computed or source.op == "get_attr" for source in sources)
        if from_parameters:
            computed.add(node)
    return computed


def _is_parametric(node: fx.Node, params: int, weights: set[fx.Node]) -> bool:
    """A layer: a module with parameters, or a weighted function (convolution, linear, norm,
    matmul) that applies parameters, or values computed from them alone, to the data."""
    if node.op == "call_module":
        return params > 0
    weighted = (node.op == "call_function" and node.target in _WEIGHTED_FUNCTIONS) or (
        node.op == "call_method" and node.target in _WEIGHTED_METHODS
    )
    return weighted and node not in weights and any(
        source in weights for source in node.all_input_nodes)


def _add_channels_and_spatial(graph: nx.DiGraph) -> None:
    for _, attrs in graph.nodes(data=True):
        shape, layout = attrs["shape"], attrs["layout"]
        channels = spatial = None
        if attrs["value"] == "tensor" and layout:
            if layout.startswith("NC"):
                channels, spatial = shape[1], tuple(shape[2:])
            else:
                channels, spatial = shape[-1], tuple(shape[1:-1])
        elif attrs["value"] == "tensor" and len(shape) == 2:
            channels = shape[1]
        attrs["channels"] = channels
        attrs["spatial"] = spatial


def _describe_list_items(graph: nx.DiGraph, batches: Mapping[str, int]) -> None:
    """Images given as a list (C, H, W) each: channels first, the rest spatial, no batch axis."""
    for name in batches:
        attrs = graph.nodes[name]
        shape = attrs["shape"]
        if attrs["value"] == "tensor" and shape and len(shape) >= 3:
            attrs.update(layout=None, channels=shape[0], spatial=tuple(shape[1:]))


def _input_spatial(graph: nx.DiGraph, input_names: tuple[str, ...]) -> tuple[int, ...] | None:
    for name in input_names:
        attrs = graph.nodes[name]
        if attrs["value"] != "tensor":
            continue
        if attrs["spatial"]:
            return attrs["spatial"]
        shape = attrs["shape"]
        if len(shape) >= 3:
            return tuple(shape[2:])
        if len(shape) == 2 and attrs["dtype"] and not attrs["dtype"].startswith(("float", "bfloat", "complex")):
            return (shape[1],)  # token ids (batch, sequence)
    return None


def _add_reduction(graph: nx.DiGraph, input_names: tuple[str, ...]) -> None:
    reference = _input_spatial(graph, input_names)
    for _, attrs in graph.nodes(data=True):
        spatial = attrs["spatial"]
        if reference and spatial and all(s > 0 for s in spatial):
            positions = math.prod(spatial)
            grid = token_grid(spatial[0], reference) if len(spatial) == 1 else None
            if grid is not None:  # tokens: class and register tokens are not positions
                positions = grid[1] * grid[2]
            ratio = math.prod(reference) / positions
            attrs["reduction"] = round(ratio ** (1 / len(reference)), 3)
        else:
            attrs["reduction"] = None


def _add_layer_index(graph: nx.DiGraph) -> None:
    for name in graph.nodes:  # insertion order is fx's topological order
        attrs = graph.nodes[name]
        before = max((graph.nodes[p]["layer_index"] for p in graph.predecessors(name)), default=0)
        attrs["layer_index"] = before + int(attrs["parametric"])
    deepest = max((a["layer_index"] for _, a in graph.nodes(data=True)), default=0)
    for _, attrs in graph.nodes(data=True):
        attrs["depth"] = attrs["layer_index"] / deepest if deepest else 0.0


def _add_main_path(graph: nx.DiGraph, input_names: tuple[str, ...], output_name: str) -> None:
    """Mark the nodes that dominate the output when paths start at the model's inputs."""
    dominators = data_flow_dominators(graph, input_names)
    main_path = set()
    node = output_name if output_name in dominators else None
    while node is not None:
        main_path.add(node)
        node = dominators[node]
    for name, attrs in graph.nodes(data=True):
        attrs["on_main_path"] = name in main_path


def data_flow_dominators(graph: nx.DiGraph, input_names: tuple[str, ...]) -> dict[str, str | None]:
    """Each node's immediate dominator when paths start at the model's inputs (``None`` for the
    inputs themselves); nodes no input reaches are absent.

    Paths from parameters and constants (a class token, a positional embedding) do not count,
    nor paths through sizes (``x.shape`` feeding a final ``interpolate``): they are not the data
    flowing through the network. The output node counts whatever it returns.
    """
    source = object()  # a virtual node joining all inputs, so one dominator tree covers them
    flow = nx.DiGraph(graph.subgraph(
        n for n, a in graph.nodes(data=True) if carries_tensors(a) or a["op"] == "output"))
    flow.add_edges_from((source, name) for name in input_names if name in flow)
    if not input_names:
        return {}
    dominators = nx.immediate_dominators(flow, source)
    return {node: (None if parent is source else parent)
            for node, parent in dominators.items() if node is not source}


def carries_tensors(attrs: Mapping[str, Any]) -> bool:
    """Whether a node's value is a tensor or a container holding at least one tensor."""

    def has_shape(shape: Any) -> bool:
        if isinstance(shape, dict):
            return any(has_shape(s) for s in shape.values())
        if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
            return True
        return isinstance(shape, tuple) and any(has_shape(s) for s in shape)

    return attrs["value"] == "tensor" or (
        attrs["value"] in ("tuple", "list", "dict") and has_shape(attrs["shape"])
    )
