"""Build an :class:`~tapfinder.graph.ArchGraph` from a traced, shape-propagated model: one node per
fx node with its module, shape and layout, then the passes that annotate structure (channels and
spatial size, list items, reduction against the input, layer index and depth, the main path)."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch
from torch import fx, nn
from torch.nn import functional as F

from ..capture.fx_tracer import MODULE_OUTPUT_META_KEY, SCOPE_META_KEY, TracedModel
from ..capture.shape_propagation import ShapeMode, ValueInfo
from .arch_graph import ArchGraph, data_flow_dominators
from .layouts import infer_layouts
from .tokens import token_grid

__all__ = ["build_arch_graph"]

# Functions that count as a layer when they take a parameter as an input (timm's StdConv2d and
# other modules call these functionally on their own weights).
_WEIGHTED_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, F.bilinear, F.embedding, F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm,
    torch.conv2d, torch.matmul, torch.bmm, torch.addmm, torch.einsum, operator.matmul,
}
_WEIGHTED_METHODS = {"matmul", "mm", "bmm"}


def build_arch_graph(
    model: nn.Module,
    traced: TracedModel,
    infos: Mapping[str, ValueInfo],
    *,
    shape_mode: ShapeMode,
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
    dominators = data_flow_dominators(graph, input_names)
    _add_main_path(graph, dominators, output_node.name)
    arch = ArchGraph(
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
    arch.__dict__["dominators"] = dominators  # ArchGraph.dominators, computed once (above)
    return arch


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


def _add_main_path(graph: nx.DiGraph, dominators: dict[str, str | None],
                   output_name: str) -> None:
    """Mark the nodes that dominate the output when paths start at the model's inputs."""
    main_path = set()
    node = output_name if output_name in dominators else None
    while node is not None:
        main_path.add(node)
        node = dominators[node]
    for name, attrs in graph.nodes(data=True):
        attrs["on_main_path"] = name in main_path
