"""Attention: before and after each attention operation (scaled dot-product attention,
``nn.MultiheadAttention``, a softmax over a square score matrix)."""

from __future__ import annotations

from ..candidates import Candidate, rule
from ..graph import ArchGraph
from ._common import function_name, scope_bounds, tensor_inputs

KIND = "attention"

_ATTENTION_MODULES = {"MultiheadAttention"}
_ATTENTION_FUNCTIONS = {"scaled_dot_product_attention", "multi_head_attention_forward"}


def is_attention_core(arch: ArchGraph, name: str) -> bool:
    """An attention operation: scaled dot-product attention, ``nn.MultiheadAttention``, or a
    softmax over attention scores: a square score matrix, or any matrix product of queries and
    keys (scaled or biased on the way), as in attention with reduced keys (SegFormer)."""
    attrs = arch[name]
    if attrs["op"] == "call_module":
        return attrs["module_type"] in _ATTENTION_MODULES
    function = function_name(attrs)
    if function in _ATTENTION_FUNCTIONS:
        return True
    shape = attrs["shape"]
    if function != "softmax" or attrs["value"] != "tensor" or len(shape) < 3:
        return False
    return shape[-1] == shape[-2] or _from_scores(arch, name)


_SCORE_PRODUCTS = {"matmul", "bmm", "einsum"}
_SCORE_STEPS = {"mul", "truediv", "div", "add", "sub", "masked_fill"}


def _from_scores(arch: ArchGraph, name: str) -> bool:
    """Whether the softmax's input is a matrix product, through at most three elementwise steps
    (scale, bias, mask)."""
    current = name
    for _ in range(4):
        inputs = tensor_inputs(arch, current)
        if not inputs:
            return False
        current = inputs[0]
        function = function_name(arch[current])
        if function in _SCORE_PRODUCTS:
            return True
        if function not in _SCORE_STEPS:
            return False
    return False


def _first_tensor_output(arch: ArchGraph, name: str) -> str:
    """The node itself, or for a tuple-returning attention module the element it feeds on."""
    if arch[name]["value"] == "tensor":
        return name
    for user in arch.graph.successors(name):
        if arch[user]["value"] == "tensor":
            return user
    return name


@rule(KIND)
def find_attention(arch: ArchGraph) -> list[Candidate]:
    """For each attention core, the input of its enclosing attention module ("before") and that
    module's output ("after"); at the root, the core's own input and output."""
    found = []
    seen_scopes: set[str] = set()
    first_node, block_outputs = scope_bounds(arch)
    for name, attrs in arch.graph.nodes(data=True):
        if not is_attention_core(arch, name):
            continue
        scope = attrs["scope"][-1] if attrs["scope"] else None
        if scope in seen_scopes:
            continue
        if scope is not None:
            seen_scopes.add(scope)
            after = _first_tensor_output(arch, block_outputs.get(scope, name))
            inputs = tensor_inputs(arch, first_node[scope])
        else:
            after = _first_tensor_output(arch, name)
            inputs = tensor_inputs(arch, name)
        label = f"{scope} ({arch.module_types.get(scope, 'attention')})" if scope else function_name(attrs)
        found.append(Candidate(after, KIND, 0.9, f"after attention in {label}"))
        if inputs:
            found.append(Candidate(inputs[0], KIND, 0.7, f"before attention in {label}"))
    return found
