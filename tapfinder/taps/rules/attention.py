"""Attention: before and after each attention operation (scaled dot-product attention,
``nn.MultiheadAttention``, a softmax over a square score matrix)."""

from __future__ import annotations

from ...graph import ArchGraph
from ...graph.node_kinds import function_name, is_attention_core, tensor_inputs
from ...graph.structure import scope_bounds
from ..candidates import Candidate, rule

KIND = "attention"

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
