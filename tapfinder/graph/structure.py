"""The structure of a traced network, each fact defined once: blocks and their outputs (a module
whose forward records two or more tensor steps), repeated blocks (the items of a container:
one tap each at most), the stages (the strides where the network computes), residual units and
attention computations (what their sums and outputs stand for), the canonical node a tap names,
and the base distance that spaces taps.

Everything here is a pure function of an :class:`~tapfinder.graph.ArchGraph`: it reads shapes,
graph structure and module scopes, never model names.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

import networkx as nx

from ..capture.fx_tracer import CALL_META_KEY
from .arch_graph import ArchGraph, NodeAttributes
from .node_kinds import (
    SCALE_TARGETS,
    feature_inputs,
    is_attention_core,
    is_identity,
    is_join,
    is_padding,
    is_sum,
    norm_kind,
    stride,
    tensor_inputs,
)

_Fact = TypeVar("_Fact")


def _once_per_graph(function: Callable[[ArchGraph], _Fact]) -> Callable[[ArchGraph], _Fact]:
    """Compute a structure fact once per graph (the rules, guards and ranker all ask): the
    result is shared, so callers read it and never modify it."""

    @functools.wraps(function)
    def memoised(arch: ArchGraph) -> _Fact:
        memo = arch.structure_memo
        if function.__name__ not in memo:
            memo[function.__name__] = function(arch)
        return cast(_Fact, memo[function.__name__])

    return memoised


__all__ = ["data_nodes", "scope_bounds", "call_outputs", "block_outputs", "stage_outputs",
           "repeated_blocks", "sibling_blocks", "input_batch", "stage_strides", "canonical_node", "base_distance",
           "attention_interior", "residual_interiors", "decoder_scales"]


def data_nodes(arch: ArchGraph) -> set[str]:
    """Nodes computed from the model's inputs (not only from parameters or constants)."""
    reached = set(arch.inputs)
    for source in arch.inputs:
        reached |= nx.descendants(arch.graph, source)
    return reached


@_once_per_graph
def scope_bounds(arch: ArchGraph) -> tuple[dict[str, str], dict[str, str]]:
    """For every module path: the first node recorded inside its forward, and the last tensor
    node (the block's output). One pass over the graph serves every rule that asks."""
    first: dict[str, str] = {}
    last_tensor: dict[str, str] = {}
    for name, attrs in arch.graph.nodes(data=True):
        for path in attrs["scope"]:
            first.setdefault(path, name)
            if attrs["value"] == "tensor":
                last_tensor[path] = name
    return first, last_tensor


@_once_per_graph
def call_outputs(arch: ArchGraph) -> dict[str, dict[str, str]]:
    """For each block that ran more than once (ALBERT's one shared layer at every depth): the
    last tensor node of each call, by call key as fx counts calls (``path``, ``path@1``, ...).
    A block records two or more tensor steps per call: a ReLU module applied twice is none.
    A graph loaded from JSON or recorded eagerly keeps no calls: nothing."""
    if arch.traced is None or arch.traced.eager:
        return {}
    last: dict[str, dict[str, str]] = {}
    steps: Counter[str] = Counter()
    for node in arch.traced.graph.nodes:
        if node.name in arch.graph and arch[node.name]["value"] == "tensor":
            for path, key in node.meta.get(CALL_META_KEY, {}).items():
                last.setdefault(path, {})[key] = node.name
                steps[key] += 1
    return {path: calls for path, calls in last.items()
            if len(calls) >= 2 and all(steps[key] >= 2 for key in calls)}


