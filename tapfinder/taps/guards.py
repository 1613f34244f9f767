"""Nodes that must never be taps, whatever evidence the rules found for them.

Deep supervision on such a node wastes training or breaks the adapter. Each guard reads shapes
and structure only (never model names):

- **not the batch**: the tensor's first axis is not the input's batch (TNT's inner tokens,
  Swin windows folded into the batch axis);
- **no layer before**: no parametric layer lies between the input and the node (zero-padded or
  resized input images);
- **one position**: a map or token sequence with a single position (class-token projections,
  2x2 key/value reductions at tiny inputs count as more than one);
- **before its norm**: the node's only consumer is a normalisation, directly or through steps
  that only rearrange it (a patch embedding's flatten and transpose), so the tap would read a
  convolution's raw output instead of its conv -> norm -> activation chain's end;
- **a shortcut**: the node's one consumer adds it to a branch with more layers: a residual
  block's projection shortcut (ResNet's ``downsample``) or an FPN lateral, not the block's own
  path; the sum itself is the tap;
- **a residual branch's end**: the node's one consumer adds it to an input that passed fewer
  layers (``x + f(x)``, ``P(x) + f(x)``): a ViT's attention or MLP output before its sum, a
  ResNet block's last norm, an FPN's upsampled top-down map; the sum is the tap. A U-shaped
  decoder's scale output (:func:`decoder_scales`) is not one although the next scale's sum
  adds a shallower skip to it (DPT's fusion blocks): it is the decoder's own path;
- **inside a residual unit**: a node that a residual sum bypasses
  (:func:`residual_interiors`): a ResNet block's first convolution
  and activation, its projection shortcut's pooling, a transformer MLP's hidden layer; the
  unit's sum is the tap;
- **padding**: explicit zero padding in front of a convolution (TF-"same" models such as
  EfficientNet ports): the tap would be the producer's tensor with a zero border;
- **inside attention**: a node of the module that holds an attention core (scaled dot-product
  attention, a softmax over square scores) other than that module's output: query, key and
  value projections, SegFormer's key/value spatial reduction, the score matrix;
- **no module**: in a graph recorded from an eager run (the root could not be traced), a node
  that no module returns: the model then runs eagerly and features are read with hooks.
"""

from __future__ import annotations

import math

from ..graph import ArchGraph, NodeAttributes
from ..graph.node_kinds import (
    function_name,
    is_identity,
    is_padding,
    is_sum,
    norm_kind,
    tensor_inputs,
)
from ..graph.structure import attention_interior, decoder_scales, input_batch, residual_interiors

__all__ = ["guard_violations"]


def guard_violations(arch: ArchGraph, node: str, interior: set[str] | None = None,
                     residual: dict[str, str] | None = None) -> list[str]:
    """The guards ``node`` breaks, as short reasons (empty when it may be a tap). ``interior``
    (:func:`attention_interior`) and ``residual``
    (:func:`residual_interiors`) save computing them again for every
    node.

    >>> guard_violations(arch, "encoder_conv_stem_static_padding")  # doctest: +SKIP
    ['no parametric layer before it']
    """
    if interior is None:
        interior = attention_interior(arch)
    if residual is None:
        residual = residual_interiors(arch, interior)
    attrs = arch[node]
    shape = attrs["shape"] or ()
    violations = []
    batch = input_batch(arch)
    if shape and batch is not None and shape[0] != batch:
        violations.append(f"first axis {shape[0]} is not the batch ({batch})")
    if attrs["layer_index"] == 0 and not attrs["parametric"]:
        violations.append("no parametric layer before it")
    positions = _positions(attrs)
    if positions is not None and positions <= 1:
        violations.append("a single position")
    if _read_before_norm(arch, node):
        violations.append("read before its normalisation")
    reader, consumer = _consumer(arch, node)
    if consumer is not None and _is_shortcut_into(arch, reader, consumer):
        violations.append("a shortcut into a residual sum")
    if (consumer is not None and _is_branch_end(arch, reader, consumer)
            and node not in decoder_scales(arch)):
        violations.append("a residual branch's end, before its sum")
    if node in residual:
        violations.append(f"inside a residual unit (its sum {residual[node]} is the tap)")
    if is_padding(attrs):
        violations.append("zero padding in front of a layer")
    if node in interior:
        violations.append("inside an attention computation")
    if arch.shape_mode == "eager" and not attrs.get("hook"):
        violations.append("not a module's output (an eager run's graph is read with hooks)")
    return violations


