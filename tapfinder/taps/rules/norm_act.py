"""Normalisation / activation changes: where the kind of norm or activation switches."""

from __future__ import annotations

from ...graph import ArchGraph
from ...graph.node_kinds import activation_kind, is_feature, norm_kind, where
from ..candidates import Candidate, rule

KIND = "norm_act"


@rule(KIND)
def find_norm_act_changes(arch: ArchGraph) -> list[Candidate]:
    """The first node of each new normalisation or activation kind, in execution order.

    Scored low: such changes mark style boundaries (ReLU -> Hardswish in MobileNetV3, BatchNorm
    -> LayerNorm in hybrid models) more than changes of abstraction.
    """
    found = []
    for label, kind_of in (("normalisation", norm_kind), ("activation", activation_kind)):
        previous = None
        for name, attrs in arch.graph.nodes(data=True):
            kind = kind_of(attrs)
            if kind is None or not is_feature(attrs):
                continue
            if previous is not None and kind != previous:
                found.append(Candidate(
                    name, KIND, 0.3, f"{label} changes {previous} -> {kind} at {where(attrs)}"
                ))
            previous = kind
    return found