@_once_per_graph
def block_outputs(arch: ArchGraph) -> dict[str, str]:
    """Every block and its output node, outer modules first.

    A **block** is a module whose forward records two or more tensor steps: a lone layer, such
    as a convolution, a pool or an ``Identity``, is not one. This is the one definition of a
    block; :func:`repeated_blocks` and :func:`sibling_blocks` choose among these. A block that
    ran more than once has an output per call (``path@1``, ...). A block whose last step is an
    identity placeholder (timm's linear bottleneck ends in an ``Identity`` activation) outputs
    what the placeholder passes on."""
    steps = Counter(path for _, attrs in arch.graph.nodes(data=True)
                    if attrs["value"] == "tensor" for path in attrs["scope"])
    _, last_tensor = scope_bounds(arch)
    outputs = {path: node for path, node in last_tensor.items() if steps[path] >= 2}
    for path, calls in call_outputs(arch).items():
        if path in outputs:
            outputs.update(calls)
    return {path: _passed_on(arch, node) for path, node in outputs.items()}


def stage_outputs(arch: ArchGraph) -> list[str]:
    """The output of each feature stride's stage: the last main-path node at that stride
    (:meth:`ArchGraph.stages`), or what it passes on where that is an identity placeholder."""
    return [_passed_on(arch, node) for node in arch.stages()]


def input_batch(arch: ArchGraph) -> int | None:
    """The first input's batch: its first axis, or the length of the list it is an item of."""
    batches = arch.traced.call.batches if arch.traced is not None else {}
    for name in arch.inputs:
        if name in batches:
            return batches[name]
        if arch[name]["shape"]:
            return arch[name]["shape"][0]
    return None


def stage_strides(arch: ArchGraph) -> set[int]:
    """The feature strides at which the model has a stage: a main-path node (:meth:`ArchGraph.
    stages`) of more than one position lies there, and two or more layers (convolutions or
    linear layers, not norms) compute there on tensors that carry the input's batch on their
    first axis.

    A conv stem's lone strided convolution is no stage, so a hybrid whose blocks all run at one
    stride (XCiT, a ViT on a ResNet stem) has one; an isotropic ViT or MLP-Mixer has one
    whatever its transposes look like; layers on tensors folded into the batch axis (Swin's
    windows, TNT's inner tokens) count for no stride.
    """
    batch = input_batch(arch)
    layers: Counter[int | None] = Counter(
        stride(attrs) for _, attrs in arch.graph.nodes(data=True)
        if attrs["parametric"] and norm_kind(attrs) is None and attrs["value"] == "tensor"
        and (batch is None or (attrs["shape"] or (None,))[0] == batch))
    strides = set()
    for node in arch.stages():
        node_stride, spatial = stride(arch[node]), arch[node]["spatial"]
        if node_stride is not None and spatial and math.prod(spatial) > 1 \
                and layers[node_stride] >= 2:
            strides.add(node_stride)
    return strides


def canonical_node(arch: ArchGraph, name: str) -> str:
    """The node that stands for ``name`` as a tap: the output of the unit it lies in.

    A tuple-valued node moves to its first tensor element and an identity placeholder
    (``nn.Identity``) to the tensor it passes on, its input. From there the node follows its
    single tensor consumer while that keeps the shape and is an activation, norm, dropout or
    other parameter-free step (a product with a parameter, such as a layer scale, included),
    and never ends on a placeholder.

    >>> canonical_node(resnet18_arch, "add")  # doctest: +SKIP
    'layer1_0_relu_2'
    """
    current = name
    if arch[current]["value"] != "tensor":
        tensors = [u for u in arch.graph.successors(current) if arch[u]["value"] == "tensor"]
        if not tensors:
            return current
        current = tensors[0]
    return _passed_on(arch, _chain_end(arch, _passed_on(arch, current)))


def _passed_on(arch: ArchGraph, name: str) -> str:
    """What an identity placeholder passes on: its input (through a chain of them)."""
    while is_identity(arch[name]):
        inputs = tensor_inputs(arch, name)
        if len(inputs) != 1:
            break
        name = inputs[0]
    return name