# Steps that move a tensor's elements without computing: a patch embedding's flatten and
# transpose between its convolution and its norm.
_REARRANGEMENTS = {"flatten", "transpose", "permute", "reshape", "view", "contiguous"}


def _read_before_norm(arch: ArchGraph, node: str) -> bool:
    """``node``'s only consumer is a normalisation, directly or through rearrangements."""
    current = node
    while True:
        users = [u for u in arch.graph.successors(current) if arch[u]["value"] == "tensor"]
        if len(users) != 1:
            return False
        user = arch[users[0]]
        if norm_kind(user) is not None:
            return True
        if user["op"] not in ("call_function", "call_method") or \
                function_name(user) not in _REARRANGEMENTS:
            return False
        current = users[0]


def _consumer(arch: ArchGraph, node: str) -> tuple[str, str | None]:
    """``node``'s one consumer, past identity placeholders (a disabled drop-path), and the node
    that feeds it; ``None`` where ``node`` has several consumers (a split's tuple counts: it
    reads the node)."""
    reader = node
    while True:
        consumers = list(arch.graph.successors(reader))
        if len(consumers) != 1:
            return reader, None
        if not is_identity(arch[consumers[0]]):
            return reader, consumers[0]
        reader = consumers[0]


def _is_shortcut_into(arch: ArchGraph, node: str, join: str) -> bool:
    """``join`` is a sum and another of its inputs passed more parametric layers than ``node``."""
    if not is_sum(arch[join]):
        return False
    depth = arch[node]["layer_index"]
    return any(arch[other]["layer_index"] > depth
               for other in tensor_inputs(arch, join) if other != node)


def _is_branch_end(arch: ArchGraph, node: str, join: str) -> bool:
    """``join`` is a sum and another of its data inputs passed fewer parametric layers than
    ``node``: ``x + f(x)``, or a projection ``P(x) + f(x)``. A parameter (a positional
    embedding, layer 0) is data only where it is an ancestor: the model's input itself."""
    if not is_sum(arch[join]):
        return False
    depth = arch[node]["layer_index"]
    return any(0 < arch[other]["layer_index"] < depth
               or (arch[other]["layer_index"] < depth and _reaches(arch, other, node))
               for other in tensor_inputs(arch, join) if other != node)


def _reaches(arch: ArchGraph, source: str, target: str) -> bool:
    """Whether a path leads from ``source`` to ``target``. The search walks back from
    ``target`` through nodes at least as deep (in layers) as ``source`` only: layer indices
    never fall along an edge, so every path from ``source`` stays in that set."""
    floor = arch[source]["layer_index"]
    if floor >= arch[target]["layer_index"]:
        return False  # a skip around no layer is no residual branch
    stack, seen = [target], {target}
    while stack:
        for before in arch.graph.predecessors(stack.pop()):
            if before == source:
                return True
            if before not in seen and arch[before]["layer_index"] >= floor:
                seen.add(before)
                stack.append(before)
    return False


def _positions(attrs: NodeAttributes) -> int | None:
    """Spatial positions or tokens of a map or sequence; ``None`` for vectors and unknowns."""
    shape, layout = attrs["shape"] or (), attrs["layout"]
    if len(shape) < 3:
        return None
    if layout in ("NCHW", "NCDHW", "NCL"):
        return math.prod(shape[2:])
    if layout in ("NHWC", "NLC"):
        return math.prod(shape[1:-1])
    return None
