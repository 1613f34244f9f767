"""``ArchGraph``: a traced model as a ``networkx`` graph annotated with shapes and structure, its
serialisation (JSON, node-link, GraphML) and the data-flow facts every analysis reads (which
nodes carry tensors, which dominate the output)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypedDict

import networkx as nx
from torch import fx

from ..capture.fx_tracer import TracedModel
from ..capture.shape_propagation import ShapeMode

__all__ = ["ArchGraph", "NodeAttributes", "ShapeMode", "Layout", "ValueKind", "carries_tensors",
           "data_flow_dominators"]

_JSON_FORMAT = "tapfinder.archgraph"
_JSON_VERSION = 1

# A tensor's memory layout as inferred from the layers around it: channels first with 2, 3 or 1
# spatial axes, channels last, or a token sequence.
Layout = Literal["NCHW", "NCDHW", "NCL", "NHWC", "NLC"]
# What a node produces.
ValueKind = Literal["tensor", "tuple", "list", "dict", "scalar", "none", "other"]


class NodeAttributes(TypedDict, total=False):
    """The attributes of one node of :attr:`ArchGraph.graph` (``arch[name]``).

    Every node has all of them but ``hook``, which graphs recorded from an eager run add.
    """

    op: str  # the fx op: placeholder, get_attr, call_function, call_method, call_module, output
    target: str  # the called function, method or module path, as text
    module: str | None  # the called module, or the module whose forward made the node
    module_type: str | None  # that module's class name
    scope: tuple[str, ...]  # enclosing module paths, outermost first
    value: ValueKind
    shape: Any  # a tensor's sizes; for containers, the same structure of shapes; else None
    dtype: str | None
    layout: Layout | None
    channels: int | None
    spatial: tuple[int, ...] | None  # spatial sizes, or (tokens,) for a token sequence
    reduction: float | None  # the input's spatial size over this node's
    params: int  # parameters the node owns
    parametric: bool  # a layer: a convolution, linear layer, norm or embedding
    layer_index: int  # parametric layers on the longest path from an input
    depth: float  # layer_index over its maximum, in [0, 1]
    on_main_path: bool  # every input-to-output path passes through the node
    hook: str | None  # eager graphs: the module whose output the node is

@dataclass
class ArchGraph:
    """A traced architecture: the ``networkx`` graph, its fx ``GraphModule`` and what tracing saw.

    Attributes
    ----------
    graph
        ``networkx.DiGraph`` keyed by fx node name, in topological order; each node's attributes
        are a :class:`NodeAttributes` (``arch[name]`` reads them).
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
        How the shapes were obtained (:data:`ShapeMode`): ``"meta"`` from meta tensors (no
        compute), ``"fake"`` from fake tensors where a model mixes devices, ``"real"`` when
        value-dependent code in a leaf forced one real no-grad pass, ``"eager"`` when fx could
        not trace the root and the graph records one eager run
        (:mod:`tapfinder.capture.eager_record`).
    """

    graph: nx.DiGraph
    traced: TracedModel | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    leaves: dict[str, str] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    shape_guards: list[str] = field(default_factory=list)
    model_name: str = ""
    shape_mode: ShapeMode = "meta"
    # Structure facts computed from the graph (tapfinder.graph.structure), each once.
    structure_memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    @cached_property
    def graph_module(self) -> fx.GraphModule | None:
        """The traced model as a runnable ``GraphModule`` (built once, on first use)."""
        return self.traced.graph_module() if self.traced is not None else None

    def __getitem__(self, name: str) -> NodeAttributes:
        """Attributes of the node called ``name``."""
        attributes: NodeAttributes = self.graph.nodes[name]  # networkx stores plain dicts
        return attributes

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
        if isinstance(source, Path) or not source.lstrip().startswith("{"):
            text = Path(source).read_text()
        else:
            text = source
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