def _chain_end(arch: ArchGraph, name: str) -> str:
    """Follow ``name``'s single tensor consumer while it keeps the shape and is light."""
    current = name
    while True:
        # Reads of .shape or .dtype (a traced-through norm checks its input) are not consumers.
        users = [u for u in arch.graph.successors(current) if arch[u]["value"] == "tensor"]
        if len(users) != 1:
            return current
        user = arch[users[0]]
        tensor_inputs = [p for p in arch.graph.predecessors(users[0])
                         if arch[p]["value"] == "tensor" and not _scale_by_parameter(arch, p, user)]
        same = user["value"] == "tensor" and user["shape"] == arch[current]["shape"]
        light = not user["parametric"] or norm_kind(user) is not None
        if not (same and light and len(tensor_inputs) == 1 and user["op"] != "output"):
            return current
        current = users[0]


def _scale_by_parameter(arch: ArchGraph, source: str, user: NodeAttributes) -> bool:
    """``source`` is a parameter that ``user`` multiplies its input by: a layer scale's gamma."""
    return arch[source]["op"] == "get_attr" and user["target"] in SCALE_TARGETS


def repeated_blocks(arch: ArchGraph) -> dict[str, str]:
    """Each node's repeated block: the innermost module that is an item of a container (its path
    ends in an index: ``layer1.0``, ``features.2``, ``blocks.3``) and holds at least two
    convolution or linear layers. Outside such items, a name that ends in a number a sibling of
    the same stem also has counts as an index (``encoder_layer_0``, ``denselayer1``): inside an
    indexed block it does not, since there it names a part (Xception's ``stack.conv1``). Nodes
    outside such blocks are absent.

    A block module that runs more than once (ALBERT applies one shared layer at every depth) is
    a block per call, ``"<path>@1"`` for the second call and so on, as fx counts calls; a graph
    loaded from JSON or recorded eagerly (where hooks read a module's last call only) keeps one
    block per module."""
    layers: dict[str, int] = defaultdict(int)
    for _, attrs in arch.graph.nodes(data=True):
        if attrs["parametric"] and norm_kind(attrs) is None:
            for path in attrs["scope"]:
                layers[path] += 1
    calls = ({node.name: node.meta.get(CALL_META_KEY, {}) for node in arch.traced.graph.nodes}
             if arch.traced is not None and not arch.traced.eager else {})
    # Blocks with two or more convolution or linear layers (which are two or more steps).
    layered = {path for path in block_outputs(arch) if layers.get(path, 0) >= 2}
    named = _named_items(layered)
    found = {}
    for name, attrs in arch.graph.nodes(data=True):
        indexed = [p for p in attrs["scope"] if p.rpartition(".")[2].isdigit() and p in layered]
        indexed = indexed or [p for p in attrs["scope"] if p in named]
        if indexed:
            found[name] = calls.get(name, {}).get(indexed[-1], indexed[-1])
    return found


def sibling_blocks(arch: ArchGraph) -> dict[tuple[str, str], list[str]]:
    """Groups of two or more sibling blocks of one class, by (parent path, class name): a
    stage's repeated blocks, a block's repeated parts (a bottleneck's three conv-norm-act
    units). A block that ran more than once (ALBERT's shared layer) is one group of its calls
    (``path``, ``path@1``, ...)."""
    calls = call_outputs(arch)
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(p for p in block_outputs(arch) if "@" not in p):
        class_name = arch.module_types.get(path)
        if class_name and path in calls:
            groups[(path, class_name)] = list(calls[path])
        elif class_name:
            groups[(path.rpartition(".")[0], class_name)].append(path)
    return {key: members for key, members in groups.items() if len(members) >= 2}


def _named_items(paths: Iterable[str]) -> set[str]:
    """The module paths whose last name ends in a number that a sibling of the same stem also
    has: ``encoder_layer_0`` beside ``encoder_layer_1`` (a lone ``conv1`` is not one)."""
    siblings: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in paths:
        parent, _, last = path.rpartition(".")
        stem = last.rstrip("0123456789")
        if stem and stem != last:
            siblings[parent, stem].append(path)
    return {path for group in siblings.values() if len(group) >= 2 for path in group}


