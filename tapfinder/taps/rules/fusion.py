"""Fusion: a join of several parallel branches (ASPP, Inception, FPN-style merges)."""

from __future__ import annotations

import networkx as nx

from ...graph import ArchGraph
from ...graph.node_kinds import function_name, is_feature, is_join, where
from ..candidates import Candidate, rule

KIND = "fusion"


def _is_parallel(arch: ArchGraph, inputs: list[str]) -> bool:
    """No input is an ancestor of another: the branches run side by side."""
    return not any(
        a != b and nx.has_path(arch.graph, a, b) for a in inputs for b in inputs
    )


@rule(KIND)
def find_fusion(arch: ArchGraph) -> list[Candidate]:
    """Joins of three or more branches, or of two parallel branches at different resolutions
    (one was resampled to meet the other)."""
    found = []
    for name, attrs in arch.graph.nodes(data=True):
        if not (is_join(attrs) and is_feature(attrs)):
            continue
        inputs = [p for p in arch.graph.predecessors(name) if is_feature(arch[p])]
        if len(inputs) < 2 or not _is_parallel(arch, inputs):
            continue
        resampled = any(
            arch[u]["spatial"] != attrs["spatial"]
            for i in inputs for u in arch.graph.predecessors(i) if is_feature(arch[u])
        )
        if len(inputs) < 3 and not resampled:
            continue
        merge = "concatenates" if function_name(attrs) in ("cat", "concat", "stack") else "adds"
        found.append(Candidate(
            name, KIND, round(min(1.0, 0.5 + 0.1 * len(inputs)), 3),
            f"{merge} {len(inputs)} parallel branches"
            f"{' from different resolutions' if resampled else ''} at {where(attrs)}",
        ))
    return found