def base_distance(arch: ArchGraph, blocks: dict[str, str] | None = None) -> int:
    """The unit of ``spacing`` in :func:`select_taps`, in layers (layer-index units, norms
    included): the paper's "base distance", here the layers between the ends of consecutive
    repeated blocks (the median: 4 for ResNet-18's basic blocks, 6 for ResNet-50's bottlenecks
    and timm's ViT blocks), or 1 for a model without repeated blocks. ``blocks`` is
    :func:`repeated_blocks`, if already computed.

    The unit is a block's span, not a layer, because one tap per block already holds taps a
    block apart: a spacing counted in layers would not bind below that.
    """
    if blocks is None:
        blocks = repeated_blocks(arch)
    ends: dict[str, int] = defaultdict(int)
    for node, block in blocks.items():
        ends[block] = max(ends[block], arch[node]["layer_index"])
    ordered = sorted(set(ends.values()))
    steps = [later - earlier for earlier, later in zip(ordered, ordered[1:])]
    return statistics.median_low(steps) if steps else 1


@_once_per_graph
def attention_interior(arch: ArchGraph) -> set[str]:
    """The nodes strictly inside the modules that hold an attention core: every node of such a
    module but its output. A core in the root's own code has no module to bound it: nothing."""
    first, last_tensor = scope_bounds(arch)
    scopes = {attrs["scope"][-1] for name, attrs in arch.graph.nodes(data=True)
              if attrs["scope"] and is_attention_core(arch, name)}
    return {name for name, attrs in arch.graph.nodes(data=True)
            if any(path in scopes and name != last_tensor.get(path) for path in attrs["scope"])}


def residual_interiors(arch: ArchGraph, interior: set[str] | None = None) -> dict[str, str]:
    """The nodes inside a residual unit, each mapped to the unit's sum.

    A residual unit is a sum ``j`` of data tensors together with the nodes it bypasses: those
    between ``j``'s immediate dominator ``d`` (the unit's input, where the shortcut forks) and
    ``j``, such as a ResNet block's convolutions and its projection shortcut, or a transformer
    block's MLP. It must hold a parametric layer, no other sum of data tensors (an outer
    residual around a stage of blocks is not one unit), and no map coarser than ``j`` or finer
    than ``d`` (global context vectors, such as squeeze-and-excitation's, aside): an FPN's
    top-down sum or a LinkNet's skip sum bypasses deeper stages, which makes it a fusion of
    scales, not a block. Inside an attention computation (``interior``, :func:`attention_interior`)
    scale does not count: SegFormer's keys and values are reduced spatially within its blocks.
    """
    if interior is None:
        return _residual_interiors(arch)
    return _bypassed_by_sums(arch, interior)


@_once_per_graph
def _residual_interiors(arch: ArchGraph) -> dict[str, str]:
    return _bypassed_by_sums(arch, attention_interior(arch))


def _bypassed_by_sums(arch: ArchGraph, interior: set[str]) -> dict[str, str]:
    """:func:`residual_interiors` with the attention interior given."""
    dominators = arch.dominators
    interiors: dict[str, str] = {}
    for join, attrs in arch.graph.nodes(data=True):
        if not is_sum(attrs) or dominators.get(join) is None:
            continue
        if sum(1 for p in arch.graph.predecessors(join) if p in dominators) < 2:
            continue
        region = _bypassed(arch, join, dominators, interior)
        if region:
            for node in region:
                interiors.setdefault(node, join)
    return interiors


def _bypassed(arch: ArchGraph, join: str, dominators: dict[str, str | None],
              interior: set[str]) -> set[str]:
    """The nodes a residual sum ``join`` bypasses (see :func:`residual_interiors`), or an empty
    set where ``join`` is no residual unit's sum."""
    fork = dominators[join]
    assert fork is not None  # residual_interiors asks only for sums with a fork
    scales = [r for r in (arch[fork]["reduction"], arch[join]["reduction"]) if r is not None]
    # sqrt(2) of slack: a padded map (5x5 around a 4x4 one) is at the same scale.
    finest, coarsest = (min(scales) / math.sqrt(2), max(scales) * math.sqrt(2)) if scales else (
        0.0, math.inf)
    region, stack, layers = set(), [join], 0
    while stack:
        for before in arch.graph.predecessors(stack.pop()):
            if before == fork or before in region or before not in dominators:
                continue
            attrs = arch[before]
            if is_sum(attrs) and sum(1 for p in arch.graph.predecessors(before)
                                     if p in dominators) >= 2:
                return set()
            # A global context vector (squeeze-and-excitation's pooled map) has no scale.
            pooled = attrs["spatial"] is not None and math.prod(attrs["spatial"]) <= 1
            if not pooled and before not in interior and attrs["reduction"] is not None and not (
                    finest <= attrs["reduction"] <= coarsest):
                return set()
            layers += bool(attrs["parametric"])
            region.add(before)
            stack.append(before)
    return region if layers else set()


# The fewest decoder scales that make a network U-shaped (a decoder as deep as its encoder).
U_SHAPE_SCALES = 3


@_once_per_graph
def decoder_scales(arch: ArchGraph) -> list[str]:
    """The outputs of a U-shaped network's decoder, one per scale, coarse to fine; empty for
    any other network.

    A **decoder scale block** is a block (:func:`block_outputs`) that upsamples a map (makes a
    finer map than every map it reads: not squeeze-and-excitation's gate broadcast over the map
    it scales, not padding), joins it with other features (the skip) and computes on the join
    with a layer other than a norm: a U-Net's, UNet++'s or MA-Net's decoder block. The innermost
    such blocks count, and the last one at each stride stands for the stride. A network is
    U-shaped when these lie at three or more strides, finer and finer in execution order: its
    decoder climbs back through the scales its encoder went down. An FPN (its top-down sums have
    no layer after them), DeepLabV3+ (one fusion), LinkNet (its decoder blocks end at their
    skip sums: nothing computes on the join inside the block) and SegFormer (one fusion) are
    not; nor is an encoder (its blocks' strides
    grow).
    """
    members: dict[str, list[str]] = defaultdict(list)
    for name, attrs in arch.graph.nodes(data=True):
        for path in attrs["scope"]:
            members[path].append(name)

    def upsamples(node: str) -> bool:  # a finer map than every map it reads
        node_stride, inputs = stride(arch[node]), feature_inputs(arch, node)
        return node_stride is not None and bool(inputs) and not is_padding(arch[node]) and all(
            (stride(arch[p]) or 0) > node_stride for p in inputs)

    def computes_on(join: str, inside: set[str]) -> bool:  # a layer after the join, in the block
        stack, seen = [join], {join}
        while stack:
            for after in arch.graph.successors(stack.pop()):
                if after in inside and after not in seen:
                    if arch[after]["parametric"] and norm_kind(arch[after]) is None:
                        return True
                    seen.add(after)
                    stack.append(after)
        return False

    scale_blocks = {}
    for path, output in block_outputs(arch).items():
        inside = set(members.get(path, ()))
        if any(map(upsamples, inside)) and any(
                computes_on(node, inside) for node in inside
                if is_join(arch[node]) and len(feature_inputs(arch, node)) >= 2):
            scale_blocks[path] = output
    innermost = [output for path, output in scale_blocks.items()
                 if not any(other.startswith(path + ".") for other in scale_blocks)]
    last_at_stride: dict[int | None, str] = {}
    for output in sorted(innermost, key=lambda node: arch[node]["layer_index"]):
        last_at_stride[stride(arch[output])] = output
    outputs = sorted(last_at_stride.values(), key=lambda node: arch[node]["layer_index"])
    strides = [stride(arch[node]) or 0 for node in outputs]
    descending = all(coarse > fine for coarse, fine in zip(strides, strides[1:]))
    return outputs if len(outputs) >= U_SHAPE_SCALES and descending else []
